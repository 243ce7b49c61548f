"""The `onnxruntime` backend, and the ONNX export it runs.

`export_onnx` writes four graphs of a model (weight norm folded, fp32, dynamic batch and length):

- `encoder.onnx`: audio `[B, 1, T]` → encoder features `[B, D, T / hop]`;
- `decoder.onnx`: quantised latent `[B, D, F]` → audio `[B, 1, F · hop]`;
- `encode.onnx`: audio `[B, 1, T]` (T a multiple of the hop) → codes `[B, N, T / hop]` (int64, all codebooks);
- `decode.onnx`: codes `[B, N, F]` (all codebooks) → audio `[B, 1, F · hop]`;

and `rvqgan.json` (the model config, its weights id and origin (`Codec.provenance`), the opset, and
the size and SHA-256 of each graph). Each graph carries the weights id and the origin in its
metadata too (`rvqgan_weights_id`, `rvqgan_finetuned_from`, ...: ONNX Runtime's
`get_modelmeta().custom_metadata_map`), so a graph copied on its own still names its weights. The last two need nothing but ONNX Runtime (see the README); the first two are what the
backend runs.

`with_onnxruntime(model)` returns the model with its encoder and decoder replaced by ONNX
Runtime sessions of those graphs. Everything else (quantiser, chunk context, file pipeline,
streaming coders, tokenize) is the same code, so a backend is chosen in one place
(`load_model(..., backend="onnxruntime")`, `--backend onnxruntime`) and used everywhere. The
graphs are exported once into a cache, and checked against their record every time they are
used: a cache folder is a file system's content, which anything may have changed since.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model import Codec
from ..paths import model_dir
from ..version import __version__
from .base import Backend, BackendError

OPSET = 17
GRAPHS = ("encoder.onnx", "decoder.onnx", "encode.onnx", "decode.onnx")
RUNTIME_GRAPHS = ("encoder.onnx", "decoder.onnx")  # what the backend runs
MAX_GRAPH_BYTES = 2 << 30  # protobuf's own limit on a graph in one file
MAX_RECORD_BYTES = 1 << 20


class _Encode(nn.Module):
    def __init__(self, model: Codec):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.quantize(self.model.encoder(audio)).codes


class _Decode(nn.Module):
    def __init__(self, model: Codec):
        super().__init__()
        self.model = model

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode_latents(self.model.codes_to_latents(codes))  # frames × hop, padded as decode does


def export_onnx(model: Codec, out_dir: str | Path, opset: int = OPSET) -> Path:
    """Write the four graphs and `rvqgan.json` of `model` into `out_dir` (see the module docstring)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = model.folded().float().eval()
    hop, dim = net.hop_length, net.config.latent_dim
    assert dim is not None
    audio = torch.zeros(1, 1, hop * 8)
    z = torch.zeros(1, dim, 8)
    codes = torch.zeros(1, net.n_codebooks, 8, dtype=torch.long)
    graphs: list[tuple[str, nn.Module, torch.Tensor, str, str, dict[int, str]]] = [
        ("encoder.onnx", net.encoder, audio, "audio", "features", {0: "batch", 2: "samples"}),
        ("decoder.onnx", net.decoder, z, "latents", "audio", {0: "batch", 2: "frames"}),
        ("encode.onnx", _Encode(net), audio, "audio", "codes", {0: "batch", 2: "samples"}),
        ("decode.onnx", _Decode(net), codes, "codes", "audio", {0: "batch", 2: "frames"}),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic that is constant for padded convs
        for name, module, example, input_name, output_name, axes in graphs:
            out_axes = {0: "batch", 2: "frames" if output_name in ("features", "codes") else "samples"}
            torch.onnx.export(
                module,
                (example,),
                str(out_dir / name),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: axes, output_name: out_axes},
                opset_version=opset,
                dynamo=False,
            )
            _label(out_dir / name, {"weights_id": model.weights_id(), **model.provenance()})
    graph_record = {}
    for name in GRAPHS:
        data = (out_dir / name).read_bytes()
        graph_record[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    info = {
        "config": net.config.to_dict(),
        "weights_id": model.weights_id(),
        **model.provenance(),
        "opset": opset,
        "hop_length": hop,
        "graphs": graph_record,
    }
    (out_dir / "rvqgan.json").write_text(json.dumps(info, indent=1))
    return out_dir


def _label(path: Path, entries: dict[str, str]) -> None:
    """Write `entries` into the ONNX graph at `path` as metadata properties named `rvqgan_KEY`."""
    import onnx  # optional: onnx extra

    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {f"rvqgan_{k}": v for k, v in entries.items()})
    onnx.save(graph, str(path))


