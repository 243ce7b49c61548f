"""The commands of `rvqgan`: each checks its options, calls the module that does the work, prints the result.

A command raises `UsageError` (or the error type of the module it calls) for anything the user
can fix; `rvqgan.cli.main` turns it into one line and an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..audio import AUDIO_SUFFIXES, open_audio, output_format, read_stdin_audio, save_audio
from ..bitstream import Header, Reader
from ..dac_compat import DAC_MAGIC, decompress_dac, import_dac, read_code_stream, sniff_code_file
from ..evaluate import run_evaluation, summary_lines
from ..fileio import STDIO, Input, expand_inputs, plan_outputs, shorten, write_output
from ..files import NORMALIZE_RANGE, ClippingWarning, compress_file, decompress_file
from ..listen import analysis_dir, analysis_lines, analyze, key_path, prepare_test
from ..loading import inference_model, load_model
from ..model import Codec
from ..precision import describe as describe_machine
from ..tokenize import close_distributed, distributed_context, tokenize
from ..train import export_model, load_recipe
from ..train import run as run_training
from ..untrusted import for_terminal
from ..version import __version__


class UsageError(RuntimeError):
    """A user error to print as one line."""


def _finite(
    value: float | None, option: str, low: float | None = None, high: float | None = None, above: float | None = None
) -> None:
    """Refuse an option value that is NaN, infinite or out of its range, naming the option."""
    if value is None:
        return
    ok = math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok or (above is not None and not value > above):
        bounds = [f" {sign} {bound:g}" for sign, bound in ((">", above), ("≥", low), ("≤", high)) if bound is not None]
        raise UsageError(f"{option} must be a finite number{' and'.join(bounds)}, got {value}")


def _numbers(text: str | None, option: str, kind: type, example: str) -> list | None:
    """A comma-separated option value as a list of `kind`; None when it is not given."""
    try:
        return [kind(v) for v in text.split(",") if v] if text else None
    except ValueError:
        raise UsageError(f"{option} expects a list like {example}, got {text!r}") from None


def _require(modules: tuple[str, ...], message: str) -> None:
    """Refuse a command whose optional dependencies are missing; `message` may name the {missing} one."""
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as exc:
        raise UsageError(message.format(missing=exc.name)) from None


def _inference(model: Codec, args: argparse.Namespace) -> Codec:
    """`model` folded at --precision and run by --backend: the one place a command's inference model is made."""
    return inference_model(model, args.precision, args.backend)


def _load(args: argparse.Namespace, device: torch.device | str = "cpu") -> tuple[Codec, str]:
    """The inference model --model names (default: default), and the label its code files record."""
    source = args.model or "default"
    return _inference(load_model(source, device), args), (source if not Path(source).exists() else Path(source).stem)[:64]


def _warn(args: argparse.Namespace) -> Callable[[str], None]:
    return lambda message: print(f"rvqgan {args.command}: warning: {for_terminal(message)}", file=sys.stderr)


