"""How a scoring output is laid out: written by scoring, read by the performance check.

    OUTPUT/run=<partition>/part-00000.parquet     predictions (readers skip `_…` folders)
    OUTPUT/_errors/run=<partition>/…              rows and files that could not be scored, with the reason
    OUTPUT/_manifests/run=<partition>.json        the commit record: model, inputs, counts, timings
    OUTPUT/_staging/<run key>/                    a run in progress (or interrupted, to resume)
    OUTPUT/_leases/run=<partition>.json           the run writing that partition now (`output.json`: an overwrite)

A partition is published by its manifest: `_manifests/run=<partition>.json` commits the
folder `run=<partition>`. Monitoring may not import scoring (layers), so both read the names here.
"""

PARTITION = "run"
"""The Hive-style key of the output's partition folders."""
MANIFESTS = "_manifests"
ERRORS = "_errors"
STAGING = "_staging"
LEASES = "_leases"
TRASH = "_trash"
OWN_FOLDERS = frozenset({ERRORS, MANIFESTS, STAGING, LEASES, TRASH})
"""The folders scoring keeps beside its partitions."""


def partition_folder(partition: str) -> str:
    """`run=<partition>`: the folder of a partition's predictions (and of its errors)."""
    return f"{PARTITION}={partition}"


def manifest_name(partition: str) -> str:
    """`run=<partition>.json`: the manifest (and the lease) of a partition."""
    return f"{partition_folder(partition)}.json"


def manifest_partition(name: str) -> str | None:
    """The partition a manifest file named `name` publishes (None for any other file)."""
    prefix, suffix = f"{PARTITION}=", ".json"
    if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
        return name[len(prefix) : -len(suffix)]
    return None