class OrtGraph(nn.Module):
    """An ONNX Runtime session in the place of an `nn.Module` of one input and one output (fp32, CPU).

    `like` is the torch module the graph was exported from, kept on the meta device (shapes
    only) so that what is read from a module's structure stays true: `streaming.conv_geometry`
    walks its convolutions to find the context a chunk needs. It never runs. An `OrtGraph` is for
    inference only: it cannot train, change dtype or device, or give a state dict to save.
    """

    def __init__(self, path: Path, like: nn.Module, threads: int | None = None, graph: bytes | None = None):
        """A session of the graph in `path`, or of `graph` (its bytes, read and checked by the caller; `path` then
        only names it). A graph ONNX Runtime cannot load is a `BackendError` naming `path`."""
        super().__init__()
        import onnxruntime as ort  # optional: onnx extra

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave the cores to others between calls
        try:
            self.session = ort.InferenceSession(
                graph if graph is not None else str(path), options, providers=["CPUExecutionProvider"]
            )
            self.input = self.session.get_inputs()[0].name
        except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception alone
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise BackendError(f"{path}: ONNX Runtime cannot load this graph ({type(exc).__name__}: {first})") from None
        self.like = copy.deepcopy(like).to("meta")
        self.register_buffer("_dtype", torch.zeros(0), persistent=False)  # lets callers ask the module for its dtype

    def parameters(self, recurse: bool = True):
        yield self._dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: x.detach().float().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    def train(self, mode: bool = True) -> OrtGraph:
        if mode:
            raise RuntimeError("an ONNX Runtime model is for inference only; train the torch model")
        return super().train(False)

    def _apply(self, fn: Any, recurse: bool = True) -> OrtGraph:
        probe = fn(torch.zeros(1))
        if probe.dtype != torch.float32 or probe.device.type != "cpu":
            raise RuntimeError("an ONNX Runtime model runs fp32 on the CPU (no bf16, no GPU); use the torch backend")
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("an ONNX Runtime model has no torch weights to save; save the torch model it came from")

    def __deepcopy__(self, memo: dict[int, Any]) -> OrtGraph:
        clone = OrtGraph.__new__(OrtGraph)
        nn.Module.__init__(clone)
        clone.session, clone.input = self.session, self.input  # the session is read-only: shared
        clone.like = copy.deepcopy(self.like, memo)
        clone.register_buffer("_dtype", torch.zeros(0), persistent=False)
        return clone


def _cache_root() -> Path:
    return model_dir() / "onnx"


def with_onnxruntime(model: Codec, cache_dir: str | Path | None = None, threads: int | None = None) -> Codec:
    """`model` (in eval mode) with its encoder and decoder run by ONNX Runtime on the CPU.

    The graphs are exported once per model, weights, opset and torch/rvqgan version into
    `cache_dir/KEY` (default `model_dir()/onnx`). Each use reads the graphs it runs and checks
    them against the record written at export (`rvqgan.json`: the model's weights id and config,
    each graph's size and SHA-256); a folder that does not match (another model's graphs, a
    truncated or swapped file, a damaged record) is exported again and replaced (`_export_to_cache`).
    """
    try:
        import onnx  # noqa: F401  (optional: onnx extra)
        import onnxruntime  # noqa: F401  (optional: onnx extra)
    except ImportError as exc:
        raise RuntimeError(
            f"the onnxruntime backend needs onnx and onnxruntime ({exc.name} is missing): pip install 'rvqgan[onnx]'"
        ) from None
    for p in model.parameters():
        BACKEND.check(p.device, p.dtype)
    key = hashlib.sha256(
        json.dumps([model.config.to_dict(), model.weights_id(), OPSET, torch.__version__, __version__]).encode()
    ).hexdigest()[:16]
    folder = Path(cache_dir if cache_dir is not None else _cache_root()) / key
    graphs = _cached_graphs(folder, model) or _export_to_cache(model, folder)
    runtime = copy.deepcopy(model).eval()
    runtime.encoder = OrtGraph(folder / "encoder.onnx", runtime.encoder, threads, graphs["encoder.onnx"])  # type: ignore[assignment]
    runtime.decoder = OrtGraph(folder / "decoder.onnx", runtime.decoder, threads, graphs["decoder.onnx"])  # type: ignore[assignment]
    runtime.set_weights_digest(model.weights_digest())
    return runtime


