"""The bombs of the hostile-inputs tests, each run through the CLI under a 2 GiB address-space limit and timed.

    python benchmarks/hostile_inputs.py     # from the repository root

Prints, per bomb, the file's size, the exit status, the seconds it took and its one-line error.
`tests/test_cli.py::test_bombs_fail_fast_in_bounded_memory` asserts the same, under 5 s each.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import write_dac, write_rvq_unchecked  # noqa: E402
from test_cli import run_limited, tone  # noqa: E402

import rvqgan  # noqa: E402
from rvqgan.files import compress_file  # noqa: E402
from rvqgan.identity import tensors_digest  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    model_path = tmp / "m.safetensors"
    rvqgan.save_model(rvqgan.build_model("tiny"), model_path)
    src = tone(tmp / "a.wav", 0.3, 16000)
    model = rvqgan.load_model(model_path)
    with open(tmp / "a.rvq", "wb") as out:
        header = compress_file(model, str(src), out)
    files: dict[str, tuple[Path, list[str]]] = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, length in (("rvq length 2e7", 2 * 10**7), ("rvq length 1e13", 10**13)):
            path = tmp / f"{name.replace(' ', '_')}.rvq"
            path.write_bytes(
                write_rvq_unchecked(header, np.zeros((1, header.n_codebooks, 0), np.int64), monkeypatch, length=length)
            )
            files[name] = (path, ["decode", str(path), "-o", str(tmp / "x.wav"), "--model", str(model_path)])
    write_dac(tmp / "l.dac", np.zeros((1, 1, 4), np.uint16), original_length=10**12)
    files["dac original_length 1e12"] = (
        tmp / "l.dac",
        ["decode", str(tmp / "l.dac"), "-o", str(tmp / "d.wav"), "--model", str(model_path)],
    )
    nest: list = [1.0]
    for _ in range(60):
        nest = [nest, nest]
    write_dac(tmp / "n.dac", np.zeros((1, 1, 4), np.uint16), input_db=nest)
    files["dac shared nested input_db"] = (
        tmp / "n.dac",
        ["decode", str(tmp / "n.dac"), "-o", str(tmp / "e.wav"), "--model", str(model_path)],
    )
    state = {"x": torch.zeros(1)}
    config = json.dumps({**model.config.to_dict(), "n_codebooks": 10**7})
    metadata = {"format": "rvqgan", "format_version": "1", "config": config, "sha256": tensors_digest(state)}
    save_file(state, str(tmp / "b.safetensors"), metadata=metadata)
    files["safetensors 1e7 codebooks"] = (
        tmp / "b.safetensors",
        ["encode", str(src), "-o", str(tmp / "s.rvq"), "--model", str(tmp / "b.safetensors")],
    )
    torch.save({"state_dict": {}, "metadata": {"kwargs": {"sample_rate": nest}}}, tmp / "n.pth")
    files["pth shared nested kwargs"] = (tmp / "n.pth", ["import-dac", str(tmp / "n.pth"), str(tmp / "o.safetensors")])
    for name, (path, args) in files.items():
        t0 = time.perf_counter()
        result = run_limited(args)
        print(
            f"{name} ({path.stat().st_size} B): exit {result.returncode}, {time.perf_counter() - t0:.2f} s, {result.stderr.strip()[:110]}"
        )
    for command in ("encode", "decode"):
        with open("/dev/zero", "rb") as zero:
            t0 = time.perf_counter()
            result = run_limited([command, "-", "-o", "-", "--model", str(model_path)], stdin=zero)
        print(
            f"{command} - < /dev/zero: exit {result.returncode}, {time.perf_counter() - t0:.2f} s, {result.stderr.strip()[:110]}"
        )


if __name__ == "__main__":
    main()
