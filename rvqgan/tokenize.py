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
then renamed, so a shard on disk is complete), each with its SHA-256 in `shard-r{rank}-{k}.sha256`
(`sha256sum -c` reads it) and the run's settings in its Parquet metadata, `failures-r{rank}.jsonl`,
`run.json` (the settings, checked on a re-run) and, at the end, `manifest.json`. A re-run of the
same command codes only the items that are in no shard yet; an item is in exactly one shard.
Under `torchrun` each rank takes every `world_size`-th pending item and writes its own shards;
rank 0 writes the manifest after all ranks are done.

A re-run trusts nothing it finds (`_prepare_output`, `check_shard`). A folder of another run (other
weights, inputs or options in `run.json`), or with shards but no `run.json`, is refused: its rows
cannot be told to be this run's. One other model may continue a run: a fine-tune that kept the
run's model's encoder and quantizer (`Codec.makes_codes_of`) makes the same codes, so it continues
under the run's settings and its rows name the run's model and weights (`_continued`). A shard in a folder of this run that is damaged or foreign (its
checksum file missing or not matching, other settings in its metadata, rows whose paths are not
this run's inputs at their indices or of other weights, an index twice, or rows another shard
already holds) is set aside (renamed `*.damaged`, never deleted) and its items coded again, with a
warning naming it: its items' sources are at hand, so redoing them yields the complete dataset
this run would have written, where refusing would leave the user to sort shards by hand.

Only regular files are inputs (`fileio.expand_inputs`, and `fileio.open_regular` where a file is
opened): a FIFO, device, broken link or link loop is a failed item, never a wait or a traceback.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from .audio import AUDIO_SUFFIXES, AudioError, open_audio, read_blocks, resample, resampled_blocks
from .data import quiet_worker
from .distributed import barrier, init_distributed
from .distributed import close_distributed as close_distributed  # the CLI ends the group `distributed_context` starts
from .fileio import InputError, atomic_write, expand_inputs, open_regular, shorten
from .model import Codec
from .streaming import StreamingEncoder, encoder_context_frames

MANIFEST_FORMAT = "rvqgan-tokens"
MANIFEST_VERSION = 1
# How long a rank waits at a barrier for the others: ranks can finish their shares hours apart.
BARRIER_TIMEOUT = datetime.timedelta(days=7)
RUN_METADATA_KEY = b"rvqgan.run"  # a shard's Parquet metadata: the settings of the run that wrote it
SET_ASIDE = ".damaged"  # suffix of a shard (and its checksum file) that a re-run set aside


class TokenizeError(ValueError):
    """A run that cannot start (bad inputs, an output folder of another run); one line."""


@dataclass(frozen=True)
class Source:
    """One input file: `index` is its place in the sorted list of all inputs, `rel` the path stored in the dataset,
    `error` why it cannot be read, known from the listing (not a regular file: `fileio.expand_inputs`)."""

    index: int
    path: str
    rel: str
    error: str | None = None


def list_sources(inputs: list[str]) -> list[Source]:
    """The input files (`fileio.expand_inputs`: folders, globs, files and manifests), sorted by stored
    path, duplicates removed. A file is stored under its path below the folder given, as its manifest
    writes it, or as given. An entry that is not a regular file keeps the listing's reason in `error`."""
    found: dict[str, tuple[str, str | None]] = {}  # resolved path → (stored path, error)
    try:
        for item in expand_inputs(inputs, AUDIO_SUFFIXES, manifests=True):
            found.setdefault(_resolved(item.path), (item.path if item.rel is None else item.rel, item.error))
    except InputError as exc:
        raise TokenizeError(str(exc)) from None
    ordered = sorted(found.items(), key=lambda kv: (kv[1][0], kv[0]))
    for (path_a, (rel_a, _)), (path_b, (rel_b, _)) in zip(ordered, ordered[1:]):
        if rel_a == rel_b:
            raise TokenizeError(
                f"{shorten(path_a)} and {shorten(path_b)} would both be stored as {shorten(rel_a)!r}; "
                "give their common parent folder instead"
            )
    return [Source(i, path, rel, error) for i, (path, (rel, error)) in enumerate(ordered)]


