"""Peak resident memory of the process that runs it, counted from its own start.

`getrusage(RUSAGE_SELF).ru_maxrss` is no good for a child process: Linux carries the parent's peak
across fork and exec, so a child of a pytest process that once held 800 MB reports at least that.
`VmHWM` belongs to the memory map that exec created, so it counts only what the child itself touched.
"""

PEAK_RSS_BYTES = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) * 1024"
"""An expression, for code run with `python -c` (which may be another checkout's interpreter)."""
