"""MUSHRA listening tests (ITU-R BS.1534): prepare a self-contained test, then analyse its results.

`prepare_test` writes, for each item, the reference, a hidden copy of it, 3.5 kHz and 7 kHz
low-pass anchors and every system's decoding (loudness-matched, trimmed to one excerpt) as
WAV (or FLAC) files under opaque names, next to one static page (`index.html`, from
`assets/mushra.html`) that runs from `file://` or any static host. The page never names the
systems: the key → system map is written beside the folder (`key_path`), which `analyze` reads.

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
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .audio import loudness, save_audio
from .baselines import Baseline, parse_baselines
from .evaluate import Item, load_items, model_roundtrip, run_baseline
from .fileio import atomic_write
from .loading import load_model
from .untrusted import for_plot, for_terminal

RESULTS_FORMAT = "rvqgan-mushra-results"
HIDDEN_REFERENCE = "hidden reference"
ANCHORS = {"anchor 3.5 kHz": 3500.0, "anchor 7 kHz": 7000.0}
TARGET_LUFS = -23.0
PEAK_LIMIT = 0.99
# BS.1534-3 post-screening: exclude a listener who rates the hidden reference below 90 on more than 15 % of items.
SCREEN_SCORE = 90.0
SCREEN_FRACTION = 0.15
MAX_JSON_BYTES = 16 * 2**20  # the largest key or results file read (`read_json`)
MAX_LISTENER_NAME = 200  # characters of a listener's name or pseudonym


@dataclass
class System:
    """A system under test: `name` as reported; a model at `n_codebooks`, or a baseline."""

    name: str
    model: Any = None
    n_codebooks: int | None = None
    baseline: Baseline | None = None


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


def stimulus_key(test_id: str, item: str, system: str) -> str:
    """The blind name of `system`'s stimulus for `item`: a hash, so neither the name nor the sorted order
    of an item's stimuli says which system made it (the test id differs from test to test)."""
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


def key_path(out_dir: str | Path) -> Path:
    """Where the key (stimulus → system) of the test in `out_dir` is kept: beside the folder, never in it."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.key.json"


def analysis_dir(out_dir: str | Path) -> Path:
    """Where `analyze` writes its report: beside the test folder."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.analysis"


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
    audio_format: str = "wav",
    overwrite: bool = False,
    warn: Any = None,
) -> dict[str, Any]:
    """Write a MUSHRA test for `models` (each at each of `kbps`, or at all codebooks) and `baselines` on the
    audio under `data` (its sub-folders are the domains) into `out_dir`; the key goes to `key_path(out_dir)`.

    Stimuli are 16-bit WAV by default, so every file of an item has the same size (FLAC sizes would
    give the hidden reference away); `warn` receives one-line notes (short items, anchors at or
    above an item's Nyquist frequency). Returns the test description (the key's content).
    """
    out_dir = Path(out_dir)
    _check_test_arguments(out_dir, seconds, per_group, audio_format, overwrite)
    note = warn or (lambda message: None)
    items = _pick(load_items(data, seconds), per_group)
    systems, digests = _systems(models, kbps, baselines or [])
    names = [s.name for s in systems]
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    test_id = hashlib.sha256(json.dumps([names, digests, [i.name for i in items], seconds, created]).encode()).hexdigest()[:12]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "audio").mkdir(parents=True)
    described = []
    for index, item in enumerate(items):
        _note_item(item, seconds, note)
        stimuli = _stimuli(item, systems)
        described.append(_write_item(out_dir, test_id, index, item, stimuli, audio_format))
    test = {
        "test_id": test_id,
        "title": title,
        "created": created,
        "seconds": seconds,
        "systems": [HIDDEN_REFERENCE, *ANCHORS, *names],
        "systems_under_test": names,
        "items": described,
    }
    atomic_write(key_path(out_dir), lambda tmp: tmp.write_text(json.dumps(test, indent=1)))
    _write_page(out_dir, test_id, title, described)
    return test


