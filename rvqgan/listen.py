"""MUSHRA listening tests (ITU-R BS.1534): prepare a self-contained test, then analyse its results.

`prepare_test` writes, for each item, the reference, a hidden copy of it, 3.5 kHz and 7 kHz
low-pass anchors and every system's decoding (loudness-matched, trimmed to one excerpt) as
FLAC files under opaque names, next to one static page (`index.html`, from
`assets/mushra.html`) that runs from `file://` or any static host. The page never names the
systems: the key → system map stays in `stimuli.json` beside it, which `analyze` reads.

`analyze` applies the BS.1534 post-screening (a listener who rates the hidden reference
below 90 on more than 15 % of items is excluded), then gives per-system means with 95 %
t-intervals, overall and per domain, and paired differences between systems, and writes a
report page with a plot.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import io
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .audio import loudness, save_audio
from .evaluate import Item, load_items, model_roundtrip, parse_baselines, run_baseline

RESULTS_FORMAT = "rvqgan-mushra-results"
HIDDEN_REFERENCE = "hidden reference"
ANCHORS = {"anchor 3.5 kHz": 3500.0, "anchor 7 kHz": 7000.0}
TARGET_LUFS = -23.0
PEAK_LIMIT = 0.99
# BS.1534-3 post-screening: exclude a listener who rates the hidden reference below 90 on more than 15 % of items.
SCREEN_SCORE = 90.0
SCREEN_FRACTION = 0.15


@dataclass
class System:
    """A system under test: `name` as reported; a model at `n_codebooks`, or a baseline (`parse_baselines`)."""

    name: str
    model: Any = None
    n_codebooks: int | None = None
    baseline: tuple[str, float | str] | None = None


def lowpass(audio: np.ndarray, sample_rate: int, cutoff: float, transition: float = 200.0) -> np.ndarray:
    """Zero-phase low-pass of `[T]` audio: FFT bins above `cutoff` removed, with a raised-cosine edge `transition` Hz wide."""
    n = len(audio)
    spectrum = np.fft.rfft(audio.astype(np.float64), n=2 * n)
    freqs = np.fft.rfftfreq(2 * n, 1 / sample_rate)
    edge = np.clip((freqs - (cutoff - transition)) / transition, 0, 1)
    spectrum *= 0.5 * (1 + np.cos(np.pi * edge))
    return np.fft.irfft(spectrum, n=2 * n)[:n].astype(np.float32)


def loudness_matched(stimuli: dict[str, np.ndarray], sample_rate: int) -> dict[str, np.ndarray]:
    """Each stimulus at `TARGET_LUFS` (silent ones unchanged), then all scaled alike so no peak exceeds `PEAK_LIMIT`."""
    out = {}
    for name, audio in stimuli.items():
        lufs = loudness(audio[None], sample_rate)
        out[name] = audio * 10 ** ((TARGET_LUFS - lufs) / 20) if lufs > -70 else audio
    peak = max(float(np.abs(a).max(initial=0.0)) for a in out.values())
    scale = min(1.0, PEAK_LIMIT / peak) if peak > 0 else 1.0
    return {name: (a * scale).astype(np.float32) for name, a in out.items()}


def _key(test_id: str, item: str, system: str) -> str:
    return "s" + hashlib.sha256(f"{test_id}|{item}|{system}".encode()).hexdigest()[:10]


def _pick(items: list[Item], per_group: int | None) -> list[Item]:
    """At most `per_group` items of each group, evenly spaced through its sorted list."""
    if per_group is None:
        return items
    picked = []
    for group in sorted({i.group for i in items}):
        members = [i for i in items if i.group == group]
        idx = np.unique(np.linspace(0, len(members) - 1, min(per_group, len(members))).round().astype(int))
        picked += [members[k] for k in idx]
    return picked


def prepare_test(
    models: list[str],
    data: str | Path,
    out_dir: str | Path,
    *,
    kbps: list[float] | None = None,
    baselines: list[str] | None = None,
    seconds: float = 8.0,
    per_group: int | None = None,
    title: str = "Listening test",
) -> dict[str, Any]:
    """Write a MUSHRA test for `models` (each at each of `kbps`, or at all codebooks) and `baselines` on the
    audio under `data` (its sub-folders are the domains) into `out_dir`. Returns the test description
    that is also written to `out_dir/stimuli.json`."""
    from .checkpoint import load_model

    if not 0.5 <= seconds <= 30:
        raise ValueError(f"--seconds must be between 0.5 and 30 (MUSHRA excerpts are short), got {seconds}")
    out_dir = Path(out_dir)
    items = _pick(load_items(data, seconds), per_group)
    systems: list[System] = []
    for source in models:
        model = load_model(source).folded()
        label = Path(source).stem if Path(source).exists() else source
        for rate in kbps or [model.bitrate() / 1000]:
            n = model.n_codebooks_for_kbps(rate)
            systems.append(System(f"{label} {model.bitrate(n) / 1000:.3g} kbps", model=model, n_codebooks=n))
    for kind, name, param in parse_baselines(baselines or []):
        systems.append(System(name, baseline=(kind, param)))
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"two systems share a name: {names}")
    test_id = hashlib.sha256(json.dumps([names, [i.name for i in items], seconds]).encode()).hexdigest()[:12]
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    described: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        sr = item.sample_rate
        stimuli = {"reference": item.audio, HIDDEN_REFERENCE: item.audio}
        stimuli.update({name: lowpass(item.audio, sr, cutoff) for name, cutoff in ANCHORS.items()})
        for system in systems:
            if system.model is not None:
                assert system.n_codebooks is not None
                stimuli[system.name] = model_roundtrip(system.model, item.audio, sr, [system.n_codebooks])[1][system.n_codebooks]
            else:
                assert system.baseline is not None
                stimuli[system.name] = run_baseline(system.baseline[0], system.baseline[1], item.audio, sr)[0]
        stimuli = {k: np.pad(v, (0, max(0, len(item.audio) - len(v))))[: len(item.audio)] for k, v in stimuli.items()}
        stimuli = loudness_matched(stimuli, sr)
        files = {}
        for name, audio in stimuli.items():
            key = "ref" if name == "reference" else _key(test_id, item.name, name)
            rel = f"audio/{index:03d}/{'reference' if key == 'ref' else key}.flac"
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            save_audio(out_dir / rel, audio[None], sr, subtype="PCM_24")
            files[name] = (key, rel)
        described.append(
            {
                "id": f"i{index:03d}",
                "name": item.name,
                "domain": item.group,
                "reference": files["reference"][1],
                "stimuli": {key: {"system": name, "file": rel} for name, (key, rel) in files.items() if name != "reference"},
            }
        )
    test = {
        "test_id": test_id,
        "title": title,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds,
        "systems": [HIDDEN_REFERENCE, *ANCHORS, *names],
        "items": described,
    }
    (out_dir / "stimuli.json").write_text(json.dumps(test, indent=1))
    page = {
        "test_id": test_id,
        "training": 0,
        "items": [
            {
                "id": d["id"],
                "reference": d["reference"],
                "stimuli": [{"key": k, "file": v["file"]} for k, v in d["stimuli"].items()],
            }
            for d in described
        ],
    }
    template = resources.files("rvqgan").joinpath("assets/mushra.html").read_text()
    config = json.dumps(page).replace("</", "<\\/")
    (out_dir / "index.html").write_text(
        template.replace("__CONFIG__", config).replace("<title>Listening test", f"<title>{html.escape(title)}")
    )
    return test


# -- analysis ----------------------------------------------------------------------------------------


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t-interval of the mean (a single value gives a zero-width interval)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    from scipy import stats

    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def read_results(test: dict[str, Any], paths: list[str | Path]) -> list[dict[str, Any]]:
    """Result files of this test (checked: format, test id, known items and stimuli, each rated once, scores 0–100)."""
    items = {d["id"]: d for d in test["items"]}
    results = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: not a readable results file ({type(exc).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
            raise ValueError(f"{path}: not a listening-test results file")
        if data.get("test_id") != test["test_id"]:
            raise ValueError(f"{path}: results of another test ({data.get('test_id')!r}, this one is {test['test_id']!r})")
        for entry in data.get("items", []):
            item = items.get(entry.get("item"))
            scores = entry.get("scores")
            if item is None or not isinstance(scores, dict) or set(scores) != set(item["stimuli"]):
                raise ValueError(f"{path}: item {entry.get('item')!r} does not rate exactly the stimuli of this test")
            if not all(isinstance(v, (int, float)) and 0 <= v <= 100 for v in scores.values()):
                raise ValueError(f"{path}: scores must be numbers from 0 to 100")
        results.append({"path": str(path), **data})
    return results


def analyze(out_dir: str | Path, result_paths: list[str | Path]) -> dict[str, Any]:
    """Post-screen listeners, then per-system means with 95 % intervals (overall and per domain) and paired
    differences; writes `analysis.json` and `analysis.html` into `out_dir` and returns the analysis."""
    out_dir = Path(out_dir)
    try:
        test = json.loads((out_dir / "stimuli.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{out_dir}: not a listening test folder (no readable stimuli.json: {type(exc).__name__})") from None
    if not result_paths:
        raise ValueError("no results files given")
    items = {d["id"]: d for d in test["items"]}
    results = read_results(test, result_paths)
    rows = []  # (listener, item, domain, system, score)
    screening = {}
    for r in results:
        entries = r.get("items", [])
        low = 0
        for entry in entries:
            item = items[entry["item"]]
            for key, score in entry["scores"].items():
                system = item["stimuli"][key]["system"]
                rows.append((r["listener"], entry["item"], item["domain"], system, float(score)))
                low += system == HIDDEN_REFERENCE and score < SCREEN_SCORE
        fraction = low / len(entries) if entries else 1.0
        screening[r["listener"]] = {
            "items": len(entries),
            "hidden_reference_below_90": low,
            "excluded": fraction > SCREEN_FRACTION or not entries,
        }
    kept = [row for row in rows if not screening[row[0]]["excluded"]]
    systems = test["systems"]
    domains = sorted({d["domain"] for d in test["items"]})

    def summary(subset: list[tuple]) -> dict[str, Any]:
        out = {}
        for system in systems:
            values = np.array([row[4] for row in subset if row[3] == system])
            if values.size:
                mean, lo, hi = t_interval(values)
                out[system] = {"mean": mean, "ci95": [lo, hi], "n": int(values.size)}
        return out

    paired = {}
    by_key = {(row[0], row[1], row[3]): row[4] for row in kept}
    for a in systems:
        for b in systems:
            if a >= b:
                continue
            diffs = np.array(
                [by_key[(li, it, a)] - by_key[(li, it, b)] for (li, it, s) in by_key if s == a and (li, it, b) in by_key]
            )
            if diffs.size:
                mean, lo, hi = t_interval(diffs)
                paired[f"{a} − {b}"] = {"mean": mean, "ci95": [lo, hi], "n": int(diffs.size)}
    analysis = {
        "test_id": test["test_id"],
        "listeners": screening,
        "excluded": sorted(name for name, s in screening.items() if s["excluded"]),
        "overall": summary(kept),
        "per_domain": {d: summary([row for row in kept if row[2] == d]) for d in domains},
        "paired": paired,
    }
    (out_dir / "analysis.json").write_text(json.dumps(analysis, indent=1))
    (out_dir / "analysis.html").write_text(_report(test, analysis))
    return analysis


def _plot(analysis: dict[str, Any]) -> str:
    """Means with 95 % intervals per system, overall and per domain, as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scopes = {"overall": analysis["overall"], **analysis["per_domain"]}
    systems = list(analysis["overall"])
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(systems)), 3.6))
    width = 0.8 / len(scopes)
    for j, (scope, stats) in enumerate(scopes.items()):
        xs = [i + (j - (len(scopes) - 1) / 2) * width for i, s in enumerate(systems) if s in stats]
        means = [stats[s]["mean"] for s in systems if s in stats]
        errs = [
            [stats[s]["mean"] - stats[s]["ci95"][0] for s in systems if s in stats],
            [stats[s]["ci95"][1] - stats[s]["mean"] for s in systems if s in stats],
        ]
        ax.errorbar(xs, means, yerr=errs, fmt="o", capsize=3, label=scope)
    ax.set_xticks(range(len(systems)), systems, rotation=20, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("MUSHRA score")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _report(test: dict[str, Any], analysis: dict[str, Any]) -> str:
    def table(stats: dict[str, Any]) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(s)}</td><td>{v['mean']:.1f}</td><td>[{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}]</td><td>{v['n']}</td></tr>"
            for s, v in stats.items()
        )
        return f"<table><tr><th>system</th><th>mean</th><th>95 % interval</th><th>ratings</th></tr>{rows}</table>"

    listeners = "".join(
        f"<li>{html.escape(name)}: hidden reference below {SCREEN_SCORE:g} on {s['hidden_reference_below_90']} of {s['items']} items"
        + (" — <b>excluded</b>" if s["excluded"] else "")
        + "</li>"
        for name, s in analysis["listeners"].items()
    )
    domains = "".join(f"<h3>{html.escape(d)}</h3>{table(stats)}" for d, stats in analysis["per_domain"].items())
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(test["title"])}: results</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:auto;padding:1em}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>{html.escape(test["title"])}: results</h1>
<p>Test {test["test_id"]}, {len(test["items"])} items. Post-screening (ITU-R BS.1534-3): listeners who rate the hidden
reference below {SCREEN_SCORE:g} on more than {SCREEN_FRACTION:.0%} of the items are excluded.</p><ul>{listeners}</ul>
<img alt="means with 95 % intervals" src="{_plot(analysis)}">
<h2>Overall</h2>{table(analysis["overall"])}<h2>Per domain</h2>{domains}
<h2>Paired differences</h2>{table(analysis["paired"])}</body></html>"""