def _read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of `path` if it is a regular file of at most `limit` bytes; None for anything else or an error.

    The size is checked on the open file before anything is read, and the open does not wait
    on a FIFO, so neither a huge file nor a pipe in the cache can make a use slow or hang.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= limit else None


def _read_record(folder: Path) -> dict[str, Any] | None:
    """`folder`'s `rvqgan.json` if it is a record of the form `export_onnx` writes; None otherwise."""
    data = _read_regular(folder / "rvqgan.json", MAX_RECORD_BYTES)
    if data is None:
        return None
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    graphs = record.get("graphs") if isinstance(record, dict) else None
    if not isinstance(graphs, dict):
        return None
    for name in RUNTIME_GRAPHS:
        entry = graphs.get(name)
        if not (
            isinstance(entry, dict)
            and type(entry.get("size")) is int
            and 0 < entry["size"] <= MAX_GRAPH_BYTES
            and isinstance(entry.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        ):
            return None
    return record


def _cached_graphs(folder: Path, model: Codec) -> dict[str, bytes] | None:
    """The runtime graphs in `folder` (name → bytes) if its record names `model` and each graph is the one
    recorded (size first, then SHA-256); None if anything differs.

    No graph of `model` is larger than its float32 weights and a few MiB of structure, so a
    record claiming more is refused before its graph is read."""
    record = _read_record(folder)
    if (
        record is None
        or record.get("weights_id") != model.weights_id()
        or record.get("config") != json.loads(json.dumps(model.config.to_dict()))
    ):
        return None
    largest = 4 * sum(p.numel() for p in model.parameters()) + (16 << 20)
    graphs = {}
    for name in RUNTIME_GRAPHS:
        size, digest = record["graphs"][name]["size"], record["graphs"][name]["sha256"]
        if size > largest:
            return None
        data = _read_regular(folder / name, size)
        if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            return None
        graphs[name] = data
    return graphs


def _export_to_cache(model: Codec, folder: Path) -> dict[str, bytes]:
    """Export `model` into a new folder beside `folder`, put it in `folder`'s place, and return its runtime graphs.

    The graphs are read back from the new folder before it is moved, so what this process runs
    is what it exported, whatever other processes do to `folder` meanwhile.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        export_onnx(model, tmp)
        graphs = _cached_graphs(tmp, model)
        if graphs is None:
            raise BackendError(f"{tmp}: the graphs just exported do not match their record (is the disk full?)")
        _replace_folder(tmp, folder)
        return graphs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # still there only if it could not be moved into place


def _replace_folder(new: Path, target: Path) -> None:
    """Move the folder `new` to `target`, replacing whatever is there (a stale folder, a file, a link).

    `os.replace` cannot replace a folder that holds files, so what is there is first moved aside
    into a temporary folder and deleted from there: `target` is never half one export and half
    another. When another process replaces `target` at the same time, either export ends up
    there, and both are whole.
    """
    try:
        os.replace(new, target)  # nothing there yet
        return
    except OSError:
        pass
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
    try:
        try:
            os.replace(target, trash / "stale")
        except FileNotFoundError:  # another process moved it aside first
            pass
        except OSError as exc:
            warnings.warn(f"{target}: cannot replace this stale ONNX cache ({exc.strerror}); it is exported again on each use")
            return
        try:
            os.replace(new, target)
        except OSError:  # another process put its export there in between: as good as ours
            pass
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _wrap(model: Codec) -> Codec:
    try:
        return with_onnxruntime(model)
    except RuntimeError as exc:
        raise BackendError(str(exc)) from None


BACKEND = Backend(
    "onnxruntime",
    "ONNX Runtime sessions of exported graphs, fp32 on the CPU (needs the onnx extra)",
    _wrap,
    devices=("cpu",),
    dtypes=(torch.float32,),
    limits="the onnxruntime backend runs fp32 on the CPU (--precision fp32, --device cpu)",
)