def _check_test_arguments(out_dir: Path, seconds: float, per_group: int | None, audio_format: str, overwrite: bool) -> None:
    """Refuse, before any work, settings no test can use and a folder that already holds a test (or its key):
    replacing a test silently would leave its listeners' results without a key."""
    if not 0.5 <= seconds <= 30:
        raise ValueError(f"--seconds must be between 0.5 and 30 (MUSHRA excerpts are short), got {seconds}")
    if per_group is not None and per_group < 1:
        raise ValueError(f"--per-group must be at least 1, got {per_group}")
    if audio_format not in ("wav", "flac"):
        raise ValueError(f"the audio format must be wav or flac, got {audio_format!r}")
    if (out_dir.exists() and any(out_dir.iterdir()) or key_path(out_dir).exists()) and not overwrite:
        raise ValueError(f"{out_dir}: a test is already there (its listeners' results would no longer match); use --overwrite")


def _systems(models: list[str], kbps: list[float] | None, baselines: list[str]) -> tuple[list[System], list[str]]:
    """The systems under test → (each model at each of `kbps` (or at all its codebooks), then the baselines;
    the models' weight ids, which go into the test id). Names must be distinct and differ from the
    reference's and the anchors', since the key maps stimuli to systems by name."""
    systems: list[System] = []
    digests = []
    for source in models:
        model = load_model(source).folded()
        digests.append(model.weights_id())
        label = Path(source).stem if Path(source).exists() else source
        for rate in kbps or [model.bitrate() / 1000]:
            n = model.n_codebooks_for_kbps(rate)
            systems.append(System(f"{label} {model.bitrate(n) / 1000:.3g} kbps", model=model, n_codebooks=n))
    systems += [System(b.name, baseline=b) for b in parse_baselines(baselines)]
    names = [s.name for s in systems]
    if len(set(names)) != len(names) or set(names) & {HIDDEN_REFERENCE, *ANCHORS}:
        raise ValueError(f"system names must be distinct and not those of the reference or anchors: {names}")
    return systems, digests


def _note_item(item: Item, seconds: float, note: Callable[[str], None]) -> None:
    """Tell `note` what makes `item` a weaker test: shorter than the excerpt, or anchors its sample rate cannot tell apart
    from the reference (a cutoff at or near its Nyquist frequency)."""
    sr = item.sample_rate
    if len(item.audio) < int(seconds * sr):
        note(f"{item.name}: only {len(item.audio) / sr:.1f} s long, shorter than --seconds {seconds:g}")
    for name, cutoff in ANCHORS.items():
        if cutoff >= sr / 2 - 200:
            note(f"{item.name}: at {sr} Hz the {name} is nearly the reference itself (Nyquist {sr // 2} Hz)")


def _stimuli(item: Item, systems: list[System]) -> dict[str, np.ndarray]:
    """Every stimulus of `item`, `[T]` each: the reference, its hidden copy, the anchors and each system's
    decoding, cut or padded to the item's length and loudness-matched (so loudness gives nothing away)."""
    sr = item.sample_rate
    stimuli = {"reference": item.audio, HIDDEN_REFERENCE: item.audio}
    stimuli.update({name: lowpass(item.audio, sr, cutoff) for name, cutoff in ANCHORS.items()})
    for system in systems:
        if system.model is not None:
            assert system.n_codebooks is not None
            stimuli[system.name] = model_roundtrip(system.model, item.audio, sr, [system.n_codebooks])[1][system.n_codebooks]
        else:
            assert system.baseline is not None
            stimuli[system.name] = run_baseline(system.baseline, item.audio, sr)[0]
    stimuli = {k: np.pad(v, (0, max(0, len(item.audio) - len(v))))[: len(item.audio)] for k, v in stimuli.items()}
    return loudness_matched(stimuli, sr)


def _write_item(
    out_dir: Path, test_id: str, index: int, item: Item, stimuli: dict[str, np.ndarray], audio_format: str
) -> dict[str, Any]:
    """Write `item`'s stimuli under `audio/NNN/` by their blind keys → the item's entry of the test description.

    WAV is 16-bit (every file of an item the same size); FLAC is 24-bit.
    """
    subtype = "PCM_16" if audio_format == "wav" else "PCM_24"
    files = {}
    for name, audio in stimuli.items():
        key = "ref" if name == "reference" else stimulus_key(test_id, item.name, name)
        rel = f"audio/{index:03d}/{'reference' if key == 'ref' else key}.{audio_format}"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        save_audio(out_dir / rel, audio[None], item.sample_rate, subtype=subtype)
        files[name] = (key, rel)
    return {
        "id": f"i{index:03d}",
        "name": item.name,
        "domain": item.group,
        "reference": files["reference"][1],
        # listed by key (a hash): the order says nothing about which stimulus is which
        "stimuli": {
            key: {"system": name, "file": rel}
            for name, (key, rel) in sorted(files.items(), key=lambda kv: kv[1][0])
            if name != "reference"
        },
    }