def _resolved(path: str) -> str:
    """`path` with its links resolved, as far as they resolve (a link loop or a NUL character stays as written)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


@contextlib.contextmanager
def open_source(path: str) -> Iterator[tuple[sf.SoundFile, str]]:
    """A source opened as audio (`audio.open_audio`) → (open `SoundFile`, name for messages).

    Opened through `fileio.open_regular`, so a path that is no regular file by the time it is
    read (a FIFO put in its place) fails at once rather than waiting for a writer forever.
    """
    try:
        raw = open_regular(path)
    except OSError as exc:
        raise AudioError(f"{shorten(path)}: cannot open ({exc.strerror or type(exc).__name__})") from None
    with raw:
        f, name = open_audio(raw)
        with f:
            yield f, name


def _resampled(f: sf.SoundFile, name: str, sample_rate: int) -> np.ndarray:
    """An open file's audio at `sample_rate`, `[C, T]` float32, read as the file pipelines read it."""
    blocks = resampled_blocks(read_blocks(f, name, max(4096, f.samplerate)), f.samplerate, sample_rate, f.channels)
    return np.concatenate(list(blocks), -1)


def _reason(exc: BaseException) -> str:
    """An exception as a failure record's one short line."""
    return shorten(str(exc).splitlines()[0]) if str(exc).strip() else type(exc).__name__


def load_resampled(path: str, sample_rate: int) -> tuple[np.ndarray, int, int]:
    """A file's audio at `sample_rate`, `[C, T]` float32, read as the file pipelines read it → (audio, source rate, source length)."""
    with open_source(path) as (f, name):
        return _resampled(f, name, sample_rate), f.samplerate, f.frames


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
    sources: str  # SHA-256 of the input list: each file's path and the path stored for it, in index order

    @classmethod
    def load(cls, path: Path) -> Settings | None:
        """The settings `path` records; None if there is no such file."""
        if not os.path.lexists(path):
            return None
        try:
            with open_regular(path) as f:
                return cls(**json.loads(f.read(2**20)))
        except (OSError, ValueError, TypeError, RecursionError):
            raise TokenizeError(f"{shorten(str(path))}: unreadable run settings; use a new output folder") from None

    def metadata(self) -> bytes:
        """The settings as a shard's Parquet metadata stores them (`RUN_METADATA_KEY`)."""
        return json.dumps(asdict(self), sort_keys=True).encode()


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
        with open_source(path) as (f, name):
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
            yield (source, *self.read(source))

    def read(self, source: Source) -> tuple[np.ndarray | None, dict[str, Any] | str]:
        """(audio `[C, T]` at the model's rate, the file's rate, channels and length), (None, the same)
        for a file over `max_seconds` (coded by the main process, streamed), or (None, why it failed)."""
        if source.error:
            return None, source.error
        try:
            with open_source(source.path) as (f, name):
                meta = {"sample_rate": f.samplerate, "channels": f.channels, "num_samples": f.frames}
                if f.frames / f.samplerate > self.max_seconds:
                    return None, meta
                return _resampled(f, name, self.sample_rate), meta
        except (AudioError, OSError, ValueError, RuntimeError) as exc:
            return None, _reason(exc)


def _as_is(item: Any) -> Any:
    """The loader's items as they are (no conversion of numpy arrays to tensors)."""
    return item


def _done_items(out_dir: Path) -> set[int]:
    """Indices of the items in the shards on disk (once rank 0 has checked them: `_checked_items`)."""
    import pyarrow.parquet as pq  # optional: tokenize extra

    done: set[int] = set()
    for shard in sorted(out_dir.glob("shard-*.parquet")):
        done.update(pq.read_table(shard, columns=["index"]).column("index").to_pylist())
    return done