def _bar(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() and not args.quiet


def _plan(args: argparse.Namespace, suffixes: tuple[str, ...], what: str, suffix: str) -> list[tuple[Input, str]]:
    """Each input (`fileio.expand_inputs`: files, folders, globs, "-") with its output (`fileio.plan_outputs`)."""
    inputs = expand_inputs(args.inputs, suffixes, what=what, stdin=True, strict=False)
    return plan_outputs(inputs, args.output, suffix, single=len(inputs) == 1 and not Path(args.inputs[0]).is_dir())


def _each(args: argparse.Namespace, plan: list[tuple[Input, str]], job: Callable[[str, str], None], named: bool) -> int:
    """Run `job(input, output)` on each pair, skipping existing outputs unless --overwrite. An input
    that fails is one error line (naming the input if `named`), and the others go on."""
    failures = 0
    for item, dst in plan:
        try:
            if dst != STDIO and Path(dst).exists() and not args.overwrite:
                print(f"{for_terminal(dst)}: exists, skipped (use --overwrite)", file=sys.stderr)
                continue
            if item.error:
                raise UsageError(item.error)
            job(item.path, dst)
        except (UsageError, ValueError, OSError, RuntimeError) as exc:
            failures += 1
            where = f"{'<stdin>' if item.path == STDIO else item.path}: " if named else ""
            print(f"rvqgan {args.command}: error: {for_terminal(where)}{for_terminal(exc)}", file=sys.stderr)
    return 1 if failures else 0


def cmd_encode(args: argparse.Namespace) -> int:
    if args.kbps is not None and args.n_codebooks is not None:
        raise UsageError("give --kbps or --n-codebooks, not both")
    _finite(args.kbps, "--kbps", above=0)
    _finite(args.chunk_seconds, "--chunk-seconds", above=0)
    _finite(args.normalize_db, "--normalize-db", *NORMALIZE_RANGE)
    plan = _plan(args, AUDIO_SUFFIXES, "audio files", ".rvq")
    for _, dst in plan:
        if dst != STDIO and Path(dst).suffix.lower() != ".rvq":
            raise UsageError(f"{dst}: encode writes .rvq code files; give the output a .rvq name")
    model, label = _load(args)
    if args.kbps is not None:
        model.n_codebooks_for_kbps(args.kbps)  # below one codebook of one channel: no file can be coded
    elif args.n_codebooks is not None and not 1 <= args.n_codebooks <= model.n_codebooks:
        raise UsageError(f"--n-codebooks must be between 1 and {model.n_codebooks} for this model")
    options = {"normalize_db": args.normalize_db, "chunk_seconds": args.chunk_seconds, "progress": _bar(args)}

    def encode(src: str, dst: str) -> None:
        source = read_stdin_audio() if src == STDIO else src
        n_q = args.n_codebooks if args.kbps is None else _codebooks_for_kbps(model, source, args.kbps)
        headers: list[Header] = []

        def compress(f: BinaryIO) -> None:
            headers.append(compress_file(model, source, f, n_codebooks=n_q, model_name=label, **options))

        write_output(dst, compress, overwrite=args.overwrite)
        if dst != STDIO and not args.quiet:
            print(f"{for_terminal(dst)}: {headers[0].summary(Path(dst).stat().st_size)}", file=sys.stderr)

    return _each(args, plan, encode, named=False)


def _codebooks_for_kbps(model: Codec, source: str | BinaryIO, kbps: float) -> int:
    """The codebooks that --kbps allows for `source`: its bitrate is the file's, all channels
    together, so each of its channels gets its share (`Codec.n_codebooks_for_kbps`)."""
    f, name = open_audio(source)
    with f:
        channels = f.channels
    if not isinstance(source, str):
        source.seek(0)
    try:
        return model.n_codebooks_for_kbps(kbps, channels)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


def cmd_decode(args: argparse.Namespace) -> int:
    _finite(args.start, "--start", low=0)
    _finite(args.end, "--end", low=0)
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise UsageError(f"--end {args.end} must be after --start {args.start}")
    plan = _plan(args, (".rvq", ".dac"), ".rvq or .dac files", args.format)
    for _, dst in plan:
        if dst != STDIO:
            output_format(dst)
    models: dict[str, Codec] = {}
    options = {"start": args.start, "end": args.end, "allow_other_weights": args.allow_other_weights, "progress": _bar(args)}

    def decode(src: str, dst: str) -> None:
        with read_code_stream(sys.stdin.buffer) if src == STDIO else open(src, "rb") as stream:
            legacy = sniff_code_file(stream.read(len(DAC_MAGIC))) == "dac"
            stream.seek(0)
            if legacy:
                _decode_legacy(stream, dst, args)
                return
            reader = Reader(stream)
            name = args.model or reader.header.model
            if name not in models:
                models[name] = _load(args)[0] if args.model else _named_model(name, args)
            write_output(dst, lambda f: decompress_file(models[name], reader, f, **options))
        if dst != STDIO and not args.quiet:
            print(f"{src} -> {dst}", file=sys.stderr)

    return _each(args, plan, _out_of_range_is_one_line(decode), named=True)


def _out_of_range_is_one_line(job: Callable[[str, str], None]) -> Callable[[str, str], None]:
    """`job` with the errors no input should cause but a hostile or huge one might, an arithmetic
    overflow or running out of memory, as a `UsageError` (one line and exit 1, never exit 70)."""

    def run(src: str, dst: str) -> None:
        try:
            job(src, dst)
        except OverflowError as exc:
            raise UsageError(f"a value in the file is out of range ({exc})") from None
        except MemoryError:
            raise UsageError("not enough memory to decode it") from None

    return run


def _named_model(name: str, args: argparse.Namespace) -> Codec:
    """The inference model a code file's header names: a label read from the file, so a name, never a path to
    open, and never a download (a release loads only if already cached)."""
    try:
        model = load_model(name, paths=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"cannot load the model this file names ({exc}); pass --model") from None
    return _inference(model, args)


def _decode_legacy(stream: BinaryIO, dst: str, args: argparse.Namespace) -> None:
    """Decode a reference-implementation .dac file (see `dac_compat`)."""

    def model() -> Codec:
        if not args.model:
            raise UsageError(".dac files do not name their model: pass --model (e.g. the DAC .pth it was made with)")
        if args.backend != "torch":
            raise UsageError("legacy .dac files decode with the torch backend (their chunks run unpadded convolutions)")
        return _load(args)[0]

    audio, sample_rate = decompress_dac(stream, model, start=args.start, end=args.end)
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    if clipped:
        message = f"{clipped} decoded samples were beyond full scale and clipped ({clipped / audio.size:.2%})"
        warnings.warn(message, ClippingWarning, stacklevel=1)
    write_output(dst, lambda f: save_audio(f, audio, sample_rate))
    if dst != STDIO and not args.quiet:
        print(f"{getattr(stream, 'name', '<stdin>')} -> {dst} (legacy .dac)", file=sys.stderr)


def cmd_info(args: argparse.Namespace) -> int:
    if not args.files:
        facts = describe_machine()
        auto = facts.pop("auto")
        assert isinstance(auto, dict)
        facts["precision auto"] = ", ".join(f"{direction} {p}" for direction, p in auto.items())
        for key, value in {"rvqgan": __version__, **facts}.items():
            shown = (", ".join(value) or "none") if isinstance(value, list) else value
            print(f"{key + ':':<16}{shown}")
        return 0
    failures = 0
    for src in args.files:
        try:
            with open(src, "rb") as f:
                print(f"{for_terminal(src)}:\n{Reader(f).describe()}")
        except (ValueError, OSError, OverflowError, MemoryError) as exc:  # the last two: never, but never exit 70
            failures += 1
            print(f"rvqgan info: error: {for_terminal(src)}: {for_terminal(exc)}", file=sys.stderr)
    return 1 if failures else 0


def cmd_eval(args: argparse.Namespace) -> int:
    n_q = None if args.n_codebooks == "all" else _numbers(args.n_codebooks, "--n-codebooks", int, "1,2,4")
    _finite(args.seconds, "--seconds", above=0)
    if not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    extras = ("av", "matplotlib") + ("visqol",) * (not args.no_visqol) + ("librosa",) * (not args.no_pitch)
    _require(extras, "evaluation needs the eval extras ({missing} is missing): pip install 'rvqgan[eval]'")
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
    for line in summary_lines(result):
        print(line)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    _require(
        ("av", "matplotlib", "scipy"), "listening tests need the eval extras ({missing} is missing): pip install 'rvqgan[eval]'"
    )
    if args.analyze:
        return _analyze(args)
    if args.results:
        raise UsageError(f"unexpected argument {args.results[0]!r} (results files go with --analyze TEST_DIR)")
    if not args.data or not args.output:
        raise UsageError("preparing a test needs --data FOLDER and -o OUT_DIR (or use --analyze TEST_DIR RESULTS...)")
    if not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data}: no such folder")
    _finite(args.seconds, "--seconds", above=0)
    kbps = _numbers(args.kbps, "--kbps", float, "3,7.5")
    for value in kbps or []:
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
        warn=_warn(args),
    )
    print(f"{args.output}/index.html: {len(test['items'])} items, systems: {for_terminal(', '.join(test['systems']))}")
    print(f"{key_path(args.output)}: the key (which file is which system); keep it, do not host it")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    if not args.results:
        raise UsageError("--analyze TEST_DIR needs the results files (JSON) the listeners sent")
    result = analyze(args.analyze, args.results)
    for line in analysis_lines(result):
        print(line)
    print(f"{analysis_dir(args.analyze)}/analysis.html")
    if not result["kept"]:
        raise UsageError(f"all {len(result['listeners'])} listeners were excluded by the post-screening")
    return 0