def _write_page(out_dir: Path, test_id: str, title: str, described: list[dict[str, Any]]) -> None:
    """`index.html`: the static test page (`assets/mushra.html`) with the items and their stimuli by key only,
    never by system, so the hosted folder does not give the key away."""
    page = {
        "test_id": test_id,
        "title": title,
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
    config = _script_json(page)
    (out_dir / "index.html").write_text(
        template.replace("__CONFIG__", config).replace("<title>Listening test", f"<title>{html.escape(title)}")
    )


def _script_json(value: Any) -> str:
    """`value` as JSON to place inside a `<script>` element: `<`, `>` and `&` written as JSON escapes,
    so no text in it (a title, a file name) can close the element or open a comment there."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- analysis ----------------------------------------------------------------------------------------


def t_interval(values: np.ndarray) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the 95 % t-interval of the mean; the bounds are None for fewer than two values."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, None, None
    from scipy import stats  # optional: eval extra

    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def read_json(path: str | Path, what: str) -> Any:
    """The JSON in the file `path`, read only if it is a regular file of at most `MAX_JSON_BYTES`
    (a key or a results file of a listening test takes a few hundred KB; a bigger one is not
    one, and reading it whole could take gigabytes). Anything else is a ValueError naming the
    file and `what` it should have been."""
    path = Path(path)
    try:
        if not path.is_file():  # a FIFO or device would block or never end
            raise ValueError(f"{path}: not a readable {what} (not a regular file)")
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable {what} ({type(exc).__name__})") from None
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"{path}: larger than {MAX_JSON_BYTES // 2**20} MiB, too large for a {what}")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # ValueError covers UnicodeDecodeError, JSONDecodeError
        raise ValueError(f"{path}: not a readable {what} ({type(exc).__name__})") from None


def read_results(test: dict[str, Any], paths: list[str | Path]) -> list[dict[str, Any]]:
    """Result files of this test, checked: format, test id, a listener named once across files, each item once,
    exactly the item's stimuli, scores from 0 to 100. Anything else is a ValueError naming the file."""
    items = {d["id"]: d for d in test["items"]}
    results: list[dict[str, Any]] = []
    listeners: dict[str, str] = {}
    for path in paths:
        data = read_json(path, "results file")
        if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
            raise ValueError(f"{path}: not a listening-test results file")
        if data.get("test_id") != test["test_id"]:
            raise ValueError(
                f"{path}: results of another test ({str(data.get('test_id'))[:20]!r}, this one is {test['test_id']!r})"
            )
        listener = data.get("listener")
        if not isinstance(listener, str) or not listener:
            raise ValueError(f"{path}: no listener name")
        if len(listener) > MAX_LISTENER_NAME:
            raise ValueError(f"{path}: the listener name is longer than {MAX_LISTENER_NAME} characters")
        if listener in listeners:
            raise ValueError(f"{path}: a second results file of listener {listener!r:.80} (the first is {listeners[listener]})")
        listeners[listener] = str(path)
        entries = data.get("items")
        if not isinstance(entries, list):
            raise ValueError(f"{path}: 'items' must be a list")
        seen: set[str] = set()
        for number, entry in enumerate(entries):
            item_id = _check_entry(entry, items, f"{path}: items[{number}]")
            if item_id in seen:
                raise ValueError(f"{path}: item {item_id} is rated twice")
            seen.add(item_id)
        results.append({"path": str(path), **data})
    return results


def _check_entry(entry: Any, items: dict[str, dict[str, Any]], where: str) -> str:
    """The id of the test item that a results file's `entry` rates, once it is checked: an object
    whose "item" is the id (a string) of an item of this test and whose "scores" rate exactly
    that item's stimuli, each with a number from 0 to 100. Otherwise a ValueError starting with `where`."""
    item_id = entry.get("item") if isinstance(entry, dict) else None
    item = items.get(item_id) if isinstance(item_id, str) else None
    scores = entry.get("scores") if isinstance(entry, dict) else None
    if not isinstance(item_id, str) or item is None or not isinstance(scores, dict) or set(scores) != set(item["stimuli"]):
        raise ValueError(f"{where}: an item that does not rate exactly the stimuli of this test")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100 for v in scores.values()):
        raise ValueError(f"{where}: scores must be numbers from 0 to 100")
    return item_id


