"""Paired comparison of models evaluated in separate `rvqgan eval` runs on the same items.

python scripts/compare_runs.py BASELINE_DIR:SYSTEM OTHER_DIR:SYSTEM [...] [--scope overall|GROUP]

Each argument names an eval output folder and a system in it (e.g. `/tmp/eval/base:generator 10q`).
Prints, for every other system against the first, the mean difference (other − first) of each
metric over the items both scored (of one group with `--scope`), with its 95 % bootstrap interval
(`evaluate.paired`), as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rvqgan.evaluate import HIGHER_IS_BETTER, paired  # noqa: E402

METRICS = ("visqol_audio", "visqol_speech", "mel", "si_sdr", "f0_rmse_cents", "voicing_error")


def load(spec: str) -> tuple[str, list[dict]]:
    folder, _, system = spec.partition(":")
    rows = [r for r in json.loads((Path(folder) / "items.json").read_text()) if r["system"] == system]
    if not rows:
        raise SystemExit(f"{spec}: no rows of system {system!r} in {folder}/items.json")
    label = f"{Path(folder).name}:{system}"
    return label, [{**r, "system": label} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="FOLDER:SYSTEM, the first is the baseline")
    ap.add_argument("--scope", default="overall", help="overall or a group name")
    args = ap.parse_args()
    loaded = [load(s) for s in args.runs]
    base, _ = loaded[0]
    rows = [r for _, rs in loaded for r in rs]
    print(f"| system | {' | '.join(METRICS)} |\n|---|" + "---|" * len(METRICS))
    for label, _ in loaded[1:]:
        cells = []
        for metric in METRICS:
            c = paired(rows, label, base, metric, args.scope)
            if c["n"] == 0:
                cells.append("")
                continue
            better = (c["ci_low"] > 0) if HIGHER_IS_BETTER[metric] else (c["ci_high"] < 0)
            worse = (c["ci_high"] < 0) if HIGHER_IS_BETTER[metric] else (c["ci_low"] > 0)
            mark = " (better)" if better else " (worse)" if worse else ""
            cells.append(f"{c['mean_diff']:+.3g} [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]{mark}")
        print(f"| {label} − {base} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
