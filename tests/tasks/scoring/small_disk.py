"""A local folder with the capacity of a small disk, for faults injected into storage (not a mock).

`SmallDisk.mount(folder, capacity)` makes `smalldisk://<folder>/…` an fsspec filesystem over
the real local files whose writes fail with `OSError(ENOSPC)` — the error the OS raises on a
full disk — once the files under `folder` would exceed `capacity` bytes; removing files frees
space, as on a disk. `SmallDisk.gate` (cleared) holds writes under a `_staging` folder until it
is set: a disk slow enough to keep a run mid-batch, deterministically.

Chosen over a size-limited tmpfs: mounting needs privileges a CI container may lack, and the
fault here is the same `OSError` through the same code paths, on any machine.
"""

import errno
import os
import threading
from pathlib import Path
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem


class SmallDisk(LocalFileSystem):
    protocol = "smalldisk"
    root_marker = "/"
    folder: ClassVar[Path] = Path("/nonexistent")
    capacity: ClassVar[int] = 0
    gate: ClassVar[threading.Event] = threading.Event()

    @classmethod
    def mount(cls, folder: Path, capacity: int) -> str:
        """Make `folder` a disk of `capacity` bytes; returns its URL."""
        folder.mkdir(parents=True, exist_ok=True)
        cls.folder, cls.capacity = folder, capacity
        cls.gate.set()
        return f"{cls.protocol}://{folder}"

    @classmethod
    def used(cls) -> int:
        return sum(path.stat().st_size for path in cls.folder.rglob("*") if path.is_file())

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode:
            return super()._open(path, mode, **kwargs)
        return _Metered(self._strip_protocol(path), mode, fs=self, **kwargs)


class _Metered(LocalFileOpener):
    def write(self, *args: Any, **kwargs: Any) -> int:
        data = args[0]
        if "/_staging/" in self.path:
            assert SmallDisk.gate.wait(60), "the test never opened the gate"
        if SmallDisk.used() + len(data) > SmallDisk.capacity:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        return super().write(*args, **kwargs)


fsspec.register_implementation(SmallDisk.protocol, SmallDisk, clobber=True)
