"""The `onnxruntime` backend, and the ONNX export it runs.

`export_onnx` writes four graphs of a model (weight norm folded, fp32, dynamic batch and length):

- `encoder.onnx`: audio `[B, 1, T]` → encoder features `[B, D, T / hop]`;
- `decoder.onnx`: quantised latent `[B, D, F]` → audio `[B, 1, F · hop]`;
- `encode.onnx`: audio `[B, 1, T]` (T a multiple of the hop) → codes `[B, N, T / hop]` (int64, all codebooks);
- `decode.onnx`: codes `[B, N, F]` (all codebooks) → audio `[B, 1, F · hop]`;

and `rvqgan.json` (the model config, its weights id and the opset). The last two need nothing
but ONNX Runtime (see the README); the first two are what the backend runs.

`with_onnxruntime(model)` returns the model with its encoder and decoder replaced by ONNX
Runtime sessions of those graphs. Everything else (quantiser, chunk context, file pipeline,
streaming coders, tokenize) is the same code, so a backend is chosen in one place
(`load_model(..., backend="onnxruntime")`, `--backend onnxruntime`) and used everywhere.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
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
    info = {"config": net.config.to_dict(), "weights_id": model.weights_id(), "opset": opset, "hop_length": hop}
    (out_dir / "rvqgan.json").write_text(json.dumps(info, indent=1))
    return out_dir


class OrtGraph(nn.Module):
    """An ONNX Runtime session in the place of an `nn.Module` of one input and one output (fp32, CPU).

    `like` is the torch module the graph was exported from, kept on the meta device (shapes
    only) so that what is read from a module's structure stays true: `streaming.conv_geometry`
    walks its convolutions to find the context a chunk needs. It never runs. An `OrtGraph` is for
    inference only: it cannot train, change dtype or device, or give a state dict to save.
    """

    def __init__(self, path: Path, like: nn.Module, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort  # optional: onnx extra

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # leave the cores to others between calls
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
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
    `cache_dir/KEY` (default `model_dir()/onnx`); an export is written to a temporary folder and
    renamed into place, so concurrent processes never read a half-written graph.
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
    weights = model.weights_id()
    key = hashlib.sha256(
        json.dumps([model.config.to_dict(), weights, OPSET, torch.__version__, __version__]).encode()
    ).hexdigest()[:16]
    folder = Path(cache_dir if cache_dir is not None else _cache_root()) / key
    info = folder / "rvqgan.json"
    if not info.exists() or json.loads(info.read_text()).get("weights_id") != weights:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
        try:
            export_onnx(model, tmp)
            try:
                os.replace(tmp, folder)
            except OSError:  # another process put it there first
                pass
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    runtime = copy.deepcopy(model).eval()
    runtime.encoder = OrtGraph(folder / "encoder.onnx", runtime.encoder, threads)  # type: ignore[assignment]
    runtime.decoder = OrtGraph(folder / "decoder.onnx", runtime.decoder, threads)  # type: ignore[assignment]
    runtime.set_weights_digest(model.weights_digest())
    return runtime


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
