"""Tokenize a corpus: audio files → Parquet shards of codes; batched, sharded by rank, resumable.

Every item's codes are those `Codec.encode` gives for that item alone (its audio read and
resampled by `audio.resampled_blocks`, channels coded as a batch), however items are batched.
Zero padding is never added inside an item: an item longer than one window is cut into
windows of one length (`window_plan`): the first starts at the item's start, the last ends at
its end, and the others carry `encoder_context_frames` of real audio on both sides; the
windows of many items are stacked into one batch, and only the frames each window computes
exactly are kept. Items of at most one window are coded whole, batched with items of the
same length. Items longer than `max_seconds` go through the `StreamingEncoder` alone, in
bounded memory.

Output (`OUT_DIR`): `shard-r{rank}-{k}.parquet` files (written whole under a temporary name,
then renamed, so a shard on disk is complete), `failures-r{rank}.jsonl`, `run.json` (the
settings, checked on a re-run) and, at the end, `manifest.json`. A re-run of the same command
codes only the items that are in no shard yet; an item is in exactly one shard. Under
`torchrun` each rank takes every `world_size`-th pending item and writes its own shards; rank
0 writes the manifest after all ranks are done.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import AudioError, find_audio_files, open_audio, read_blocks, resampled_blocks
from .fileio import atomic_write
from .model import Codec
from .streaming import StreamingEncoder, encoder_context_frames

MANIFEST_FORMAT = "rvqgan-tokens"
MANIFEST_VERSION = 1


class TokenizeError(ValueError):
    """A run that cannot start (bad inputs, an output folder of another run); one line."""


@dataclass(frozen=True)
class Source:
    """One input file: `index` is its place in the sorted list of all inputs, `rel` the path stored in the dataset."""

    index: int
    path: str
    rel: str


def list_sources(inputs: list[str]) -> list[Source]:
    """Input files from folders (recursive), globs, files, and manifests (`.txt`: a path per line; `.csv`/`.jsonl`: a
    `path` column/key; relative paths are relative to the manifest). Sorted by stored path, duplicates removed."""
    found: dict[str, str] = {}  # resolved path → stored relative path
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = find_audio_files(path)
            if not files:
                raise TokenizeError(f"{item}: no audio files in folder")
            for f in files:
                found.setdefault(str(f.resolve()), str(f.relative_to(path)))
        elif path.suffix.lower() in (".txt", ".csv", ".jsonl") and path.is_file():
            for entry in _manifest_paths(path):
                full = entry if Path(entry).is_absolute() else str(path.parent / entry)
                found.setdefault(str(Path(full).resolve()), entry)
        elif path.is_file():
            found.setdefault(str(path.resolve()), item)
        elif any(ch in item for ch in "*?["):
            matches = sorted(m for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise TokenizeError(f"{item}: no files match")
            for m in matches:
                found.setdefault(str(Path(m).resolve()), m)
        else:
            raise TokenizeError(f"{item}: no such file or folder")
    ordered = sorted(found.items(), key=lambda kv: (kv[1], kv[0]))
    for (path_a, rel_a), (path_b, rel_b) in zip(ordered, ordered[1:]):
        if rel_a == rel_b:
            raise TokenizeError(
                f"{path_a} and {path_b} would both be stored as {rel_a!r}; give their common parent folder instead"
            )
    return [Source(i, path, rel) for i, (path, rel) in enumerate(ordered)]


def _manifest_paths(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizeError(f"{path}: cannot read the manifest ({type(exc).__name__})") from None
    if path.suffix.lower() == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "path" not in rows[0]:
            raise TokenizeError(f"{path}: a CSV manifest needs a 'path' column")
        return [r["path"] for r in rows if r["path"]]
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise TokenizeError(f"{path}:{number}: not JSON") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise TokenizeError(f"{path}:{number}: each line needs a string 'path'")
        out.append(entry["path"])
    return out


def load_resampled(path: str, sample_rate: int) -> tuple[np.ndarray, int, int]:
    """A file's audio at `sample_rate`, `[C, T]` float32, read as the file pipelines read it → (audio, source rate, source length)."""
    f, name = open_audio(path)
    with f:
        blocks = list(resampled_blocks(read_blocks(f, name, max(4096, f.samplerate)), f.samplerate, sample_rate, f.channels))
        return np.concatenate(blocks, -1), f.samplerate, f.frames


