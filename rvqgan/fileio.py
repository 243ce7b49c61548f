"""Writing files atomically: a reader never sees a half-written file, and a failed write leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary path beside `path` (same suffix), then rename it into place.

    The temporary file keeps `path`'s suffix, so writers that pick a format from the name
    still do. It gets the permissions a new file would (0666 less the umask) and is removed
    if `write` fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
