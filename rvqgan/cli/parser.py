"""The grammar of `rvqgan`: one parser function per command, on a parent parser of the options
that the commands running a model share; choices come from the modules that own them."""

from __future__ import annotations

import argparse

from ..audio import OUTPUT_FORMATS
from ..backends import BACKENDS, backends_help
from ..baselines import help_text as baseline_help
from ..config import recipe_names
from ..loading import model_names
from ..precision import INFERENCE_PRECISIONS
from ..train import EXPORT_FORMATS
from ..version import __version__
from . import commands as c

MODEL_HELP = (
    f"a model name ({', '.join(model_names())}: releases are downloaded once, presets need imported weights); "
    "hf:ORG/NAME[@REV]; a transformers DacModel folder; or a .safetensors/.pth file (default: default)"
)


def build_parser() -> argparse.ArgumentParser:
    """The `rvqgan` parser: one sub-parser per command; those that run a model on files share `_model_options`."""
    parser = argparse.ArgumentParser(prog="rvqgan", description="Improved RVQGAN neural audio codec.")
    parser.add_argument("--version", action="version", version=f"rvqgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    shared = _model_options()
    _encode_parser(sub, shared)
    _decode_parser(sub, shared)
    _info_parser(sub)
    _eval_parser(sub)
    _listen_parser(sub)
    _tokenize_parser(sub, shared)
    _import_dac_parser(sub)
    _train_parser(sub)
    _export_parser(sub)
    return parser


Subparsers = argparse._SubParsersAction


def _model_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("running the model")
    group.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        default="auto",
        help="auto (default: what `rvqgan info` shows it picks on this machine), fp32, or bf16 (faster only where bf16 is native)",
    )
    group.add_argument("--backend", choices=BACKENDS, default="torch", help=backends_help())
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no line per file")
    return parent


def _encode_parser(sub: Subparsers, shared: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "encode",
        parents=[shared],
        help="compress audio files to .rvq code files",
        description="Compress audio files, folders (recursively, keeping the tree) or globs to .rvq files. "
        "Audio at any rate is resampled to the model's; channels are coded independently. "
        "Loudness is left as it is unless --normalize-db is given, in which case the audio is coded "
        "at that loudness and the original level is restored on decode.",
    )
    p.add_argument("inputs", nargs="+", help="audio files, folders or globs; - for stdin")
    p.add_argument("-o", "--output", help="output file (one input) or folder; - for stdout; default: beside the input")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument(
        "--kbps",
        type=float,
        help="highest bitrate of each file's codes, all its channels together (a stereo file gets half per channel); "
        "uses as many codebooks as fit",
    )
    p.add_argument("--n-codebooks", type=int, help="number of codebooks to use (default: all)")
    p.add_argument(
        "--normalize-db",
        type=float,
        metavar="LUFS",
        help="code at this loudness (e.g. -16) and restore the original level on decode (default: off)",
    )
    p.add_argument(
        "--chunk-seconds", type=float, default=10.0, help="audio per forward pass; bounds memory, never changes the codes"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.set_defaults(func=c.cmd_encode)


def _decode_parser(sub: Subparsers, shared: argparse.ArgumentParser) -> None:
    p = sub.add_parser("decode", parents=[shared], help="decode .rvq code files to audio (original rate, channels and length)")
    p.add_argument("inputs", nargs="+", help=".rvq or .dac files, folders or globs; - for stdin")
    p.add_argument("-o", "--output", help="output file (one input) or folder; - for stdout (WAV)")
    p.add_argument("--model", help="model to decode with (default: the one named in the file)")
    p.add_argument("--format", default=".wav", choices=list(OUTPUT_FORMATS), help="output format for folder outputs")
    p.add_argument("--start", type=float, help="decode from this time (s), reading only the chunks needed")
    p.add_argument("--end", type=float, help="decode up to this time (s)")
    p.add_argument(
        "--allow-other-weights",
        action="store_true",
        help="decode even if the file was made by other trained weights of the same architecture (garbage, usually)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.set_defaults(func=c.cmd_decode)


def _info_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "info",
        help="describe .rvq files (model, duration, true bitrate, codebooks); without files, this machine and installation",
    )
    p.add_argument("files", nargs="*")
    p.set_defaults(func=c.cmd_info)


def _eval_parser(sub: Subparsers) -> None:
    p = sub.add_parser("eval", help="score a model (and baselines) on a folder of audio; writes CSV/JSON and an HTML report")
    p.add_argument("--model", help="model to evaluate (default: default)")
    p.add_argument("--data", required=True, help="folder of audio; its sub-folders are the groups (e.g. speech, music, general)")
    p.add_argument("--n-codebooks", help="codebook counts to evaluate, e.g. 1,2,4,9 (default: all)")
    p.add_argument("--baseline", action="append", help=baseline_help())
    p.add_argument("--seconds", type=float, default=10.0, help="excerpt length per file (default 10)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (much faster)")
    p.add_argument("--no-pitch", action="store_true", help="skip the pitch metrics (F0 error, voicing error)")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.set_defaults(func=c.cmd_eval)


def _listen_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "listen",
        help="prepare a MUSHRA listening test (one static page + audio), or analyse its results",
        description="Prepare: rvqgan listen --model M [--kbps 3,7.5] --baseline opus:8 --data FOLDER -o OUT_DIR. "
        "Analyse: rvqgan listen --analyze OUT_DIR results/*.json",
    )
    p.add_argument("results", nargs="*", help="with --analyze: the results files (JSON) the listeners downloaded")
    p.add_argument("--model", action="append", help="model to test (repeatable; default: default)")
    p.add_argument("--kbps", help="bitrates at which to test each model, e.g. 3,7.5 (default: all codebooks)")
    p.add_argument("--baseline", action="append", help=baseline_help())
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
    p.set_defaults(func=c.cmd_listen)