def window_plan(frames: int, window: int, context: int) -> list[tuple[int, int, int, int]]:
    """Windows `(start, end, keep_start, keep_end)` in frames that cover `frames` frames exactly once in their kept parts.

    Every window is `window` frames long (or the whole item, if it is not longer), and every kept
    frame has `context` frames of the item on each side inside its window, or the item's true
    start or end, where the convolutions' zero padding is the same as in a whole-item pass.
    """
    if frames <= window:
        return [(0, frames, 0, frames)]
    step = window - 2 * context
    if step < 1:
        raise ValueError(f"a window of {window} frames leaves nothing between two contexts of {context}")
    plan = [(0, window, 0, window - context)]
    a = window - context
    while a < frames - (window - context):
        plan.append((a - context, a - context + window, a, a + step))
        a += step
    plan.append((frames - window, frames, a, frames))  # a ≥ frames − window + context: its context is inside
    return plan


@dataclass
class Settings:
    """What makes two runs the same run (checked when an output folder is reused)."""

    model: str
    weights: str
    n_codebooks: int
    precision: str
    window_frames: int
    sources: str  # SHA-256 of the list of input paths

    @classmethod
    def load(cls, path: Path) -> Settings | None:
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            raise TokenizeError(f"{path}: unreadable run settings; use a new output folder") from None


