"""Command-line interface: `rvqgan SUBCOMMAND ...` (see `rvqgan --help`)."""

from __future__ import annotations

import argparse
import io
import math
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .allocator import reuse_freed_memory
from .audio import AudioError
from .backend import BACKENDS, BackendError
from .checkpoint import CheckpointError
from .config import ConfigError

if TYPE_CHECKING:
    from .audio import AudioSource
    from .bitstream import Header
    from .model import Codec


class UsageError(RuntimeError):
    """A user error to print as one line."""


class Terminated(BaseException):
    """SIGTERM arrived: unwind (removing temporary files) and exit 143."""


# What is read from standard input: audio is spooled to a temporary file up to this size
# (1 GiB: over an hour of 16-bit stereo at 48 kHz); $RVQGAN_MAX_STDIN_BYTES changes it.
MAX_STDIN_AUDIO_BYTES = 2**30


def _stdin_limit() -> int:
    raw = os.environ.get("RVQGAN_MAX_STDIN_BYTES")
    if raw is None:
        return MAX_STDIN_AUDIO_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"RVQGAN_MAX_STDIN_BYTES must be a positive number of bytes, got {raw[:40]!r}")
    return int(raw)


MODEL_HELP = (
    "default; a released DAC model by name (dac_44khz, dac_44khz_16kbps, dac_24khz, dac_16khz; downloaded once); "
    "hf:ORG/NAME[@REV]; a transformers DacModel folder; a preset with imported weights; or a .safetensors/.pth file "
    "(default: default)"
)
BACKEND_HELP = "inference engine: torch (default), compile (torch.compile; the first call compiles), onnxruntime"

# Leading bytes of the audio containers soundfile reads (MPEG audio is recognised by its frame sync).
AUDIO_MAGICS = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"FORM", b"fLaC", b"OggS", b"ID3", b".snd", b"caff", b"riff")


def _finite(
    value: float | None, option: str, low: float | None = None, high: float | None = None, above: float | None = None
) -> None:
    """Refuse an option value that is NaN, infinite or out of its range, naming the option."""
    if value is None:
        return
    ok = math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    ok = ok and (above is None or value > above)
    if not ok:
        bounds = [f" {sign} {bound:g}" for sign, bound in ((">", above), ("≥", low), ("≤", high)) if bound is not None]
        raise UsageError(f"{option} must be a finite number{' and'.join(bounds)}, got {value}")


def _read_stdin_audio() -> BinaryIO:
    """Standard input as a seekable file for soundfile: checked to start like audio, then spooled to disk (bounded)."""
    import shutil
    import tempfile

    stdin = sys.stdin.buffer
    head = stdin.read(16)
    if not head:
        raise UsageError("<stdin>: no input")
    if not (head.startswith(AUDIO_MAGICS) or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)):
        raise UsageError("<stdin>: not an audio stream (no WAV, FLAC, Ogg, MP3, AIFF, AU, CAF or W64 header)")
    limit = _stdin_limit()
    spool = tempfile.TemporaryFile()
    try:
        spool.write(head)
        shutil.copyfileobj(_Bounded(stdin, limit - len(head), limit), spool)
        raw = io.FileIO(os.dup(spool.fileno()), "r+b")
    finally:
        spool.close()
    raw.name = "<stdin>"  # messages name the stream, not the spool file
    raw.seek(0)
    return io.BufferedRandom(raw)


class _Bounded:
    """A read-only view of a stream that raises `UsageError` once more than `limit` bytes come through."""

    def __init__(self, f: BinaryIO, left: int, limit: int):
        self.f, self.left, self.limit = f, left, limit

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(1 << 20 if n is None or n < 0 else n)
        self.left -= len(data)
        if self.left < 0:
            raise UsageError(
                f"<stdin>: more than {self.limit / 2**20:.0f} MiB of audio (RVQGAN_MAX_STDIN_BYTES); pass a file path instead"
            )
        return data