def read_key(out_dir: str | Path) -> dict[str, Any]:
    """The key of the test in `out_dir` (`key_path`), checked for the fields `analyze` uses (ids,
    names and domains are strings; each stimulus names its system), so that a damaged or edited
    key is a ValueError naming it rather than a failure halfway through the analysis."""
    path = key_path(out_dir)
    if not path.exists():
        raise ValueError(f"{path}: no key of the test in {out_dir} (it is written beside the test folder)")
    test = read_json(path, "test key")

    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    def good_item(d: Any) -> bool:
        return (
            isinstance(d, dict)
            and all(isinstance(d.get(k), str) for k in ("id", "domain"))
            and isinstance(d.get("stimuli"), dict)
            and all(isinstance(v, dict) and isinstance(v.get("system"), str) for v in d["stimuli"].values())
        )

    ok = (
        isinstance(test, dict)
        and all(isinstance(test.get(k), str) for k in ("test_id", "title"))
        and strings(test.get("systems"))
        and strings(test.get("systems_under_test", []))
        and isinstance(test.get("items"), list)
        and all(good_item(d) for d in test["items"])
    )
    if not ok:
        raise ValueError(f"{path}: not a key of a listening test (damaged or edited)")
    return test


def _holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values."""
    order = sorted(pvalues, key=pvalues.__getitem__)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def analyze(out_dir: str | Path, result_paths: list[str | Path]) -> dict[str, Any]:
    """Post-screen listeners, then per-system means with 95 % intervals (overall and per domain) and paired
    differences between the systems under test (paired t-tests, Holm-adjusted); writes `analysis.json` and
    `analysis.html` into `analysis_dir(out_dir)` and returns the analysis."""
    out_dir = Path(out_dir)
    test = read_key(out_dir)
    if not result_paths:
        raise ValueError("no results files given")
    items = {d["id"]: d for d in test["items"]}
    results = read_results(test, result_paths)
    rows = []  # (listener, item, domain, system, score)
    screening = {}
    for r in results:
        entries = r["items"]
        low = 0
        for entry in entries:
            item = items[entry["item"]]
            for key, score in entry["scores"].items():
                system = item["stimuli"][key]["system"]
                rows.append((r["listener"], entry["item"], item["domain"], system, float(score)))
                low += system == HIDDEN_REFERENCE and score < SCREEN_SCORE
        screening[r["listener"]] = {
            "items": len(entries),
            "hidden_reference_below_90": low,
            "excluded": not entries or low / len(entries) > SCREEN_FRACTION,
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

    by_key = {(row[0], row[1], row[3]): row[4] for row in kept}
    under_test = test.get("systems_under_test", systems)
    paired, pvalues = {}, {}
    for i, a in enumerate(under_test):
        for b in under_test[i + 1 :]:
            diffs = np.array(
                [by_key[(li, it, a)] - by_key[(li, it, b)] for (li, it, s) in by_key if s == a and (li, it, b) in by_key]
            )
            if diffs.size:
                mean, lo, hi = t_interval(diffs)
                name = f"{a} − {b}"
                paired[name] = {"mean": mean, "ci95": [lo, hi], "n": int(diffs.size)}
                if diffs.size > 1 and diffs.std() > 0:
                    from scipy import stats  # optional: eval extra

                    pvalues[name] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    for name, p in _holm(pvalues).items():
        paired[name]["p_holm"] = p
    analysis = {
        "test_id": test["test_id"],
        "listeners": screening,
        "excluded": sorted(name for name, s in screening.items() if s["excluded"]),
        "kept": sorted(name for name, s in screening.items() if not s["excluded"]),
        "overall": summary(kept),
        "per_domain": {d: summary([row for row in kept if row[2] == d]) for d in domains},
        "paired": paired,
    }
    target = analysis_dir(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    (target / "analysis.json").write_text(json.dumps(analysis, indent=1))
    (target / "analysis.html").write_text(_report(test, analysis))
    return analysis


def _plot(analysis: dict[str, Any]) -> str:
    """Means with 95 % intervals per system, overall and per domain, as a PNG data URI."""
    import matplotlib  # optional: eval extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: eval extra

    scopes = {"overall": analysis["overall"], **analysis["per_domain"]}
    systems = list(analysis["overall"])
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(systems)), 3.6))
    width = 0.8 / len(scopes)
    for j, (scope, stats) in enumerate(scopes.items()):
        xs = [i + (j - (len(scopes) - 1) / 2) * width for i, s in enumerate(systems) if s in stats]
        means = [stats[s]["mean"] for s in systems if s in stats]
        errs = [
            [
                stats[s]["mean"] - (stats[s]["ci95"][0] if stats[s]["ci95"][0] is not None else stats[s]["mean"])
                for s in systems
                if s in stats
            ],
            [
                (stats[s]["ci95"][1] if stats[s]["ci95"][1] is not None else stats[s]["mean"]) - stats[s]["mean"]
                for s in systems
                if s in stats
            ],
        ]
        ax.errorbar(xs, means, yerr=errs, fmt="o", capsize=3, label=for_plot(scope))
    ax.set_xticks(range(len(systems)), [for_plot(s) for s in systems], rotation=20, ha="right")
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
    """`analysis.html`: the screening, a plot and the tables of means and paired differences."""

    def interval(v: dict[str, Any]) -> str:
        lo, hi = v["ci95"]
        return "n/a (one rating)" if lo is None else f"[{lo:.1f}, {hi:.1f}]"

    def table(stats: dict[str, Any], paired: bool = False) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(s)}</td><td>{v['mean']:.1f}</td><td>{interval(v)}</td><td>{v['n']}</td>"
            + (f"<td>{v['p_holm']:.3g}</td>" if paired and "p_holm" in v else "<td></td>" if paired else "")
            + "</tr>"
            for s, v in stats.items()
        )
        head = "<th>mean</th><th>95 % interval</th><th>ratings</th>" + ("<th>p (paired t, Holm)</th>" if paired else "")
        return f"<table><tr><th>{'systems' if paired else 'system'}</th>{head}</tr>{rows}</table>"

    if not analysis["kept"]:
        return (
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(test['title'])}: results</title></head>"
            f"<body><h1>No listener passed the post-screening</h1><p>All {len(analysis['listeners'])} listeners rated the hidden "
            f"reference below {SCREEN_SCORE:g} on more than {SCREEN_FRACTION:.0%} of the items.</p></body></html>"
        )

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
<p>Test {html.escape(test["test_id"])}, {len(test["items"])} items. Post-screening (ITU-R BS.1534-3): listeners who rate the hidden
reference below {SCREEN_SCORE:g} on more than {SCREEN_FRACTION:.0%} of the items are excluded.</p><ul>{listeners}</ul>
<img alt="means with 95 % intervals" src="{_plot(analysis)}">
<h2>Overall</h2>{table(analysis["overall"])}<h2>Per domain</h2>{domains}
<h2>Paired differences between the systems under test</h2>{table(analysis["paired"], paired=True)}</body></html>"""


def analysis_lines(result: dict[str, Any]) -> list[str]:
    """What `rvqgan listen --analyze` prints of an `analyze` result: exclusions, then each system's mean and interval.
    Listener and system names come from the results files and the key, so they are shown without
    their control characters (`untrusted.for_terminal`)."""
    lines = [f"excluded by post-screening: {for_terminal(name)}" for name in result["excluded"]]
    for system, v in result["overall"].items():
        lo, hi = v["ci95"]
        interval = f"[{lo:5.1f}, {hi:5.1f}]" if lo is not None else "(one rating)"
        lines.append(f"  {for_terminal(system):<28} {v['mean']:5.1f}  {interval}  n={v['n']}")
    return lines
