"""How far the built-in model is from its quality targets, and what the training curve says it
would take to close the gap.

    python scripts/gap_slope.py "reports/previous_default_valid:default_4100 10q@4100" \\
        "reports/default_8350_valid:default 10q@8350" "reports/long_11150_valid:long_11150 10q@11150" \\
        "reports/default_14150_valid:default 10q@14150" "reports/valid:default 10q@17650" \\
        --baselines reports/valid --seconds-per-step 2.0

Each POINT is `EVAL_DIR:SYSTEM@UPDATES`: a system scored by `rvqgan eval` on the same items, and the
generator updates it had. The Opus rows of `--baselines` give the targets: ViSQOL audio above
Opus 8 kbps (overall and in each group), ViSQOL speech mode (speech items) at least Opus 8's,
SI-SDR at least Opus 6's, mel distance below Opus 8's, pitch and voicing errors (speech items) no
worse than Opus 8's; stretch: ViSQOL audio of Opus 12.

For each metric: the means over the items every point scored, the slope per doubling of updates
(least squares against log2 of the updates), the gap to the target at the last point, and, where
the slope points the right way, the doublings, updates and wall-clock hours (at
`--seconds-per-step`, the training machine's measured time per update) that a straight line in
log-steps would need. Each metric is averaged over the items that every point and the target scored. A log-linear curve is a model, not a promise: it is
the simplest one the points fit, and two or three points cannot show it bending.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# metric, items it is read on, Opus system, higher is better, target label
TARGETS = (
    ("visqol_audio", None, "opus 8", True, "ViSQOL audio > Opus 8"),
    ("visqol_audio", "speech", "opus 8", True, "ViSQOL audio > Opus 8 (speech)"),
    ("visqol_audio", "music", "opus 8", True, "ViSQOL audio > Opus 8 (music)"),
    ("visqol_audio", "general", "opus 8", True, "ViSQOL audio > Opus 8 (general)"),
    ("visqol_speech", "speech", "opus 8", True, "ViSQOL speech ≥ Opus 8 (speech)"),
    ("si_sdr", None, "opus 6", True, "SI-SDR ≥ Opus 6 (dB)"),
    ("mel", None, "opus 8", False, "mel < Opus 8"),
    ("f0_rmse_cents", "speech", "opus 8", False, "F0 error ≤ Opus 8 (speech, cents)"),
    ("voicing_error", "speech", "opus 8", False, "voicing error ≤ Opus 8 (speech)"),
    ("visqol_audio", None, "opus 12", True, "stretch: ViSQOL audio ≥ Opus 12"),
)


def rows(folder: str, system: str) -> dict[str, dict]:
    """Item name → row of `system` in `folder/items.json`."""
    found = {r["item"]: r for r in json.loads((Path(folder) / "items.json").read_text()) if r["system"] == system}
    if not found:
        raise SystemExit(f"{folder}: no rows of system {system!r}")
    return found


def mean(table: dict[str, dict], items: list[str], metric: str) -> float:
    return sum(table[i][metric] for i in items) / len(items)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", nargs="+", help="EVAL_DIR:SYSTEM@UPDATES, at least two, in any order")
    parser.add_argument("--baselines", required=True, help="eval folder holding the 'opus 6', 'opus 8', 'opus 12' rows")
    parser.add_argument("--seconds-per-step", type=float, required=True, help="measured wall-clock of one update")
    args = parser.parse_args()
    points = []
    for spec in args.points:
        where, _, updates = spec.rpartition("@")
        folder, _, system = where.partition(":")
        if not updates.isdigit() or not system:
            raise SystemExit(f"bad point {spec!r}: expected EVAL_DIR:SYSTEM@UPDATES")
        points.append((int(updates), f"{Path(folder).name}:{system}", rows(folder, system)))
    if len({u for u, _, _ in points}) < 2:
        raise SystemExit("need points at two or more different update counts")
    points.sort(key=lambda p: p[0])
    opus = {s: rows(args.baselines, s) for s in ("opus 6", "opus 8", "opus 12")}
    shared = sorted(set.intersection(*(set(t) for _, _, t in points), *(set(t) for t in opus.values())))
    print(f"{len(shared)} items scored by every point and baseline; points: " + ", ".join(f"{n} ({u})" for u, n, _ in points))
    last = points[-1][0]
    header = ["target", *[f"@{u}" for u, _, _ in points], "target value", "gap", "per doubling", "doublings", "updates", "hours"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for metric, group, system, higher, label in TARGETS:
        strict = ">" in label or "<" in label
        tables = [t for _, _, t in points] + [opus[system]]
        items = [  # the items every point and the target scored on this metric
            i
            for i in shared
            if (group is None or points[-1][2][i]["group"] == group) and all(t[i].get(metric) is not None for t in tables)
        ]
        if not items:
            continue
        ys = [mean(t, items, metric) for _, _, t in points]
        target = mean(opus[system], items, metric)
        per_doubling = slope([math.log2(u) for u, _, _ in points], ys)
        gap = (target - ys[-1]) if higher else (ys[-1] - target)  # > 0: still short of the target
        cells = [f"{label} [{len(items)} items]", *[f"{v:.3f}" for v in ys], f"{target:.3f}", f"{gap:+.3f}"]
        cells.append(f"{per_doubling:+.3f}")
        improving = per_doubling > 0 if higher else per_doubling < 0
        if gap < 0 or (gap == 0 and strict):
            cells += ["met", "-", "-"]
        elif not improving:
            cells += ["never (slope the wrong way)", "-", "-"]
        else:
            doublings = gap / abs(per_doubling)
            if doublings > 60:
                cells += [f"{doublings:.3g}", "> 1e21", "-"]
            else:
                updates = last * 2**doublings
                hours = (updates - last) * args.seconds_per_step / 3600
                cells += [f"{doublings:.1f}", f"{updates:.3g}", f"{hours:.3g}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
