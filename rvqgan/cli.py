"""Command-line interface: `rvqgan SUBCOMMAND ...` (see `rvqgan --help`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .audio import AudioError
from .checkpoint import CheckpointError
from .config import ConfigError


class UsageError(RuntimeError):
    """A user error to print as one line."""


def _cmd_import_dac(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_dac_pth, save_model

    model = load_dac_pth(args.weights)
    out = Path(args.out)
    if out.suffix != ".safetensors":
        out = out.with_suffix(out.suffix + ".safetensors") if out.suffix else out.with_suffix(".safetensors")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists (use --overwrite)")
    save_model(model, out, dtype=torch.float16 if args.fp16 else None, extra={"source": f"descript-audio-codec: {Path(args.weights).name}"})
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{out}: {n_params / 1e6:.1f}M parameters, {model.sample_rate} Hz, {model.n_codebooks} codebooks, "
          f"{model.bitrate() / 1000:.2f} kbps")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="rvqgan", description="Improved RVQGAN neural audio codec.")
    parser.add_argument("--version", action="version", version=f"rvqgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("import-dac", help="convert an official DAC .pth checkpoint to our safetensors format (no unpickling)")
    p.add_argument("weights", help="official DAC weights (.pth)")
    p.add_argument("out", help="output .safetensors file")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_import_dac)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, AudioError, CheckpointError, ConfigError, ValueError, OSError) as exc:
        print(f"rvqgan {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"rvqgan {args.command}: interrupted", file=sys.stderr)
        return 130