def _read_stdin_codes() -> BinaryIO:
    """Standard input as an in-memory code file: it must start like one, and is read up to a bound."""
    from .bitstream import MAGIC, MAX_STREAM_BYTES, read_limited

    stdin = sys.stdin.buffer
    head = stdin.read(6)
    if not head:
        raise UsageError("no input")
    if not (head.startswith(MAGIC) or head == b"\x93NUMPY"):
        raise UsageError("not an .rvq or .dac code file (bad magic number)")
    stream = io.BytesIO(head + read_limited(stdin, MAX_STREAM_BYTES - len(head), "the stream"))
    stream.name = "<stdin>"
    return stream


def _inference(model: Codec, args: argparse.Namespace) -> Codec:
    """`model` folded at `--precision` and run by `--backend` (the one place a command's inference model is made)."""
    from .backend import with_backend

    return with_backend(model.folded(args.precision), getattr(args, "backend", "torch"))


def _load(name: str | None) -> tuple[Codec, str]:
    from .checkpoint import load_model

    source = name or "default"
    model = load_model(source)
    label = source if not Path(source).exists() else Path(source).stem
    return model, label[:64]


def _expand_inputs(items: list[str], suffixes: tuple[str, ...]) -> list[tuple[str, Path | None]]:
    """(input, path relative to its root folder) for files, folders (recursive) and globs; '-' is stdin."""
    import glob

    out: list[tuple[str, Path | None]] = []
    for item in items:
        if item == "-":
            out.append(("-", None))
            continue
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not files:
                out.append((item, None))  # reported as an error later
            out += [(str(p), p.relative_to(path)) for p in files]
        elif not path.exists() and any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            out += [(m, None) for m in matches if Path(m).is_file()] or [(item, None)]
        else:
            out.append((item, None))
    return out


def _plan(inputs: list[tuple[str, Path | None]], out: str | None, single: bool, suffix: str) -> list[tuple[str, str]]:
    """(input, output) pairs, refusing before anything is written: two inputs that would write the
    same output, and an output that would replace its own input."""
    plan: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for src, rel in inputs:
        dst = _output_path(src, rel, out, single, suffix)
        if dst != "-":
            key = os.path.realpath(dst)
            if key in seen:
                raise UsageError(f"{seen[key]} and {src} would both be written to {dst}; give them separate output folders")
            seen[key] = src
            if src != "-" and key == os.path.realpath(src):
                raise UsageError(f"{src}: the output would replace the input; choose another output with -o")
        plan.append((src, dst))
    return plan


def _output_path(src: str, rel: Path | None, out: str | None, single: bool, suffix: str) -> str:
    if out == "-":
        return "-"
    if out is None:
        return str(Path(src).with_suffix(suffix)) if src != "-" else "-"
    target = Path(out)
    if single and not out.endswith(("/", "\\")) and not target.is_dir():
        return out
    name = (rel if rel is not None else Path(Path(src).name if src != "-" else "stdin")).with_suffix(suffix)
    return str(target / name)


