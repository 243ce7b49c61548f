"""ONNX export and an ONNX Runtime inference backend.

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
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .model import Codec

OPSET = 17
BACKENDS = ("torch", "onnxruntime")


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
        return self.model.decoder(self.model.codes_to_latents(codes))


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
    """An ONNX Runtime session in the place of an `nn.Module` of one input and one output (float32).

    `like` is the torch module the graph was exported from. It is kept as a submodule only so
    that what is read from a module's structure stays true: `streaming.conv_geometry` walks its
    convolutions to find the context a chunk needs. It never runs.
    """

    def __init__(self, path: Path, like: nn.Module, threads: int | None = None):
        super().__init__()
        self.like = like
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.register_buffer("_dtype", torch.zeros(0))  # lets callers ask the module for its dtype

    def parameters(self, recurse: bool = True):
        yield self._dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: x.detach().float().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    def __deepcopy__(self, memo: dict[int, Any]) -> OrtGraph:
        return self  # sessions are not copied; the graph is read-only


def with_onnxruntime(model: Codec, cache_dir: str | Path | None = None, threads: int | None = None) -> Codec:
    """`model` (in eval mode) with its encoder and decoder run by ONNX Runtime; the graphs are exported once
    per set of weights into `cache_dir` (default: a folder under the system's temporary directory)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise RuntimeError("the onnxruntime backend needs onnxruntime: pip install 'rvqgan[onnx]'") from None
    key = hashlib.sha256(json.dumps([model.config.to_dict(), model.weights_id(), OPSET]).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / f"rvqgan-onnx-{os.getuid()}" / key
    if not (folder / "rvqgan.json").exists():
        export_onnx(model, folder)
    runtime = copy.deepcopy(model).eval()
    runtime.encoder = OrtGraph(folder / "encoder.onnx", runtime.encoder, threads)  # type: ignore[assignment]
    runtime.decoder = OrtGraph(folder / "decoder.onnx", runtime.decoder, threads)  # type: ignore[assignment]
    runtime.set_weights_digest(model.weights_digest())
    return runtime