class _Encoder:
    """Codes items by stacking equal-length windows into batches of at most `batch_frames` frames."""

    def __init__(self, model: Codec, n_codebooks: int, window: int, batch_frames: int, device: torch.device):
        self.model, self.n_codebooks, self.window, self.device = model, n_codebooks, window, device
        self.context = encoder_context_frames(model)
        self.batch_frames = max(window, batch_frames)

    @torch.no_grad()
    def run(self, audio: torch.Tensor) -> torch.Tensor:
        """Windows `[W, 1, t]` (all the same length) → their codes `[W, N, t / hop]`, in batches."""
        per_batch = max(1, self.batch_frames * self.model.hop_length // audio.shape[-1])
        out = []
        for part in audio.split(per_batch):
            features = self.model.encode_features(part.to(self.device))
            out.append(self.model.quantize(features, self.n_codebooks).codes.cpu())
        return torch.cat(out)

    def encode_items(self, items: list[np.ndarray]) -> list[np.ndarray]:
        """Items `[C, T]` at the model's rate → codes `[C, N, ceil(T / hop)]` (uint16), each as `Codec.encode` gives it."""
        hop = self.model.hop_length
        codes: list[np.ndarray | None] = [None] * len(items)
        windows: list[tuple[int, int, int, int, int]] = []  # (item, start, end, keep_start, keep_end)
        whole: dict[int, list[int]] = {}  # length in frames → items coded whole
        padded = []
        for i, x in enumerate(items):
            frames = -(-x.shape[-1] // hop)
            padded.append(np.pad(x, ((0, 0), (0, frames * hop - x.shape[-1]))))
            plan = window_plan(frames, self.window, self.context)
            if len(plan) == 1:
                whole.setdefault(frames, []).append(i)
            else:
                windows += [(i, *w) for w in plan]
                codes[i] = np.zeros((x.shape[0], self.n_codebooks, frames), dtype=np.uint16)
        for frames, members in whole.items():
            stacked = torch.from_numpy(np.concatenate([padded[i] for i in members]))[:, None]
            result = self.run(stacked).numpy().astype(np.uint16)
            offset = 0
            for i in members:
                c = items[i].shape[0]
                codes[i] = result[offset : offset + c]
                offset += c
        if windows:
            stacked = torch.from_numpy(np.concatenate([padded[i][:, s * hop : e * hop] for i, s, e, _, _ in windows]))[:, None]
            result = self.run(stacked).numpy().astype(np.uint16)
            offset = 0
            for i, s, _, ks, ke in windows:
                c = items[i].shape[0]
                target = codes[i]
                assert target is not None
                target[..., ks:ke] = result[offset : offset + c, :, ks - s : ke - s]
                offset += c
        return [c for c in codes if c is not None]

    def encode_long(self, path: str, chunk_frames: int) -> np.ndarray:
        """A long file through the `StreamingEncoder`, in bounded memory → codes `[C, N, F]` (uint16)."""
        f, name = open_audio(path)
        with f:
            encoder = StreamingEncoder(self.model, self.n_codebooks, chunk_frames)
            parts = []
            for block in resampled_blocks(
                read_blocks(f, name, max(4096, f.samplerate)), f.samplerate, self.model.sample_rate, f.channels
            ):
                parts.append(encoder.push(torch.from_numpy(block)[:, None].to(self.device)).cpu().numpy().astype(np.uint16))
            parts.append(encoder.flush().cpu().numpy().astype(np.uint16))
        return np.concatenate(parts, -1)


class _Loader(torch.utils.data.IterableDataset):
    """Reads and resamples this rank's sources in worker processes: yields (source, audio `[C, T]` | None, info | error)."""

    def __init__(self, sources: list[Source], sample_rate: int, max_seconds: float):
        self.sources, self.sample_rate, self.max_seconds = sources, sample_rate, max_seconds

    def __iter__(self) -> Iterator[tuple[Source, np.ndarray | None, dict[str, Any] | str]]:
        info = torch.utils.data.get_worker_info()
        mine = self.sources if info is None else self.sources[info.id :: info.num_workers]
        for source in mine:
            try:
                f, _ = open_audio(source.path)
                with f:
                    meta = {"sample_rate": f.samplerate, "channels": f.channels, "num_samples": f.frames}
                if f.frames / f.samplerate > self.max_seconds:
                    yield source, None, meta  # coded by the main process, streamed
                    continue
                audio, _, _ = load_resampled(source.path, self.sample_rate)
                yield source, audio, meta
            except (AudioError, OSError, ValueError, RuntimeError) as exc:
                yield source, None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _as_is(item: Any) -> Any:
    """The loader's items as they are (no conversion of numpy arrays to tensors)."""
    return item


def _done_items(out_dir: Path, warn: Any) -> set[int]:
    """Indices of the items in the shards already on disk; an unreadable shard is moved aside (its items are redone)."""
    import pyarrow.parquet as pq

    done: set[int] = set()
    for shard in sorted(out_dir.glob("shard-*.parquet")):
        try:
            done.update(pq.read_table(shard, columns=["index"]).column("index").to_pylist())
        except Exception as exc:  # pyarrow.ArrowInvalid, OSError: a shard damaged outside this program
            os.replace(shard, shard.with_suffix(".damaged"))
            warn(f"{shard.name} is unreadable ({type(exc).__name__}); moved aside, its items will be coded again")
    return done


SCHEMA_FIELDS = (
    ("index", "int64"),
    ("path", "string"),
    ("n_frames", "int64"),
    ("frame_rate", "float64"),
    ("sample_rate", "int64"),
    ("channels", "int64"),
    ("num_samples", "int64"),
    ("duration", "float64"),
    ("model", "string"),
    ("weights", "string"),
    ("precision", "string"),
)


def _codes_array(codes: list[np.ndarray]) -> Any:
    """Codes `[C, N, F]` per row as one Arrow list<list<list<uint16>>> array, built from flat buffers (no Python lists)."""
    import pyarrow as pa

    values = pa.array(np.concatenate([c.reshape(-1) for c in codes]).astype(np.uint16), type=pa.uint16())
    frames = np.concatenate([np.full(c.shape[0] * c.shape[1], c.shape[2]) for c in codes])
    per_channel = np.concatenate([np.full(c.shape[0], c.shape[1]) for c in codes])
    per_row = np.array([c.shape[0] for c in codes])

    def offsets(lengths: np.ndarray) -> Any:
        return pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32), type=pa.int32())

    inner = pa.ListArray.from_arrays(offsets(frames), values)
    middle = pa.ListArray.from_arrays(offsets(per_channel), inner)
    return pa.ListArray.from_arrays(offsets(per_row), middle)