def _atomic_output(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Run `write(file)` on a temporary file beside `path`, then rename it into place; '-' is stdout."""
    from .fileio import atomic_write

    if path == "-":
        import io

        buf = io.BytesIO()
        buf.name = "stdout.wav"
        write(buf)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_write(target, to_file)


def _report(path: str, header: Header, size: int) -> str:
    codes_kbps = header.code_bitrate / 1000
    file_kbps = size * 8 / header.duration / 1000 if header.duration else float("nan")
    return (
        f"{path}: {header.duration:.2f} s, {header.channels} ch, {header.n_codebooks} codebooks, "
        f"codes {codes_kbps:.3f} kbps, file {file_kbps:.3f} kbps ({size} bytes)"
    )


def _cmd_encode(args: argparse.Namespace) -> int:
    from .audio import AUDIO_SUFFIXES
    from .files import NORMALIZE_RANGE, compress_file

    if args.kbps is not None and args.n_codebooks is not None:
        raise UsageError("give --kbps or --n-codebooks, not both")
    _finite(args.kbps, "--kbps", above=0)
    _finite(args.chunk_seconds, "--chunk-seconds", above=0)
    _finite(args.normalize_db, "--normalize-db", *NORMALIZE_RANGE)
    inputs = _expand_inputs(args.inputs, AUDIO_SUFFIXES)
    single = len(inputs) == 1 and not Path(args.inputs[0]).is_dir()
    plan = _plan(inputs, args.output, single, ".rvq")
    for _, dst in plan:
        if dst != "-" and Path(dst).suffix.lower() != ".rvq":
            raise UsageError(f"{dst}: encode writes .rvq code files; give the output a .rvq name")
    model, label = _load(args.model)
    model = _inference(model, args)
    n_q = args.n_codebooks
    if args.kbps is not None:
        n_q = model.n_codebooks_for_kbps(args.kbps)
    if n_q is not None and not 1 <= n_q <= model.n_codebooks:
        raise UsageError(f"--n-codebooks must be between 1 and {model.n_codebooks} for this model")
    failures = 0
    for src, dst in plan:
        try:
            if dst != "-" and Path(dst).exists() and not args.overwrite:
                print(f"{dst}: exists, skipped (use --overwrite)", file=sys.stderr)
                continue
            source: AudioSource
            if src == "-":
                source = _read_stdin_audio()
            else:
                if Path(src).is_dir():
                    raise UsageError(f"{src}: no audio files in folder")
                source = src
            holder: dict[str, Header] = {}

            def write(f: BinaryIO) -> None:
                holder["header"] = compress_file(
                    model,
                    source,
                    f,
                    n_codebooks=n_q,
                    model_name=label,
                    normalize_db=args.normalize_db,
                    chunk_seconds=args.chunk_seconds,
                    progress=sys.stderr.isatty() and not args.quiet,
                )

            _atomic_output(dst, write)
            if dst != "-" and not args.quiet:
                print(_report(dst, holder["header"], Path(dst).stat().st_size), file=sys.stderr)
        except (UsageError, ValueError, OSError, RuntimeError) as exc:
            failures += 1
            print(f"rvqgan encode: error: {exc}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_decode(args: argparse.Namespace) -> int:
    from .audio import output_format
    from .bitstream import Reader
    from .checkpoint import load_model
    from .files import decompress_file

    _finite(args.start, "--start", low=0)
    _finite(args.end, "--end", low=0)
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end {args.end} must be after --start {args.start}")
    models: dict[str, Codec] = {}
    inputs = _expand_inputs(args.inputs, (".rvq", ".dac"))
    single = len(inputs) == 1 and not Path(args.inputs[0]).is_dir()
    plan = _plan(inputs, args.output, single, args.format)
    for _, dst in plan:
        if dst != "-":
            output_format(dst)
    failures = 0
    for src, dst in plan:
        try:
            if dst != "-" and Path(dst).exists() and not args.overwrite:
                print(f"{dst}: exists, skipped (use --overwrite)", file=sys.stderr)
                continue
            if src != "-" and Path(src).is_dir():
                raise UsageError(f"{src}: no .rvq or .dac files in folder")
            stream = _read_stdin_codes() if src == "-" else open(src, "rb")
            with stream:
                if stream.read(6) == b"\x93NUMPY":
                    stream.seek(0)
                    _decode_legacy(stream, dst, args)
                    continue
                stream.seek(0)
                reader = Reader(stream)
                name = args.model or reader.header.model
                if name not in models:
                    if args.model:
                        models[name] = _inference(_load(name)[0], args)
                    else:  # the header's name is a label from the file: never a path to open
                        try:
                            models[name] = _inference(load_model(name, paths=False), args)
                        except (UsageError, BackendError):
                            raise
                        except (OSError, ValueError, RuntimeError) as exc:
                            raise UsageError(f"cannot load the model this file names ({exc}); pass --model") from None
                model = models[name]
                _atomic_output(
                    dst,
                    lambda f: decompress_file(
                        model,
                        reader,
                        f,
                        start=args.start,
                        end=args.end,
                        progress=sys.stderr.isatty() and not args.quiet,
                        allow_other_weights=args.allow_other_weights,
                    ),
                )
            if dst != "-" and not args.quiet:
                print(f"{src} -> {dst}", file=sys.stderr)
        except (UsageError, ValueError, OSError, RuntimeError) as exc:
            failures += 1
            print(f"rvqgan decode: error: {'<stdin>' if src == '-' else src}: {exc}", file=sys.stderr)
    return 1 if failures else 0


def _decode_legacy(stream: BinaryIO, dst: str, args: argparse.Namespace) -> None:
    """Decode a reference-implementation .dac file (see `dac_compat`)."""
    import numpy as np

    from .audio import save_audio
    from .dac_compat import decompress_dac
    from .files import ClippingWarning

    def model() -> Codec:
        if not args.model:
            raise UsageError(".dac files do not name their model: pass --model (e.g. the DAC .pth it was made with)")
        if getattr(args, "backend", "torch") != "torch":
            raise UsageError("legacy .dac files decode with the torch backend (their chunks run unpadded convolutions)")
        return _inference(_load(args.model)[0], args)

    audio, sample_rate = decompress_dac(stream, model, start=args.start, end=args.end)
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    if clipped:
        warnings.warn(
            f"{clipped} decoded samples were beyond full scale and clipped ({clipped / audio.size:.2%})",
            ClippingWarning,
            stacklevel=1,
        )
    _atomic_output(dst, lambda f: save_audio(f, audio, sample_rate))
    if dst != "-" and not args.quiet:
        print(f"{getattr(stream, 'name', '<stdin>')} -> {dst} (legacy .dac)", file=sys.stderr)


def _cmd_info(args: argparse.Namespace) -> int:
    from .bitstream import Reader

    failures = 0
    for src in args.files:
        try:
            with open(src, "rb") as f:
                reader = Reader(f)
                h = reader.header
                size = reader.file_size
                frames = reader.n_frames
            print(f"{src}:")
            weights = f", weights {h.weights_hash}" if h.weights_hash else ""
            print(f"  model        {h.model} (config {h.config_hash}{weights})")
            print(f"  audio        {h.duration:.3f} s, {h.length} samples at {h.input_sample_rate} Hz, {h.channels} channel(s)")
            print(
                f"  codes        {h.n_codebooks} codebooks x {h.codebook_size} entries ({h.bits_per_code} bits), "
                f"{h.frame_rate:.3f} frames/s at {h.sample_rate} Hz, {frames} frames"
            )
            print(
                f"  bitrate      codes {h.code_bitrate / 1000:.3f} kbps, file {size * 8 / h.duration / 1000:.3f} kbps ({size} bytes)"
            )
            print(
                "  loudness     "
                + ("not normalised" if h.gain_db is None else f"coded with {h.gain_db:+.2f} dB gain, undone on decode")
            )
        except (ValueError, OSError) as exc:
            failures += 1
            print(f"rvqgan info: error: {src}: {exc}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import run_evaluation

    n_q = None
    if args.n_codebooks and args.n_codebooks != "all":
        try:
            n_q = [int(v) for v in args.n_codebooks.split(",") if v]
        except ValueError:
            raise UsageError(f"--n-codebooks expects a list like 1,2,4, got {args.n_codebooks!r}") from None
    _finite(args.seconds, "--seconds", above=0)
    if not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    try:
        import av  # noqa: F401
        import matplotlib  # noqa: F401

        if not args.no_visqol:
            import visqol  # noqa: F401
        if not args.no_pitch:
            import librosa  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"evaluation needs the eval extras ({exc.name} is missing): pip install 'rvqgan[eval]'") from None
    result = run_evaluation(
        args.model or "default",
        args.data,
        args.output,
        n_codebooks=n_q,
        baselines=args.baseline or [],
        seconds=args.seconds,
        workers=args.workers,
        with_visqol=not args.no_visqol,
        with_pitch=not args.no_pitch,
        progress=sys.stderr.isatty(),
    )
    print(f"{args.output}/report.html: {result['n_items']} items in {result['elapsed_s']:.0f} s")
    for system, entry in result["summary"].items():
        o = entry["overall"]
        fields = [f"{o['kbps_codes'][0]:.2f} kbps" if "kbps_codes" in o else ""]
        for key, label in (("visqol_audio", "ViSQOL"), ("mel", "mel"), ("si_sdr", "SI-SDR")):
            if key in o:
                fields.append(f"{label} {o[key][0]:.3f}")
        print(f"  {system:<24} " + ", ".join(f for f in fields if f))
    return 0


def _cmd_listen(args: argparse.Namespace) -> int:
    try:
        import av  # noqa: F401
        import matplotlib  # noqa: F401
        import scipy  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"listening tests need the eval extras ({exc.name} is missing): pip install 'rvqgan[eval]'") from None
    from .listen import analysis_dir, analyze, key_path, prepare_test

    if args.analyze:
        if not args.results:
            raise UsageError("--analyze TEST_DIR needs the results files (JSON) the listeners sent")
        result = analyze(args.analyze, args.results)
        for name in result["excluded"]:
            print(f"excluded by post-screening: {name}")
        for system, v in result["overall"].items():
            lo, hi = v["ci95"]
            interval = f"[{lo:5.1f}, {hi:5.1f}]" if lo is not None else "(one rating)"
            print(f"  {system:<28} {v['mean']:5.1f}  {interval}  n={v['n']}")
        print(f"{analysis_dir(args.analyze)}/analysis.html")
        if not result["kept"]:
            raise UsageError(f"all {len(result['listeners'])} listeners were excluded by the post-screening")
        return 0
    if args.results:
        raise UsageError(f"unexpected argument {args.results[0]!r} (results files go with --analyze TEST_DIR)")
    if not args.data or not args.output:
        raise UsageError("preparing a test needs --data FOLDER and -o OUT_DIR (or use --analyze TEST_DIR RESULTS...)")
    if not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    _finite(args.seconds, "--seconds", above=0)
    kbps = None
    if args.kbps:
        try:
            kbps = [float(v) for v in args.kbps.split(",") if v]
        except ValueError:
            raise UsageError(f"--kbps expects a list like 3,7.5, got {args.kbps!r}") from None
        for value in kbps:
            _finite(value, "--kbps", above=0)
    test = prepare_test(
        args.model or ["default"],
        args.data,
        args.output,
        kbps=kbps,
        baselines=args.baseline or [],
        seconds=args.seconds,
        per_group=args.per_group,
        title=args.title,
        audio_format=args.format,
        overwrite=args.overwrite,
        warn=lambda message: print(f"rvqgan listen: warning: {message}", file=sys.stderr),
    )
    print(f"{args.output}/index.html: {len(test['items'])} items, systems: {', '.join(test['systems'])}")
    print(f"{key_path(args.output)}: the key (which file is which system); keep it, do not host it")
    return 0


def _cmd_tokenize(args: argparse.Namespace) -> int:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("tokenize writes Parquet and needs pyarrow: pip install 'rvqgan[tokenize]'") from None
    import torch

    from .tokenize import close_distributed, distributed_context, tokenize

    for option, value in (
        ("--batch-seconds", args.batch_seconds),
        ("--window-seconds", args.window_seconds),
        ("--max-seconds", args.max_seconds),
    ):
        _finite(value, option, above=0)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UsageError(f"--device {args.device!r} is not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {args.device!r}: only cpu and cuda are supported")
    rank, world, local_rank, barrier = distributed_context()
    try:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)  # one GPU per rank under torchrun
            torch.cuda.set_device(device)
        model, label = _load(args.model)
        model = _inference(model.to(device), args)
        summary = tokenize(
            model,
            label,
            args.inputs,
            args.output,
            n_codebooks=args.n_codebooks,
            batch_seconds=args.batch_seconds,
            window_seconds=args.window_seconds,
            max_seconds=args.max_seconds,
            shard_items=args.shard_items,
            workers=args.workers,
            device=device,
            rank=rank,
            world_size=world,
            barrier=barrier,
            progress=sys.stderr.isatty() and not args.quiet,
            warn=lambda message: print(f"rvqgan tokenize: warning: {message}", file=sys.stderr),
        )
    finally:
        close_distributed()
    hours = summary["audio_seconds"] / 3600
    speed = hours / max(summary["elapsed_s"], 1e-9) * 3600
    print(
        f"rank {rank}: {summary['items']} items coded, {summary['failed']} failed, {hours:.3f} audio hours "
        f"in {summary['elapsed_s']:.1f} s ({speed:.1f} audio-hours per hour)",
        file=sys.stderr,
    )
    if rank == 0:
        m = summary["manifest"]
        print(
            f"{args.output}/manifest.json: {m['coded']} of {m['items']} items in {len(m['shards'])} shards, {m['failed']} failed"
        )
        for failure in m["failures"][:20]:
            print(f"  failed: {failure['path']}: {failure['error']}", file=sys.stderr)
        return 1 if m["failed"] or m["missing"] else 0
    return 0


def _cmd_import_dac(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import save_model
    from .dac_compat import load_dac_pth

    model = load_dac_pth(args.weights)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        out = out.with_suffix(out.suffix + ".safetensors") if out.suffix else out.with_suffix(".safetensors")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists (use --overwrite)")
    save_model(
        model,
        out,
        dtype=torch.float16 if args.fp16 else None,
        extra={"source": f"descript-audio-codec: {Path(args.weights).name}"},
    )
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{out}: {n_params / 1e6:.1f}M parameters, {model.sample_rate} Hz, {model.n_codebooks} codebooks, "
        f"{model.bitrate() / 1000:.2f} kbps"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_train_config
    from .train import TrainingError, run

    config = load_train_config(args.config, args.set or [])
    try:
        run(config, resume=args.resume)
    except TrainingError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import is_model_name
    from .train import TrainingError, export_weights, training_generator

    source = Path(args.checkpoint)
    training = not (is_model_name(args.checkpoint) or source.is_dir() or source.suffix in (".safetensors", ".pth"))
    try:
        if args.format == "onnx":
            from .checkpoint import load_model
            from .onnx_backend import export_onnx

            try:
                import onnx  # noqa: F401
            except ImportError:
                raise UsageError("--format onnx needs onnx: pip install 'rvqgan[onnx]'") from None
            if args.remove_dc or args.fp16:
                raise UsageError("--remove-dc and --fp16 go with --format safetensors")
            if Path(args.out).exists() and (not Path(args.out).is_dir() or any(Path(args.out).iterdir())):
                raise UsageError(f"{args.out}: exists and is not an empty folder")
            path = export_onnx(training_generator(args.checkpoint)[0] if training else load_model(args.checkpoint), args.out)
        elif args.format == "hf":
            from .checkpoint import load_model
            from .hub import export_hf

            if args.remove_dc or args.fp16:
                raise UsageError("--remove-dc and --fp16 go with --format safetensors")
            if Path(args.out).exists() and (not Path(args.out).is_dir() or any(Path(args.out).iterdir())):
                raise UsageError(f"{args.out}: exists and is not an empty folder")
            model = training_generator(args.checkpoint)[0] if training else load_model(args.checkpoint)
            try:
                path = export_hf(model, args.out)
            except ValueError as exc:
                raise UsageError(f"cannot export as a transformers DacModel: {exc}") from None
        elif training:
            path = export_weights(args.checkpoint, args.out, torch.float16 if args.fp16 else None, dc_folder=args.remove_dc)
        else:
            raise UsageError(f"{args.checkpoint}: --format safetensors exports training checkpoints; this is a model already")
    except TrainingError as exc:
        raise UsageError(str(exc)) from None
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="rvqgan", description="Improved RVQGAN neural audio codec.")
    parser.add_argument("--version", action="version", version=f"rvqgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "encode",
        help="compress audio files to .rvq code files",
        description="Compress audio files, folders (recursively, keeping the tree) or globs to .rvq files. "
        "Audio at any rate is resampled to the model's; channels are coded independently. "
        "Loudness is left as it is unless --normalize-db is given, in which case the audio is coded "
        "at that loudness and the original level is restored on decode.",
    )
    p.add_argument("inputs", nargs="+", help="audio files, folders or globs; - for stdin")
    p.add_argument("-o", "--output", help="output file (one input) or folder; - for stdout; default: beside the input")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--kbps", type=float, help="highest bitrate allowed; uses as many codebooks as fit")
    p.add_argument("--n-codebooks", type=int, help="number of codebooks to use (default: all)")
    p.add_argument(
        "--normalize-db",
        type=float,
        default=None,
        metavar="LUFS",
        help="code at this loudness (e.g. -16) and restore the original level on decode (default: off)",
    )
    p.add_argument(
        "--chunk-seconds", type=float, default=10.0, help="audio per forward pass; bounds memory, never changes the codes"
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="fp32 (exact) or bf16 (faster only on hardware with native bf16)",
    )
    p.add_argument("--backend", choices=BACKENDS, default="torch", help=BACKEND_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("decode", help="decode .rvq code files to audio (original rate, channels and length)")
    p.add_argument("inputs", nargs="+", help=".rvq or .dac files, folders or globs; - for stdin")
    p.add_argument("-o", "--output", help="output file (one input) or folder; - for stdout (WAV)")
    p.add_argument("--model", help="model to decode with (default: the one named in the file)")
    p.add_argument("--format", default=".wav", choices=[".wav", ".flac", ".ogg", ".mp3"], help="output format for folder outputs")
    p.add_argument("--start", type=float, help="decode from this time (s), reading only the chunks needed")
    p.add_argument("--end", type=float, help="decode up to this time (s)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--backend", choices=BACKENDS, default="torch", help=BACKEND_HELP)
    p.add_argument(
        "--allow-other-weights",
        action="store_true",
        help="decode even if the file was made by other trained weights of the same architecture (garbage, usually)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("info", help="describe .rvq files: model, duration, true bitrate, codebooks")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("eval", help="score a model (and baselines) on a folder of audio; writes CSV/JSON and an HTML report")
    p.add_argument("--model", help="model to evaluate (default: default)")
    p.add_argument("--data", required=True, help="folder of audio; its sub-folders are the groups (e.g. speech, music, general)")
    p.add_argument("--n-codebooks", help="codebook counts to evaluate, e.g. 1,2,4,9 (default: all)")
    p.add_argument("--baseline", action="append", help="opus:6,8,12 | mp3:32 | cmd:NAME='prog {in} {out}' (repeatable)")
    p.add_argument("--seconds", type=float, default=10.0, help="excerpt length per file (default 10)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (much faster)")
    p.add_argument("--no-pitch", action="store_true", help="skip the pitch metrics (F0 error, voicing error)")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "listen",
        help="prepare a MUSHRA listening test (one static page + audio), or analyse its results",
        description="Prepare: rvqgan listen --model M [--kbps 3,7.5] --baseline opus:8 --data FOLDER -o OUT_DIR. "
        "Analyse: rvqgan listen --analyze OUT_DIR results/*.json",
    )
    p.add_argument("results", nargs="*", help="with --analyze: the results files (JSON) the listeners downloaded")
    p.add_argument("--model", action="append", help="model to test (repeatable; default: default)")
    p.add_argument("--kbps", help="bitrates at which to test each model, e.g. 3,7.5 (default: all codebooks)")
    p.add_argument("--baseline", action="append", help="opus:6,8 | mp3:32 | cmd:NAME='prog {in} {out}' (repeatable)")
    p.add_argument("--data", help="folder of audio; its sub-folders are the domains (e.g. speech, music, general)")
    p.add_argument("-o", "--output", help="folder for the test (index.html, audio/); the key goes beside it (OUT_DIR.key.json)")
    p.add_argument("--seconds", type=float, default=8.0, help="excerpt length (default 8)")
    p.add_argument("--per-group", type=int, help="at most this many items per domain")
    p.add_argument("--title", default="Listening test")
    p.add_argument(
        "--format", choices=["wav", "flac"], default="wav", help="stimulus files (default wav: equal sizes keep the test blind)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a test already in OUT_DIR")
    p.add_argument("--analyze", metavar="TEST_DIR", help="analyse results of the test in TEST_DIR (its key is TEST_DIR.key.json)")
    p.set_defaults(func=_cmd_listen)

    p = sub.add_parser(
        "tokenize",
        help="code a whole corpus into Parquet shards (batched, resumable, torchrun-aware)",
        description="Code audio files (folders, globs, or manifests: .txt, .csv or .jsonl with a 'path') into Parquet "
        "shards of codes in OUT_DIR, with a manifest. Every item's codes equal `Codec.encode` of that item alone. "
        "Re-running continues an interrupted run; under torchrun each rank codes its share.",
    )
    p.add_argument("inputs", nargs="+", help="folders, globs, files or manifests")
    p.add_argument("-o", "--output", required=True, help="output folder (shards, manifest.json)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--n-codebooks", type=int, help="codebooks to keep (default: all)")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="audio per forward pass (default 60)")
    p.add_argument(
        "--window-seconds",
        type=float,
        help="window for items longer than it (default: 5 on a GPU; on a CPU items are coded whole)",
    )
    p.add_argument("--max-seconds", type=float, default=600.0, help="longer files are streamed on their own (default 600)")
    p.add_argument("--shard-items", type=int, default=1000, help="items per Parquet shard (default 1000)")
    p.add_argument("--workers", type=int, default=2, help="processes reading and resampling audio (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--backend", choices=BACKENDS, default="torch", help=BACKEND_HELP)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_tokenize)

    p = sub.add_parser("import-dac", help="convert an official DAC .pth checkpoint to our safetensors format (no unpickling)")
    p.add_argument("weights", help="official DAC weights (.pth)")
    p.add_argument("out", help="output .safetensors file")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_import_dac)

    p = sub.add_parser("train", help="train or fine-tune a codec from a YAML recipe (see configs/)")
    p.add_argument("--config", required=True, help="YAML recipe, e.g. configs/cpu.yaml")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. --set steps=1000 (repeatable)"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoints/latest.pt exactly")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "export",
        help="write the generator of a training checkpoint as inference weights (.safetensors), or any model as a "
        "transformers DacModel folder (--format hf) or ONNX graphs (--format onnx)",
    )
    p.add_argument(
        "checkpoint",
        help="training checkpoint (e.g. runs/x/checkpoints/best.pt); with --format hf or onnx also any model (name or file)",
    )
    p.add_argument("out", help="output .safetensors file, or folder with --format hf or onnx")
    p.add_argument(
        "--format",
        choices=["safetensors", "hf", "onnx"],
        default="safetensors",
        help="safetensors (ours); hf: a folder that transformers.DacModel.from_pretrained loads; "
        "onnx: encoder/decoder and end-to-end encode/decode graphs (opset 17)",
    )
    p.add_argument("--fp16", action="store_true", help="store weights as float16")
    p.add_argument(
        "--remove-dc", metavar="FOLDER", help="measure the decoder's DC offset on audio in FOLDER (training audio) and remove it"
    )
    p.set_defaults(func=_cmd_export)
    return parser


def run() -> int:
    """The `rvqgan` command: `main` in a process whose malloc keeps freed memory for reuse.

    The allocator setting (`rvqgan.allocator`) is process-wide and permanent, so it is made here,
    in the program's own process, not in `main`, which callers may embed.
    """
    reuse_freed_memory()
    return main()


def main(argv: list[str] | None = None) -> int:
    """Run one command. Errors are one line on stderr and exit 1 (an unexpected internal error exits
    70); warnings are one line each; SIGINT and SIGTERM unwind (removing temporary files) and exit
    130 and 143."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    def show_warning(message: Warning | str, category: type[Warning], *rest: object, **kw: object) -> None:
        print(f"rvqgan {args.command}: warning: {message}", file=sys.stderr)

    from .files import ClippingWarning

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ClippingWarning)
            warnings.showwarning = show_warning
            return int(args.func(args) or 0)
    except (
        UsageError,
        AudioError,
        BackendError,
        CheckpointError,
        ConfigError,
        ValueError,
        OSError,
        RecursionError,
    ) as exc:  # TokenizeError is a ValueError
        print(f"rvqgan {args.command}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"rvqgan {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"rvqgan {args.command}: terminated", file=sys.stderr)
        return 143
    except Exception as exc:  # a bug: still one line (RVQGAN_DEBUG=1 shows the traceback)
        if os.environ.get("RVQGAN_DEBUG"):
            raise
        print(
            f"rvqgan {args.command}: internal error (please report it): {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr
        )
        return 70
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
