"""Atomic writes: all or nothing, normal permissions, the suffix kept for format detection."""

from __future__ import annotations

import os

import pytest

from rvqgan.fileio import atomic_write


def test_atomic_write_all_or_nothing(tmp_path):
    target = tmp_path / "out.wav"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert tmp.suffix == ".wav" and tmp.parent == tmp_path and not target.exists()
        tmp.write_bytes(b"new")

    atomic_write(target, write)
    assert target.read_bytes() == b"new" and not seen[0].exists()
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