def _device(name: str) -> torch.device:
    """--device as a device that is here: cpu, cuda or cuda:N."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: only cpu and cuda are supported")
    return device


def cmd_tokenize(args: argparse.Namespace) -> int:
    _require(("pyarrow",), "tokenize writes Parquet and needs pyarrow: pip install 'rvqgan[tokenize]'")
    _finite(args.batch_seconds, "--batch-seconds", above=0)
    _finite(args.window_seconds, "--window-seconds", above=0)
    _finite(args.max_seconds, "--max-seconds", above=0)
    device = _device(args.device)
    rank, world, local_rank, barrier = distributed_context()
    try:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)  # one GPU per rank under torchrun
            torch.cuda.set_device(device)
        model, label = _load(args, device)
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
            progress=_bar(args),
            warn=_warn(args),
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
    if rank != 0:
        return 0
    m = summary["manifest"]
    print(f"{args.output}/manifest.json: {m['coded']} of {m['items']} items in {len(m['shards'])} shards, {m['failed']} failed")
    for failure in m["failures"][:20]:
        print(f"  failed: {for_terminal(shorten(failure['path']))}: {for_terminal(failure['error'])}", file=sys.stderr)
    return 1 if m["failed"] or m["missing"] else 0


def cmd_import_dac(args: argparse.Namespace) -> int:
    print(import_dac(args.weights, args.out, fp16=args.fp16, overwrite=args.overwrite))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    config, source = load_recipe(args.config, args.set or [], data_dirs=args.data or [], init=args.init)
    run_training(config, resume=args.resume, source=source)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "onnx":
        _require(("onnx",), "--format onnx needs onnx: pip install 'rvqgan[onnx]'")
    print(export_model(args.checkpoint, args.out, args.format, fp16=args.fp16, dc_folder=args.remove_dc))
    return 0
