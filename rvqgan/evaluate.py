"""Evaluation: the paper's metrics on a folder of audio, classical-codec baselines, bootstrap CIs, an HTML report.

Metric definitions (as the paper's evaluation code computes them; all on mono excerpts):
- mel distance: the 7-scale log10-mel L1 of training (`loss.multiscale_mel_loss`), summed over
  scales, computed at 44.1 kHz;
- STFT distance: log10-power L1 plus magnitude L1 at windows 2048 and 512 (`loss.multiscale_stft_loss`), at 44.1 kHz;
- waveform L1: mean absolute sample difference at the original rate;
- SI-SDR: zero-mean, scale-invariant, reference first (`loss.si_sdr`);
- pitch (`pitch.pitch_errors`, pYIN via librosa) on items of groups named "speech" or "music":
  F0 RMSE in cents over frames voiced in both, and the fraction of frames whose voicing differs;
- ViSQOL (visqol-python): audio mode at 48 kHz for every item, speech mode at 16 kHz for items of
  a group named "speech"; reference first, degraded second (the reference script swaps them);
- bitrate efficiency: Σ over codebooks of the code entropy over the whole set / total bits;
- true bitrates: from the codes (n_q · bits · frame rate) and from the bytes of the coded file.
Baselines are decoded, aligned to the reference by cross-correlation (codec delay, up to 50 ms),
and trimmed to its length before scoring.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .audio import find_audio_files, load_audio, loudest_window, resample, save_audio
from .baselines import Baseline, parse_baselines
from .files import compress_file
from .loading import load_model
from .loss import multiscale_mel_loss, multiscale_stft_loss, si_sdr
from .model import Codec
from .pitch import pitch_errors
from .quantize import codebook_usage
from .report import write_report
from .untrusted import for_spreadsheet, for_terminal

METRICS = (
    "visqol_audio",
    "visqol_speech",
    "mel",
    "stft",
    "waveform_l1",
    "si_sdr",
    "f0_rmse_cents",
    "voicing_error",
    "kbps_codes",
    "kbps_file",
)
HIGHER_IS_BETTER = {
    "visqol_audio": True,
    "visqol_speech": True,
    "si_sdr": True,
    "mel": False,
    "stft": False,
    "waveform_l1": False,
    "f0_rmse_cents": False,
    "voicing_error": False,
}
MAX_DELAY_S = 0.05  # the longest baseline delay `run_baseline` undoes
PITCH_GROUPS = ("speech", "music")  # groups whose items get pitch metrics (voiced speech, melodic music)


@dataclass
class Item:
    """One evaluation excerpt: `name` is its path under the data folder, `group` its first sub-folder."""

    name: str
    group: str
    audio: np.ndarray  # [T] float32, mono, original rate
    sample_rate: int


def load_items(folder: str | Path, seconds: float) -> list[Item]:
    """Mono excerpts of at most `seconds` from every audio file under `folder`, grouped by first sub-folder.

    The excerpt is the loudest of five evenly spaced windows, so it is never a silent lead-in.
    """
    folder = Path(folder)
    items = []
    for path in find_audio_files(folder):
        audio, sr = load_audio(path)
        mono = loudest_window(audio.mean(0), int(seconds * sr))
        rel = path.relative_to(folder)
        group = rel.parts[0] if len(rel.parts) > 1 else "all"
        items.append(Item(str(rel), group, np.ascontiguousarray(mono, dtype=np.float32), sr))
    if not items:
        raise ValueError(f"{folder}: no audio files found")
    return items


# -- systems --------------------------------------------------------------------------------------


def run_baseline(baseline: Baseline, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int | None]:
    """`baseline` on mono `[T]` audio → (its output aligned to `audio`, `[T]`; coded bytes or None if unknown).

    Codecs delay their output (Opus by 6.5 ms and more), so it is aligned by cross-correlation first.
    """
    y, size = baseline.roundtrip(audio, sample_rate)
    return align(audio, y, int(MAX_DELAY_S * sample_rate)), size


@torch.no_grad()
def model_roundtrip(
    model: Codec, audio: np.ndarray, sample_rate: int, n_codebooks: list[int]
) -> tuple[torch.Tensor, dict[int, np.ndarray]]:
    """Mono `audio` at `sample_rate` through `model` with each count of codebooks → (codes `[1, N, F]`
    with all of them, {n: decoded audio at `sample_rate`, same length as `audio`})."""
    x = resample(audio[None], sample_rate, model.sample_rate)
    full = model.encode(torch.from_numpy(x)[None], max(n_codebooks))
    decoded = {}
    for n in n_codebooks:
        y = model.decode(full[:, :n])[0, 0, : x.shape[-1]].numpy()
        est = resample(y[None], model.sample_rate, sample_rate)[0][: len(audio)]
        decoded[n] = np.pad(est, (0, len(audio) - len(est)))
    return full, decoded


def align(reference: np.ndarray, estimate: np.ndarray, max_lag: int) -> np.ndarray:
    """Shift `estimate` by the lag (|lag| ≤ max_lag) that best correlates it with `reference`; same length as reference."""
    n = len(reference)
    est = np.pad(estimate, (0, max(0, n + max_lag - len(estimate))))
    size = 1 << int(math.ceil(math.log2(n + len(est))))
    corr = np.fft.irfft(np.fft.rfft(est, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([corr[: max_lag + 1], corr[-max_lag:]])
    lag = int(lags[np.argmax(values)])
    if lag >= 0:
        out = est[lag : lag + n]
    else:
        out = np.concatenate([np.zeros(-lag, np.float32), est[: n + lag]])
    return np.pad(out, (0, n - len(out))).astype(np.float32)


# -- metrics --------------------------------------------------------------------------------------

_VISQOL: dict[str, Any] = {}  # one ViSQOL API object per mode, made on first use


def visqol(reference: np.ndarray, degraded: np.ndarray, sample_rate: int, mode: str) -> float | None:
    """ViSQOL MOS-LQO; `mode` "audio" (48 kHz) or "speech" (16 kHz). Reference first.

    Returns None for items ViSQOL cannot score (e.g. shorter than its minimum patch, about 1 s).
    """
    logging.getLogger("visqol").setLevel(logging.ERROR)
    from visqol import VisqolApi  # optional: eval extra

    if mode not in _VISQOL:
        api = VisqolApi()
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            api.create(mode=mode)
        _VISQOL[mode] = api
    rate = 48000 if mode == "audio" else 16000
    ref = resample(reference[None], sample_rate, rate)[0].astype(np.float64)
    deg = resample(degraded[None], sample_rate, rate)[0].astype(np.float64)
    try:
        return float(_VISQOL[mode].measure_from_arrays(ref, deg, rate).moslqo)
    except (ValueError, RuntimeError, IndexError) as exc:
        print(f"warning: ViSQOL ({mode}) skipped an item: {exc}", file=sys.stderr)
        return None


def score(
    reference: np.ndarray, estimate: np.ndarray, sample_rate: int, speech: bool, with_visqol: bool, with_pitch: bool = False
) -> dict[str, float | None]:
    """All per-item metrics of one reconstruction (both `[T]` at `sample_rate`)."""
    ref44 = torch.from_numpy(resample(reference[None], sample_rate, 44100))[None]
    est44 = torch.from_numpy(resample(estimate[None], sample_rate, 44100))[None]
    out: dict[str, float | None] = {
        "mel": multiscale_mel_loss(est44, ref44, 44100).item(),
        "stft": multiscale_stft_loss(est44, ref44).item(),
        "waveform_l1": float(np.abs(reference - estimate).mean()),
        "si_sdr": si_sdr(torch.from_numpy(reference)[None], torch.from_numpy(estimate)[None]).item(),
    }
    if with_pitch:
        out.update(pitch_errors(reference, estimate, sample_rate))
    if with_visqol:
        out["visqol_audio"] = visqol(reference, estimate, sample_rate, "audio")
        if speech:
            out["visqol_speech"] = visqol(reference, estimate, sample_rate, "speech")
    return out


# -- running --------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}  # each worker process's model and its source


def _init_worker(model_source: str, threads: int) -> None:
    """Load the model (folded for inference) once per worker process, with its share of the CPU threads."""
    torch.set_num_threads(threads)
    _STATE["model"] = load_model(model_source).folded()
    _STATE["source"] = model_source


def _model_label(source: str) -> str:
    """The model's name in system labels: a file's stem, or the source as given (a name such as "default")."""
    return Path(source).stem if os.path.exists(source) else source


def evaluate_item(
    args: tuple,
) -> tuple[list[dict], dict[int, np.ndarray], dict[str, np.ndarray], tuple[str, np.ndarray]]:
    """All systems on one item → (result rows, codes per n_q `[n_q, F]`, reconstructions for the report,
    (system, reconstruction) at the most codebooks evaluated, for the item's spectrogram pair).

    `args` is (item, codebook counts, baselines, with ViSQOL, with pitch, keep the audio): one tuple,
    so a worker pool can map it over the items.
    """
    item, n_codebooks, baselines, with_visqol, with_pitch, keep_audio = args
    model = _STATE["model"]
    label = _model_label(str(_STATE["source"]))
    rows, codes_by_n, recons = [], {}, {}
    speech = item.group.lower().startswith("speech")
    pitch = with_pitch and item.group.lower().startswith(PITCH_GROUPS)
    duration = len(item.audio) / item.sample_rate
    full, decoded = model_roundtrip(model, item.audio, item.sample_rate, n_codebooks)
    for n in n_codebooks:
        codes = full[:, :n]
        est = decoded[n]
        buf = io.BytesIO()
        wav = io.BytesIO()
        wav.name = "item.wav"
        save_audio(wav, item.audio[None], item.sample_rate, subtype="FLOAT")
        wav.seek(0)
        compress_file(model, wav, buf, n_codebooks=n, model_name=label)
        row = {
            "item": item.name,
            "group": item.group,
            "system": f"{label} {n}q",
            "family": label,
            "n_codebooks": n,
            "kbps_codes": model.bitrate(n) / 1000,
            "kbps_file": len(buf.getvalue()) * 8 / duration / 1000,
        }
        row.update(score(item.audio, est, item.sample_rate, speech, with_visqol, pitch))
        rows.append(row)
        codes_by_n[n] = codes[0].numpy()
        if keep_audio:
            recons[row["system"]] = est
        if n == max(n_codebooks):
            pair = (row["system"], est)
    for baseline in baselines:
        est, size = run_baseline(baseline, item.audio, item.sample_rate)
        row = {
            "item": item.name,
            "group": item.group,
            "system": baseline.name,
            "family": baseline.family,
            "n_codebooks": None,
            "kbps_codes": baseline.kbps,
            "kbps_file": size * 8 / duration / 1000 if size is not None else None,
        }
        row.update(score(item.audio, est, item.sample_rate, speech, with_visqol, pitch))
        rows.append(row)
        if keep_audio:
            recons[baseline.name] = est
    return rows, codes_by_n, recons, pair


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): 95 % percentile bootstrap interval of the mean."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if values.size == 0:
        return (float("nan"),) * 3
    if values.size == 1:
        return float(values[0]), float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (n_boot, values.size))].mean(1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(rows: list[dict]) -> dict:
    """Per system: overall and per-group means with 95 % bootstrap CIs for every metric."""
    systems = sorted({r["system"] for r in rows}, key=lambda s: (_family_of(rows, s), _kbps_of(rows, s)))
    groups = sorted({r["group"] for r in rows})
    out = {}
    for system in systems:
        srows = [r for r in rows if r["system"] == system]
        entry = {"family": srows[0]["family"], "n_items": len(srows)}
        for scope in ["overall", *groups]:
            scoped = srows if scope == "overall" else [r for r in srows if r["group"] == scope]
            if not scoped:
                continue
            entry[scope] = {
                m: bootstrap_ci(np.array([r.get(m) for r in scoped], dtype=object))
                for m in METRICS
                if any(r.get(m) is not None for r in scoped)
            }
        out[system] = entry
    return out


def _family_of(rows: list[dict], system: str) -> str:
    """The family of `system` (its rate–quality curve), from its first row."""
    return next(r["family"] for r in rows if r["system"] == system)


def _kbps_of(rows: list[dict], system: str) -> float:
    """The nominal bitrate of `system` (0 when unknown), to sort systems along their curve."""
    r = next(r for r in rows if r["system"] == system)
    return r["kbps_codes"] if r["kbps_codes"] is not None else 0.0


def paired(rows: list[dict], a: str, b: str, metric: str, scope: str = "overall") -> dict:
    """Mean of (a − b) over items both systems scored, with its 95 % bootstrap interval."""
    by_item: dict[str, dict[str, float]] = {}
    for r in rows:
        if scope != "overall" and r["group"] != scope:
            continue
        if r["system"] in (a, b) and r.get(metric) is not None:
            by_item.setdefault(r["item"], {})[r["system"]] = r[metric]
    diffs = np.array([v[a] - v[b] for v in by_item.values() if a in v and b in v])
    mean, lo, hi = bootstrap_ci(diffs)
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "scope": scope,
        "n": int(diffs.size),
        "mean_diff": mean,
        "ci_low": lo,
        "ci_high": hi,
        "excludes_zero": bool(diffs.size > 1 and (lo > 0 or hi < 0)),
    }


def run_evaluation(
    model_source: str,
    data: str | Path,
    out_dir: str | Path,
    *,
    n_codebooks: list[int] | None = None,
    baselines: Sequence[str] = (),
    seconds: float = 10.0,
    workers: int = 2,
    with_visqol: bool = True,
    with_pitch: bool = True,
    listen_items: int = 1,
    progress: bool = True,
) -> dict:
    """Evaluate a model (and baselines) on every file under `data`; write CSV, JSON and report.html to `out_dir`.

    `listen_items` items of each group get players and spectrograms of every system in the report.
    Returns the summary (also written as summary.json).
    """
    t0 = time.time()
    model = load_model(model_source)
    n_list = _codebook_counts(n_codebooks, model.n_codebooks)
    systems = parse_baselines(list(baselines))
    items = load_items(data, seconds)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    listen = _listened(items, listen_items)
    jobs = [(item, n_list, systems, with_visqol, with_pitch, item.name in listen) for item in items]
    rows, codes_all, recons, pairs = _gather(items, _run_jobs(str(model_source), jobs, workers, progress), n_list)
    label = _model_label(str(model_source))
    summary = summarize(rows)
    groups = sorted({r["group"] for r in rows})
    result = {
        "model": str(model_source),
        "data": str(data),
        "seconds": seconds,
        "n_items": len(items),
        "groups": {g: sum(1 for i in items if i.group == g) for g in groups},
        "summary": summary,
        "codebook_usage": {f"{label} {n}q": _usage(codes, model.codebook_size) for n, codes in codes_all.items()},
        "comparisons": _comparisons(rows, summary, label, groups),
        "elapsed_s": round(time.time() - t0, 1),
    }
    _write_tables(out_dir, rows, result)
    write_report(out_dir / "report.html", result, rows, recons, pairs)
    result["elapsed_s"] = round(time.time() - t0, 1)
    (out_dir / "summary.json").write_text(json.dumps(result, indent=1))
    return result


def _codebook_counts(requested: list[int] | None, available: int) -> list[int]:
    """The codebook counts to evaluate: those requested, each checked against the model's, or all of them."""
    counts = requested or list(range(1, available + 1))
    for n in counts:
        if not 1 <= n <= available:
            raise ValueError(f"--n-codebooks {n} is outside 1..{available}")
    return counts


def _listened(items: list[Item], per_group: int) -> set[str]:
    """The first `per_group` items (by name) of each group: the ones the report lets a reader hear.

    Embedded audio makes the page large, so only a few items per group keep their reconstructions.
    """
    names: set[str] = set()
    for group in sorted({i.group for i in items}):
        names.update(sorted(i.name for i in items if i.group == group)[:per_group])
    return names


def _run_jobs(model_source: str, jobs: list[tuple], workers: int, progress: bool) -> list[tuple]:
    """`evaluate_item` on every job, in order: in `workers` forked processes (each loading the model once),
    or in this one for a single worker; the CPU threads are shared out between the workers."""
    threads = max(1, (os.cpu_count() or 2) // max(1, workers))
    bar = tqdm(total=len(jobs), desc="eval", unit="item") if progress else None
    results = []
    if workers > 1:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(model_source, threads)) as pool:
            for res in pool.imap(evaluate_item, jobs):
                results.append(res)
                if bar is not None:
                    bar.update(1)
    else:
        _init_worker(model_source, threads)
        for job in jobs:
            results.append(evaluate_item(job))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return results


def _gather(
    items: list[Item], results: list[tuple], n_codebooks: list[int]
) -> tuple[list[dict], dict[int, list[np.ndarray]], dict[str, tuple[Item, dict[str, np.ndarray]]], dict[str, tuple]]:
    """Per-item results (`evaluate_item`) → (all rows, codes `[n_q, F]` per item for each codebook count,
    item → (item, reconstructions) of the listened items, item → (item, system, audio) spectrogram pairs)."""
    rows: list[dict] = []
    codes_all: dict[int, list[np.ndarray]] = {n: [] for n in n_codebooks}
    recons: dict[str, tuple[Item, dict[str, np.ndarray]]] = {}
    pairs = {}
    for item, (item_rows, item_codes, audio, pair) in zip(items, results):
        rows += item_rows
        pairs[item.name] = (item, *pair)
        for n, codes in item_codes.items():
            codes_all[n].append(codes)
        if audio:
            recons[item.name] = (item, audio)
    return rows, codes_all, recons, pairs


def _usage(codes: list[np.ndarray], codebook_size: int) -> dict:
    """Codebook usage (`quantize.codebook_usage`) of the codes `[n_q, F]` of every item, taken as one sequence."""
    return codebook_usage(torch.from_numpy(np.concatenate(codes, -1))[None], codebook_size)


def _comparisons(rows: list[dict], summary: dict, label: str, groups: list[str]) -> list[dict]:
    """Paired differences (`paired`) of every model system against every baseline, on each metric the model
    was scored on, overall and per group."""
    model_systems = [s for s in summary if summary[s]["family"] == label]
    baseline_systems = [s for s in summary if s not in model_systems]
    comparisons = []
    for b in baseline_systems:
        for a in model_systems:
            for metric in ("visqol_audio", "visqol_speech", "mel", "si_sdr", "f0_rmse_cents", "voicing_error"):
                for scope in ["overall", *groups]:
                    if any(r.get(metric) is not None for r in rows if r["system"] == a):
                        comparisons.append(paired(rows, a, b, metric, scope))
    return comparisons


def _write_tables(out_dir: Path, rows: list[dict], result: dict) -> None:
    """items.csv and items.json (one row per item and system) and summary.json into `out_dir`.

    The CSV is for spreadsheets: a text cell (an item, group or system name, from file and folder
    names) that starts like a formula is written as text (`untrusted.for_spreadsheet`); numbers
    are written as they are. The JSON keeps every name as it is.
    """
    with open(out_dir / "items.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["item", "group", "system", "family", "n_codebooks", *METRICS])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: for_spreadsheet(row.get(k)) for k in writer.fieldnames})
    (out_dir / "items.json").write_text(json.dumps(rows, indent=1))
    (out_dir / "summary.json").write_text(json.dumps(result, indent=1))


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What `rvqgan eval` prints of a `run_evaluation` result: one line per system with its means."""
    lines = []
    for system, entry in result["summary"].items():
        o = entry["overall"]
        fields = [f"{o['kbps_codes'][0]:.2f} kbps"] if "kbps_codes" in o else []
        fields += [
            f"{name} {o[key][0]:.3f}"
            for key, name in (("visqol_audio", "ViSQOL"), ("mel", "mel"), ("si_sdr", "SI-SDR"))
            if key in o
        ]
        lines.append(f"  {for_terminal(system):<24} " + ", ".join(fields))
    return lines