def _write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: pa.array([r[name] for r in rows], type=getattr(pa, kind)()) for name, kind in SCHEMA_FIELDS}
    table = pa.table({**{k: columns[k] for k in ("index", "path")}, "codes": _codes_array([r["codes"] for r in rows]), **columns})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp), durable=True)


class _RankLock:
    """An exclusive lock on `OUT_DIR/.lock-rNNN`, so two runs never write one rank's shards at once."""

    def __init__(self, out_dir: Path, rank: int):
        import fcntl

        self.file = open(out_dir / f".lock-r{rank:03d}", "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.close()
            raise TokenizeError(
                f"{out_dir}: another run is writing there (rank {rank}); wait for it or use another folder"
            ) from None

    def close(self) -> None:
        self.file.close()


def tokenize(
    model: Codec,
    model_name: str,
    inputs: list[str],
    out_dir: str | Path,
    *,
    n_codebooks: int | None = None,
    batch_seconds: float = 60.0,
    window_seconds: float | None = None,
    max_seconds: float = 600.0,
    shard_items: int = 1000,
    shard_bytes: int = 128 * 2**20,
    workers: int = 2,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
    barrier: Any = None,
    progress: bool = False,
    warn: Any = None,
) -> dict[str, Any]:
    """Code every input file into Parquet shards under `out_dir` (see the module docstring) → the run's summary.

    `batch_seconds` of audio are coded per forward pass. `window_seconds` is the window length
    for items longer than one window; by default 5 s on a GPU, where stacking windows fills the
    device, and `max_seconds` on a CPU, where a batch is no faster than its items one by one and
    windows would only add their overlap (items are then coded whole, batched with items of the
    same length). A shard holds at most `shard_items` rows and about `shard_bytes` of codes;
    rows already coded are written out on Ctrl-C or SIGTERM. `barrier` (e.g.
    `torch.distributed.barrier`) syncs ranks; `warn` receives one-line notes.
    """
    out_dir = Path(out_dir)
    note = warn or (lambda message: None)
    n_codebooks = model.check_n_codebooks(n_codebooks) or model.n_codebooks
    if window_seconds is None:
        window_seconds = 5.0 if torch.device(device).type != "cpu" else max_seconds
    for name, value in (("batch_seconds", batch_seconds), ("window_seconds", window_seconds), ("max_seconds", max_seconds)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise TokenizeError(f"--{name.replace('_', '-')} must be a finite number of seconds > 0, got {value}")
    if not isinstance(shard_items, int) or shard_items < 1:
        raise TokenizeError(f"--shard-items must be a positive integer, got {shard_items}")
    sources = list_sources(inputs)
    context = encoder_context_frames(model)
    window = max(int(round(window_seconds * model.frame_rate)), 2 * context + 1)
    precision = "bf16" if next(model.encoder.parameters()).dtype == torch.bfloat16 else "fp32"
    settings = Settings(
        model=model_name,
        weights=model.weights_id(),
        n_codebooks=n_codebooks,
        precision=precision,
        window_frames=window,
        sources=hashlib.sha256("\n".join(s.path for s in sources).encode()).hexdigest()[:16],
    )
    sync = barrier or (lambda: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = _RankLock(out_dir, rank)
    try:
        previous = Settings.load(out_dir / "run.json")
        if previous is not None and previous != settings:
            raise TokenizeError(f"{out_dir} holds a run with other settings or inputs ({previous}); use a new output folder")
        sync()
        if rank == 0:
            if previous is None:
                atomic_write(out_dir / "run.json", lambda tmp: tmp.write_text(json.dumps(asdict(settings), indent=1)))
            for path in out_dir.glob("failures-r*.jsonl"):  # every failure is tried again; a rank of an earlier,
                path.unlink()  # larger run leaves no stale list behind
        done = _done_items(out_dir, note) if rank == 0 else set()
        sync()
        if rank != 0:
            done = _done_items(out_dir, note)
        sync()  # every rank has listed the finished items before any rank writes a shard
        summary = _run(
            model,
            model_name,
            settings,
            sources,
            done,
            out_dir,
            rank,
            world_size,
            progress,
            batch_seconds=batch_seconds,
            window=window,
            max_seconds=max_seconds,
            shard_items=shard_items,
            shard_bytes=shard_bytes,
            workers=workers,
            device=device,
        )
        sync()
    finally:
        lock.close()
    if rank == 0:
        summary["manifest"] = write_manifest(out_dir, settings, sources)
    return summary


def _run(
    model: Codec,
    model_name: str,
    settings: Settings,
    sources: list[Source],
    done: set[int],
    out_dir: Path,
    rank: int,
    world_size: int,
    progress: bool,
    *,
    batch_seconds: float,
    window: int,
    max_seconds: float,
    shard_items: int,
    shard_bytes: int,
    workers: int,
    device: str | torch.device,
) -> dict[str, Any]:
    """This rank's share of the pending items: load, code, write shards and failures."""
    pending = [s for s in sources if s.index not in done]
    mine = pending[rank::world_size]
    failures_path = out_dir / f"failures-r{rank:03d}.jsonl"
    failures_path.write_text("")
    for stale in out_dir.glob(f".shard-r{rank:03d}-*.tmp*"):  # a shard being written when a run was killed
        stale.unlink()
    existing = sorted(out_dir.glob(f"shard-r{rank:03d}-*.*"))
    shard_number = 1 + max((int(p.stem.rsplit("-", 1)[1]) for p in existing), default=-1)
    encoder = _Encoder(model, settings.n_codebooks, window, int(batch_seconds * model.frame_rate), torch.device(device))
    loader = torch.utils.data.DataLoader(
        _Loader(mine, model.sample_rate, max_seconds),
        batch_size=None,
        collate_fn=_as_is,
        num_workers=min(workers, len(mine)),
        prefetch_factor=2 if workers and mine else None,
    )
    from tqdm import tqdm

    bar = tqdm(
        total=len(mine),
        desc=f"tokenize (rank {rank} of {world_size})" if world_size > 1 else "tokenize",
        unit="item",
        disable=not progress or rank != 0,
        leave=False,
    )
    rows: list[dict[str, Any]] = []
    waiting: list[tuple[Source, np.ndarray, dict[str, Any]]] = []
    stats = {"items": 0, "failed": 0, "audio_seconds": 0.0}
    started = time.perf_counter()

    def add_row(source: Source, codes: np.ndarray, meta: dict[str, Any]) -> None:
        rows.append(
            {
                "index": source.index,
                "path": source.rel,
                "codes": codes,
                "n_frames": int(codes.shape[-1]),
                "frame_rate": model.frame_rate,
                "duration": meta["num_samples"] / meta["sample_rate"],
                "model": model_name,
                "weights": settings.weights,
                "precision": settings.precision,
                **meta,
            }
        )
        stats["items"] += 1
        stats["audio_seconds"] += meta["num_samples"] / meta["sample_rate"]

    def fail(source: Source, error: str) -> None:
        with open(failures_path, "a") as f:
            f.write(json.dumps({"index": source.index, "path": source.rel, "error": error}) + "\n")
        stats["failed"] += 1

    def code_waiting() -> None:
        if waiting:
            for (source, _, meta), codes in zip(waiting, encoder.encode_items([a for _, a, _ in waiting])):
                add_row(source, codes, meta)
            waiting.clear()

    def write_shards(force: bool = False) -> None:
        nonlocal shard_number
        while rows:
            size, count = 0, 0
            while count < len(rows) and count < shard_items and size < shard_bytes:
                size += rows[count]["codes"].nbytes
                count += 1
            if count == len(rows) and size < shard_bytes and count < shard_items and not force:
                return
            _write_shard(out_dir / f"shard-r{rank:03d}-{shard_number:05d}.parquet", rows[:count])
            del rows[:count]
            shard_number += 1

    batch_samples = int(batch_seconds * model.sample_rate)
    buffered = 0
    try:
        for source, audio, meta in loader:
            if isinstance(meta, str):
                fail(source, meta)
            elif audio is None:
                try:
                    add_row(source, encoder.encode_long(source.path, max(1, window)), meta)
                except (AudioError, OSError, ValueError, RuntimeError) as exc:
                    fail(source, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            else:
                waiting.append((source, audio, meta))
                buffered += audio.size
                if buffered >= batch_samples:
                    code_waiting()
                    buffered = 0
            bar.update(1)
            elapsed = max(time.perf_counter() - started, 1e-9)
            hours = stats["audio_seconds"] / 3600
            bar.set_postfix_str(
                f"{stats['items'] / elapsed:.2f} items/s, {hours / elapsed:.5f} audio-h/s ({hours / elapsed * 3600:.1f} audio-h/h)"
            )
            write_shards()
        code_waiting()
        write_shards(force=True)
    except BaseException:  # Ctrl-C, SIGTERM, a crash: keep what is coded (the rest is coded on a re-run)
        write_shards(force=True)
        raise
    finally:
        bar.close()
    return {**stats, "elapsed_s": time.perf_counter() - started, "rank": rank}


def write_manifest(out_dir: Path, settings: Settings, sources: list[Source]) -> dict[str, Any]:
    """Describe the finished run from what is on disk (shards and failure lists) in `manifest.json`."""
    import pyarrow.parquet as pq

    shards, done, seconds = [], set(), 0.0
    for shard in sorted(out_dir.glob("shard-*.parquet")):
        table = pq.read_table(shard, columns=["index", "duration"])
        shards.append({"file": shard.name, "rows": table.num_rows})
        done.update(table.column("index").to_pylist())
        seconds += sum(table.column("duration").to_pylist())
    failures: dict[int, dict[str, Any]] = {}
    for path in sorted(out_dir.glob("failures-r*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["index"] not in done:
                failures[entry["index"]] = entry
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "settings": asdict(settings),
        "items": len(sources),
        "coded": len(done),
        "failed": len(failures),
        "missing": len(sources) - len(done) - len(failures),
        "audio_hours": seconds / 3600,
        "shards": shards,
        "failures": [failures[i] for i in sorted(failures)],
        "columns": {
            "index": "place of the file in the sorted input list",
            "path": "the file, relative to its input folder (or as given)",
            "codes": "uint16 [channels, n_codebooks, n_frames]: each channel coded on its own, as `rvqgan encode` does",
            "frame_rate": "code frames per second",
            "sample_rate, channels, num_samples, duration": "of the source file",
            "model, weights, precision": "the model's name, its weights digest (Codec.weights_id) and the precision it ran in",
        },
    }
    atomic_write(out_dir / "manifest.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)), durable=True)
    return manifest


@torch.no_grad()
def decode_row(model: Codec, row: dict[str, Any]) -> np.ndarray:
    """A dataset row back to audio `[channels, num_samples]` at the source's sample rate."""
    from .audio import resample

    codes = torch.tensor(np.asarray(row["codes"], dtype=np.int64))
    audio = model.decode(codes.to(next(model.parameters()).device))[:, 0].float().cpu().numpy()
    return resample(audio, model.sample_rate, int(row["sample_rate"]))[:, : int(row["num_samples"])]


def distributed_context() -> tuple[int, int, int, Any]:
    """(rank, world size, local rank, barrier) from torchrun's environment; (0, 1, 0, None) outside it.

    The process group is gloo (only barriers pass through it) with a long timeout: ranks can
    finish their shares hours apart. `close_distributed` ends it.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, None
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dist.barrier


def close_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