def _checked_items(out_dir: Path, settings: Settings, sources: list[Source], warn: Any) -> set[int]:
    """Indices of the items in the shards on disk, each shard checked (`check_shard`); a shard that
    fails, or that holds an item an earlier shard (by name) holds, is set aside with a warning, and
    its items are coded again. Checksum files without their shard (a write killed before its
    rename) are removed."""
    done: set[int] = set()
    for shard in sorted(out_dir.glob("shard-*.parquet")):
        problem, indices = check_shard(shard, settings, sources)
        if not problem and indices & done:
            problem = f"holds {len(indices & done)} items that another shard holds"
        if problem:
            aside = _set_aside(shard)
            warn(f"{shorten(shard.name)} {problem}; set aside as {shorten(aside.name)}, its items will be coded again")
        else:
            done |= indices
    for checksum in out_dir.glob("shard-*.sha256"):
        if not checksum.with_suffix(".parquet").exists():
            checksum.unlink()
    return done


def check_shard(shard: Path, settings: Settings, sources: list[Source]) -> tuple[str, set[int]]:
    """("" or what is wrong with `shard` for the run of `settings` over `sources`, the indices of its rows).

    A shard passes if its SHA-256 is the one its checksum file records (so every page is as
    written), its metadata holds `settings`, and each row's path is that of the input at its
    index, under this run's weights, no index twice. The checksum costs one read of the file.
    """
    import pyarrow.parquet as pq  # optional: tokenize extra

    try:
        recorded = _checksum_file(shard)
        if recorded is None:
            return "has no checksum file (it was not written by this run)", set()
        if recorded != (_sha256(shard), shard.name):
            return "does not match its checksum file (damaged, or renamed)", set()
        parquet = pq.ParquetFile(shard)
        written_by = (parquet.schema_arrow.metadata or {}).get(RUN_METADATA_KEY)
        if written_by != settings.metadata():
            return "was written by another run (other settings in its metadata)", set()
        table = parquet.read(columns=["index", "path", "weights"])
    except Exception as exc:  # OSError, pyarrow.ArrowInvalid: a file damaged outside this program
        return f"is unreadable ({type(exc).__name__})", set()
    indices = table.column("index").to_pylist()
    for index, path in zip(indices, table.column("path").to_pylist()):
        if not (isinstance(index, int) and 0 <= index < len(sources) and sources[index].rel == path):
            return f"holds {shorten(str(path))!r} at index {index}, which is not this run's input there", set()
    if len(set(indices)) != len(indices):
        return "holds an item twice", set()
    if set(table.column("weights").to_pylist()) - {settings.weights}:
        return "holds rows coded by other weights", set()
    return "", set(indices)


def _checksum_file(shard: Path) -> tuple[str, str] | None:
    """(SHA-256, file name) as `shard`'s checksum file records them (`sha256sum`'s line); None if it has none."""
    path = shard.with_suffix(".sha256")
    if not os.path.lexists(path):
        return None
    with open_regular(path) as f:
        digest, _, name = f.read(4096).decode().rstrip("\n").partition("  ")
    return digest, name


