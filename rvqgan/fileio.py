"""Writing files atomically: a reader never sees a half-written file, and a failed write leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object], *, durable: bool = False) -> None:
    """Call `write(tmp)` on a temporary path beside `path` (same suffix), then rename it into place.

    The temporary file keeps `path`'s suffix, so writers that pick a format from the name
    still do. It gets the permissions a new file would (0666 less the umask) and is removed
    if `write` fails. With `durable`, the file and its folder are flushed to disk (fsync)
    around the rename, so the file survives a power loss whole or not at all.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
