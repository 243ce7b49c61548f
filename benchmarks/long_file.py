"""Encode and decode long files through the CLI and report time and peak resident memory.

Peak memory must stay under 2 GB and not grow with duration: the file pipeline reads,
resamples, codes and writes in chunks. Each step runs as its own process, measured with wait4.

    python benchmarks/long_file.py --minutes 10 60 [--model default] [--sample-rate 44100 --channels 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_file(path: Path, minutes: float, sample_rate: int, channels: int) -> None:
    """Noise bursts and tones, written block by block (the generator never holds the file)."""
    rng = np.random.default_rng(0)
    block = sample_rate * 10
    with sf.SoundFile(path, "w", samplerate=sample_rate, channels=channels, subtype="PCM_16") as f:
        for i in range(int(minutes * 6)):
            t = (np.arange(block) + i * block) / sample_rate
            x = 0.2 * np.sin(2 * np.pi * (220 + 20 * (i % 7)) * t) + 0.05 * rng.standard_normal(block) * (np.sin(t) > 0)
            f.write(np.repeat(x[:, None], channels, 1).astype(np.float32))


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one command."""
    t = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err.strip()[-500:]}")
    return time.time() - t, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--model", default="default")
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    exe = [sys.executable, "-m", "rvqgan"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            src, codes, out = Path(tmp) / "in.wav", Path(tmp) / "in.rvq", Path(tmp) / "out.wav"
            make_file(src, minutes, args.sample_rate, args.channels)
            enc_s, enc_mb = run(exe + ["encode", str(src), "-o", str(codes), "--model", args.model, "--overwrite", "-q"])
            dec_s, dec_mb = run(exe + ["decode", str(codes), "-o", str(out), "--model", args.model, "--overwrite", "-q"])
            info_in, info_out = sf.info(str(src)), sf.info(str(out))
            assert (info_in.frames, info_in.channels, info_in.samplerate) == (
                info_out.frames,
                info_out.channels,
                info_out.samplerate,
            )
            r = {
                "minutes": minutes,
                "sample_rate": args.sample_rate,
                "channels": args.channels,
                "model": args.model,
                "encode_s": round(enc_s, 1),
                "encode_peak_mb": round(enc_mb),
                "decode_s": round(dec_s, 1),
                "decode_peak_mb": round(dec_mb),
                "input_mb": round(src.stat().st_size / 2**20),
                "code_bytes": codes.stat().st_size,
            }
            results.append(r)
            print(json.dumps(r), flush=True)
            for p in (src, codes, out):
                p.unlink()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
