"""An overwrite of the output and a run into one of its partitions never run at once, whichever starts first."""

from pathlib import Path

import pytest

from mlpipe.tasks.lease import LeaseHeld
from mlpipe.tasks.scoring.output import OutputLayout

pytestmark = pytest.mark.unit


def test_an_overwrite_and_an_append_exclude_each_other_either_way(tmp_path: Path):
    output = str(tmp_path / "out")
    append = OutputLayout(url=output, partition="night-1").leases("append run", "append")
    with pytest.raises(LeaseHeld, match=r"run=night-1\.json is held by append run .*cannot run at once"):
        OutputLayout(url=output, partition="all").leases("overwrite run", "overwrite")
    assert sorted(p.name for p in (tmp_path / "out" / "_leases").iterdir()) == ["run=night-1.json"]
    for lease in append:
        lease.release()

    overwrite = OutputLayout(url=output, partition="all").leases("overwrite run", "overwrite")
    with pytest.raises(LeaseHeld, match=r"output\.json is held by overwrite run .*cannot run at once"):
        OutputLayout(url=output, partition="night-2").leases("append run", "append")
    for lease in overwrite:
        lease.release()
    assert not list((tmp_path / "out" / "_leases").iterdir())
