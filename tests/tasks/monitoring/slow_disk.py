"""A local folder behind a datastore that answers only when the test lets it (not a mock).

`SlowDisk.mount(folder)` makes `slowdisk://<folder>/…` an fsspec filesystem over the real local
files whose writes wait until `SlowDisk.gate` is set: a datastore slow enough to hold a writer
mid-write for as long as the test wants, deterministically (no sleeps to tune). `SlowDisk.writes`
counts the files opened for writing, so a test knows a write is under way.
"""

import threading
from pathlib import Path
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem


class SlowDisk(LocalFileSystem):
    protocol = "slowdisk"
    root_marker = "/"
    gate: ClassVar[threading.Event] = threading.Event()
    writing: ClassVar[threading.Event] = threading.Event()

    @classmethod
    def mount(cls, folder: Path) -> str:
        """Make `folder` a datastore whose writes wait for the gate (open at first); returns its URL."""
        folder.mkdir(parents=True, exist_ok=True)
        cls.gate.set()
        cls.writing.clear()
        return f"{cls.protocol}://{folder}"

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode:
            return super()._open(path, mode, **kwargs)
        return _Gated(self._strip_protocol(path), mode, fs=self, **kwargs)


class _Gated(LocalFileOpener):
    def write(self, *args: Any, **kwargs: Any) -> int:
        SlowDisk.writing.set()
        assert SlowDisk.gate.wait(60), "the test never opened the gate"
        return super().write(*args, **kwargs)


fsspec.register_implementation(SlowDisk.protocol, SlowDisk, clobber=True)