def _sha256(path: Path) -> str:
    """The SHA-256 of a regular file's bytes, in hex."""
    digest = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def _set_aside(shard: Path) -> Path:
    """Rename `shard` and its checksum file to `NAME.damaged` (`.damaged-2`, ... if taken: nothing is
    replaced) → the shard's new path. Set aside, not deleted: the user may want to look at it."""
    for n in range(1, 10**6):
        aside = shard.with_name(shard.name + SET_ASIDE + (f"-{n}" if n > 1 else ""))
        checksum = shard.with_suffix(".sha256")
        checksum_aside = checksum.with_name(checksum.name + aside.name[len(shard.name) :])
        if not os.path.lexists(aside) and not os.path.lexists(checksum_aside):
            break
    os.replace(shard, aside)
    if os.path.lexists(checksum):
        os.replace(checksum, checksum_aside)
    return aside


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
    import pyarrow as pa  # optional: tokenize extra

    values = pa.array(np.concatenate([c.reshape(-1) for c in codes]).astype(np.uint16), type=pa.uint16())
    frames = np.concatenate([np.full(c.shape[0] * c.shape[1], c.shape[2]) for c in codes])
    per_channel = np.concatenate([np.full(c.shape[0], c.shape[1]) for c in codes])
    per_row = np.array([c.shape[0] for c in codes])

    def offsets(lengths: np.ndarray) -> Any:
        return pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32), type=pa.int32())

    inner = pa.ListArray.from_arrays(offsets(frames), values)
    middle = pa.ListArray.from_arrays(offsets(per_channel), inner)
    return pa.ListArray.from_arrays(offsets(per_row), middle)


def _write_shard(path: Path, rows: list[dict[str, Any]], run: bytes) -> None:
    """Rows as one Parquet file at `path` with `run` (the settings) in its metadata, written whole under a
    temporary name and renamed (and synced to disk). Its checksum file is written before the rename:
    a shard on disk always has one (a checksum file without its shard is a write killed in between)."""
    import pyarrow as pa  # optional: tokenize extra
    import pyarrow.parquet as pq  # optional: tokenize extra

    columns = {name: pa.array([r[name] for r in rows], type=getattr(pa, kind)()) for name, kind in SCHEMA_FIELDS}
    table = pa.table({**{k: columns[k] for k in ("index", "path")}, "codes": _codes_array([r["codes"] for r in rows]), **columns})
    table = table.replace_schema_metadata({RUN_METADATA_KEY: run})

    def write(tmp: Path) -> None:
        pq.write_table(table, tmp)
        line = f"{_sha256(tmp)}  {path.name}\n"
        atomic_write(path.with_suffix(".sha256"), lambda checksum: checksum.write_text(line), durable=True)

    atomic_write(path, write, durable=True)