def _tokenize_parser(sub: Subparsers, shared: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tokenize",
        parents=[shared],
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
    p.set_defaults(func=c.cmd_tokenize)


def _import_dac_parser(sub: Subparsers) -> None:
    p = sub.add_parser("import-dac", help="convert an official DAC .pth checkpoint to our safetensors format (no unpickling)")
    p.add_argument("weights", help="official DAC weights (.pth)")
    p.add_argument("out", help="output .safetensors file")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=c.cmd_import_dac)


def _train_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a codec from a recipe",
        description="Train from a recipe: a shipped one by name or a YAML file. Data folders are given with --data: "
        "a corpus root with one folder per group of the recipe (speech/, music/, general/ for the shipped recipes), "
        "any folder of audio (one group), or GROUP=DIR.",
    )
    p.add_argument("--config", required=True, help=f"recipe: {', '.join(recipe_names())}, or a YAML file")
    p.add_argument(
        "--data", action="append", metavar="[GROUP=]DIR", help="training audio (repeatable); replaces the recipe's folders"
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. --set steps=1000 (repeatable)"
    )
    p.add_argument(
        "--init",
        metavar="SOURCE",
        help="fine-tune: start from this trained model (default, a release name, hf:REPO, a DacModel folder, a .safetensors "
        "or DAC .pth file, or a training checkpoint .pt); the architecture is the source's",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoints/latest.pt exactly")
    p.set_defaults(func=c.cmd_train)


def _export_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "export",
        help="write the generator of a training checkpoint as inference weights (.safetensors), or any model as a "
        "transformers DacModel folder (--format hf) or ONNX graphs (--format onnx)",
    )
    p.add_argument(
        "checkpoint", help="training checkpoint (e.g. runs/x/checkpoints/best.pt); with --format hf or onnx also any model"
    )
    p.add_argument("out", help="output .safetensors file, or folder with --format hf or onnx")
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="safetensors",
        help="safetensors (ours); hf: a folder that transformers.DacModel.from_pretrained loads; "
        "onnx: encoder/decoder and end-to-end encode/decode graphs (opset 17)",
    )
    p.add_argument("--fp16", action="store_true", help="store weights as float16")
    p.add_argument(
        "--remove-dc", metavar="FOLDER", help="measure the decoder's DC offset on audio in FOLDER (training audio) and remove it"
    )
    p.set_defaults(func=c.cmd_export)
