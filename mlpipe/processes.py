"""Whether a recorded process is still the same process: its pid together with its start time.

A pid alone is no identity: once a process exits, the kernel may give its pid to another one.
So every record of a process (a lease's holder, a server `mlpipe up` started) keeps its start
time, and this one rule decides whether the record still names a running process.
"""


def process_started(pid: int) -> float:
    """When process `pid` began, in seconds since the epoch; 0.0 when there is none (or only its zombie)."""
    import psutil  # imported here: every command reads the workspace's state, few find a process to check

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return 0.0
        return float(process.create_time())
    except psutil.Error:
        return 0.0


def still_running(pid: int, started: float) -> bool:
    """Whether the process that began at `started` still runs as `pid`.

    Start times are compared within a second: the kernel's clock ticks make two reads of the
    same process's start time differ by a few milliseconds.
    """
    running_since = process_started(pid)
    return running_since != 0.0 and abs(running_since - started) < 1.0