class _RankLock:
    """An exclusive lock on `OUT_DIR/.lock-rNNN`, so two runs never write one rank's shards at once."""

    def __init__(self, out_dir: Path, rank: int):
        self.file = open(out_dir / f".lock-r{rank:03d}", "w")
        try:
            import fcntl  # lazy: POSIX only; the rest of the module works without it

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
    n_codebooks = model.check_n_codebooks(n_codebooks) or model.n_codebooks
    if window_seconds is None:
        window_seconds = 5.0 if torch.device(device).type != "cpu" else max_seconds
    _check_options(batch_seconds, window_seconds, max_seconds, shard_items)
    sources = list_sources(inputs)
    window = max(int(round(window_seconds * model.frame_rate)), 2 * encoder_context_frames(model) + 1)
    settings = Settings(
        model=model_name,
        weights=model.weights_id(),
        n_codebooks=n_codebooks,
        precision=model.encode_precision,
        window_frames=window,
        sources=hashlib.sha256(json.dumps([(s.path, s.rel) for s in sources]).encode()).hexdigest()[:16],
    )
    sync = barrier or (lambda: None)
    note = warn or (lambda message: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = _RankLock(out_dir, rank)
    try:
        settings = _continued(out_dir, settings, model, note if rank == 0 else lambda message: None)
        done = _prepare_output(out_dir, settings, sources, rank, sync, note)
        mine = [s for s in sources if s.index not in done][rank::world_size]
        writer = _ShardWriter(out_dir, rank, (shard_items, shard_bytes), _shared_columns(model, settings), settings)
        encoder = _Encoder(model, n_codebooks, window, int(batch_seconds * model.frame_rate), torch.device(device))
        with _progress_bar(len(mine), rank, world_size, progress) as bar:
            summary = _run(
                model,
                mine,
                writer,
                encoder,
                bar,
                batch_samples=int(batch_seconds * model.sample_rate),
                max_seconds=max_seconds,
                workers=workers,
            )
        summary["rank"] = rank
        sync()
    finally:
        lock.close()
    if rank == 0:
        summary["manifest"] = write_manifest(out_dir, settings, sources)
    return summary


def _check_options(batch_seconds: float, window_seconds: float, max_seconds: float, shard_items: int) -> None:
    """TokenizeError naming the command-line option when a duration or the shard size is not usable."""
    for name, value in (("batch_seconds", batch_seconds), ("window_seconds", window_seconds), ("max_seconds", max_seconds)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise TokenizeError(f"--{name.replace('_', '-')} must be a finite number of seconds > 0, got {value}")
    if not isinstance(shard_items, int) or shard_items < 1:
        raise TokenizeError(f"--shard-items must be a positive integer, got {shard_items}")


def _continued(out_dir: Path, settings: Settings, model: Codec, note: Any) -> Settings:
    """The settings of the run in `out_dir` if `model` is another model that makes its codes (a fine-tune
    with the encoder and quantizer of the run's model) and every other setting is the same; else `settings`."""
    previous = Settings.load(out_dir / "run.json")
    if (
        previous is None
        or previous.weights == settings.weights
        or not isinstance(previous.weights, str)
        or not isinstance(previous.model, str)
    ):
        return settings
    if (
        not model.makes_codes_of(previous.weights)
        or replace(settings, model=previous.model, weights=previous.weights) != previous
    ):
        return settings
    note(f"continuing the run of {shorten(previous.model)} (weights {previous.weights}): this model makes its codes")
    return previous


def _prepare_output(out_dir: Path, settings: Settings, sources: list[Source], rank: int, sync: Any, note: Any) -> set[int]:
    """Check (or, on rank 0, record) the run's settings in `run.json` and list the items already in a shard.

    A folder whose `run.json` holds other settings, or that holds shards or a manifest but no
    `run.json`, is refused. Rank 0 alone clears the failure lists (every failure is tried again,
    and a rank of an earlier, larger run leaves no stale list behind) and checks the shards,
    setting aside those it cannot trust (`_checked_items`), before the other ranks list them;
    every rank has listed them before any rank writes one.
    """
    previous = Settings.load(out_dir / "run.json")
    if previous is not None and previous != settings:
        raise TokenizeError(f"{out_dir} holds a run with other settings or inputs ({previous}); use a new output folder")
    if previous is None and (any(out_dir.glob("shard-*")) or os.path.lexists(out_dir / "manifest.json")):
        raise TokenizeError(
            f"{shorten(str(out_dir))} holds shards but no run.json, so they cannot be checked against this run; "
            "use a new output folder"
        )
    sync()
    if rank == 0:
        if previous is None:
            atomic_write(out_dir / "run.json", lambda tmp: tmp.write_text(json.dumps(asdict(settings), indent=1)))
        for path in out_dir.glob("failures-r*.jsonl"):
            path.unlink()
    done = _checked_items(out_dir, settings, sources, note) if rank == 0 else set()
    sync()
    if rank != 0:
        done = _done_items(out_dir)
    sync()
    return done


def _shared_columns(model: Codec, settings: Settings) -> dict[str, Any]:
    """The columns every row of a run has in common: what coded it (model, weights, precision) and the frame rate."""
    return {"frame_rate": model.frame_rate, "model": settings.model, "weights": settings.weights, "precision": settings.precision}


def _progress_bar(total: int, rank: int, world_size: int, enabled: bool) -> tqdm:
    """A progress bar over this rank's `total` items, shown by rank 0 only (one bar on a terminal shared by the ranks)."""
    return tqdm(
        total=total,
        desc=f"tokenize (rank {rank} of {world_size})" if world_size > 1 else "tokenize",
        unit="item",
        disable=not enabled or rank != 0,
        leave=False,
    )


class _ShardWriter:
    """This rank's output: rows buffered into shards, each written whole, and the list of failed items.

    A shard is written once it would hold `shard_items` rows or about `shard_bytes` of codes
    (`flush`), under a temporary name then renamed, so a shard on disk is complete. A new run
    continues the numbering after this rank's shards on disk and deletes the temporary file of
    a shard whose writing was killed (its rows are in no shard, so they are coded again). Counts
    what it was given for the run's summary. `shared` holds the columns all rows have in common,
    `settings` what each shard's metadata records.
    """

    def __init__(self, out_dir: Path, rank: int, limits: tuple[int, int], shared: dict[str, Any], settings: Settings):
        self.out_dir, self.rank, (self.shard_items, self.shard_bytes) = out_dir, rank, limits
        self.shared, self.run = shared, settings.metadata()
        self.rows: list[dict[str, Any]] = []
        self.stats = {"items": 0, "failed": 0, "audio_seconds": 0.0}
        self.failures_path = out_dir / f"failures-r{rank:03d}.jsonl"
        self.failures_path.write_text("")
        for stale in out_dir.glob(f".shard-r{rank:03d}-*.tmp*"):
            stale.unlink()
        numbered = (re.match(rf"shard-r{rank:03d}-([0-9]+)\.", p.name) for p in out_dir.glob(f"shard-r{rank:03d}-*"))
        self.next_number = 1 + max((int(m[1]) for m in numbered if m), default=-1)  # after set-aside ones too

    def add(self, source: Source, codes: np.ndarray, meta: dict[str, Any]) -> None:
        """Buffer one coded item's row: its codes `[C, N, F]` (uint16) and `meta` (its file's rate, channels, length)."""
        duration = meta["num_samples"] / meta["sample_rate"]
        self.rows.append(
            {
                "index": source.index,
                "path": source.rel,
                "codes": codes,
                "n_frames": int(codes.shape[-1]),
                "duration": duration,
                **self.shared,
                **meta,
            }
        )
        self.stats["items"] += 1
        self.stats["audio_seconds"] += duration

    def fail(self, source: Source, error: str) -> None:
        """Record an item that could not be coded (appended at once: the list survives a crash)."""
        with open(self.failures_path, "a") as f:
            f.write(json.dumps({"index": source.index, "path": source.rel, "error": shorten(error)}) + "\n")
        self.stats["failed"] += 1

    def flush(self, force: bool = False) -> None:
        """Write every full shard the buffered rows make; with `force`, the last, partial one too."""
        while self.rows:
            size, count = 0, 0
            while count < len(self.rows) and count < self.shard_items and size < self.shard_bytes:
                size += self.rows[count]["codes"].nbytes
                count += 1
            if count == len(self.rows) and size < self.shard_bytes and count < self.shard_items and not force:
                return
            _write_shard(self.out_dir / f"shard-r{self.rank:03d}-{self.next_number:05d}.parquet", self.rows[:count], self.run)
            del self.rows[:count]
            self.next_number += 1


class _Batch:
    """Items read and waiting to be coded together, until they hold `batch_samples` samples (one batch's worth)."""

    def __init__(self, encoder: _Encoder, batch_samples: int):
        self.encoder, self.batch_samples = encoder, batch_samples
        self.items: list[tuple[Source, np.ndarray, dict[str, Any]]] = []
        self.samples = 0

    def add(self, source: Source, audio: np.ndarray, meta: dict[str, Any]) -> bool:
        """Queue an item's audio `[C, T]` → whether the batch is full (time to call `code`)."""
        self.items.append((source, audio, meta))
        self.samples += audio.size
        return self.samples >= self.batch_samples

    def code(self) -> list[tuple[Source, np.ndarray, dict[str, Any]]]:
        """Code the waiting items in one go and empty the batch → (source, codes `[C, N, F]`, metadata) per item."""
        if not self.items:
            return []
        codes = self.encoder.encode_items([audio for _, audio, _ in self.items])
        coded = [(source, c, meta) for (source, _, meta), c in zip(self.items, codes)]
        self.items.clear()
        self.samples = 0
        return coded


def _run(
    model: Codec,
    mine: list[Source],
    writer: _ShardWriter,
    encoder: _Encoder,
    bar: tqdm,
    *,
    batch_samples: int,
    max_seconds: float,
    workers: int,
) -> dict[str, Any]:
    """Code this rank's items `mine` (read in `workers` processes) into `writer`'s shards → counts and time taken.

    Items up to `max_seconds` are batched (`_Batch`), longer ones streamed one by one; `bar`
    advances by one per item read. On any exit, Ctrl-C and SIGTERM included, the rows already
    coded are written out; items still waiting in the batch are coded again on a re-run.
    """
    loader = torch.utils.data.DataLoader(
        _Loader(mine, model.sample_rate, max_seconds),
        batch_size=None,
        collate_fn=_as_is,
        num_workers=min(workers, len(mine)),
        prefetch_factor=2 if workers and mine else None,
        worker_init_fn=quiet_worker,
    )
    batch = _Batch(encoder, batch_samples)
    started = time.perf_counter()
    try:
        for source, audio, meta in loader:
            if isinstance(meta, str):
                writer.fail(source, meta)
            elif audio is None:
                try:
                    writer.add(source, encoder.encode_long(source.path, max(1, encoder.window)), meta)
                except (AudioError, OSError, ValueError, RuntimeError) as exc:
                    writer.fail(source, _reason(exc))
            elif batch.add(source, audio, meta):
                for coded in batch.code():
                    writer.add(*coded)
            _show_speed(bar, writer.stats, time.perf_counter() - started)
            writer.flush()
        for coded in batch.code():
            writer.add(*coded)
        writer.flush(force=True)
    except BaseException:  # Ctrl-C, SIGTERM, a crash: keep what is coded (the rest is coded on a re-run)
        writer.flush(force=True)
        raise
    return {**writer.stats, "elapsed_s": time.perf_counter() - started}


def _show_speed(bar: tqdm, stats: dict[str, Any], elapsed: float) -> None:
    """Advance the bar by one item and show the items and audio hours coded per second so far."""
    bar.update(1)
    elapsed = max(elapsed, 1e-9)
    hours = stats["audio_seconds"] / 3600
    bar.set_postfix_str(
        f"{stats['items'] / elapsed:.2f} items/s, {hours / elapsed:.5f} audio-h/s ({hours / elapsed * 3600:.1f} audio-h/h)"
    )


def write_manifest(out_dir: Path, settings: Settings, sources: list[Source]) -> dict[str, Any]:
    """Describe the finished run from what is on disk (shards and failure lists) in `manifest.json`."""
    import pyarrow.parquet as pq  # optional: tokenize extra

    shards, done, seconds = [], set(), 0.0
    for shard in sorted(out_dir.glob("shard-*.parquet")):
        table = pq.read_table(shard, columns=["index", "duration"])
        checksum = _checksum_file(shard)
        shards.append({"file": shard.name, "rows": table.num_rows, "sha256": checksum[0] if checksum else None})
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
    codes = torch.tensor(np.asarray(row["codes"], dtype=np.int64))
    audio = model.decode(codes.to(next(model.parameters()).device))[:, 0].float().cpu().numpy()
    return resample(audio, model.sample_rate, int(row["sample_rate"]))[:, : int(row["num_samples"])]


def distributed_context() -> tuple[int, int, int, Any]:
    """(rank, world size, local rank, barrier) for `tokenize` under torchrun; (0, 1, 0, None) outside it.

    The process group is gloo (only barriers pass through it) with a long timeout: ranks can
    finish their shares hours apart. `close_distributed` ends it.
    """
    ranks = init_distributed("gloo", timeout=BARRIER_TIMEOUT)
    return ranks.rank, ranks.world_size, ranks.local_rank, barrier if ranks.distributed else None
