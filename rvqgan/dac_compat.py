"""Interoperability with descript-audio-codec (DAC) 1.0.0: its `.dac` code files and its `.pth` weights.

Both are pickles; neither is unpickled freely. `.dac` files (`np.save` of a pickled dict) go
through a restricted unpickler that admits only numpy arrays, dtypes and scalars in plain
containers (`read_dac_file`). Official `.pth` checkpoints are read with
`torch.load(weights_only=True)`, which admits only tensors and plain containers
(`read_dac_pth`). `decode_dac_file` decodes a `.dac` file the way the reference's
`decompress` does.
"""

from __future__ import annotations

import ast
import copy
import importlib
import io
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from .audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, loudness, resample, sample_range
from .bitstream import MAGIC, MAX_STREAM_BYTES, FormatError, read_exactly, read_limited
from .checkpoint import TRAINING_FORMAT, CheckpointError, build_from_state_dict, save_model
from .config import ConfigError, ModelConfig, from_dict
from .model import Codec
from .streaming import StreamingDecoder

# -- .dac code files --------------------------------------------------------------------------------

DAC_MAGIC = b"\x93NUMPY"  # a .dac file is an `np.save`d array


def sniff_code_file(head: bytes) -> str | None:
    """Which code file starts with `head` (6 bytes are enough): "rvq", "dac", or None for anything else."""
    if head.startswith(MAGIC):
        return "rvq"
    return "dac" if head.startswith(DAC_MAGIC) else None


def read_code_stream(stream: BinaryIO, name: str = "<stdin>") -> BinaryIO:
    """A stream of one code file (standard input) as an in-memory file named `name`.

    It must start like a code file (`sniff_code_file`), so anything else is refused before it is
    read, and is read up to `bitstream.MAX_STREAM_BYTES`.
    """
    head = stream.read(len(DAC_MAGIC))
    if not head:
        raise FormatError("no input")
    if sniff_code_file(head) is None:
        raise FormatError("not an .rvq or .dac code file (bad magic number)")
    data = io.BytesIO(head + read_limited(stream, MAX_STREAM_BYTES - len(head), "the stream"))
    data.name = name
    return data


@dataclass
class DacFile:
    """Contents of a reference-implementation `.dac` file.

    Attributes:
        codes: `[B·C, N, frames]` int64.
        input_db: per-item input loudness (LUFS), `[B·C]` float32, or None.
        original_length, sample_rate (the original input's), chunk_length (frames per chunk),
        channels, padding (whether the file was coded with padded convolutions), dac_version.
    """

    codes: np.ndarray
    input_db: np.ndarray | None
    original_length: int
    sample_rate: int
    chunk_length: int
    channels: int
    padding: bool
    dac_version: str = "1.0.0"


_NUMPY_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def _restricted_unpickle(data: bytes) -> Any:
    """Unpickle only numpy arrays, dtypes, scalars and plain containers; refuse anything else."""

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _NUMPY_GLOBALS:
                return getattr(importlib.import_module(module), name)
            raise FormatError(f"refused: the file asks to run {module}.{name} (only numpy arrays are allowed)")

    try:
        return _Unpickler(io.BytesIO(data)).load()
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"not a readable .dac file ({type(exc).__name__})") from None


def read_dac_file(f: BinaryIO) -> DacFile:
    """Read a legacy `.dac` file (an `np.save`d pickled dict) without executing arbitrary code."""
    magic = f.read(len(DAC_MAGIC))
    if magic != DAC_MAGIC:
        raise FormatError("not a .dac file (no numpy magic)")
    major = read_exactly(f, 2, "npy header")[0]
    if major == 1:
        (hlen,) = struct.unpack("<H", read_exactly(f, 2, "npy header"))
    else:
        (hlen,) = struct.unpack("<I", read_exactly(f, 4, "npy header"))
    try:
        npy_header = ast.literal_eval(read_exactly(f, hlen, "npy header").decode("latin1"))
    except (ValueError, SyntaxError):
        raise FormatError("not a .dac file (bad npy header)") from None
    if not isinstance(npy_header, dict) or npy_header.get("descr") != "|O" or npy_header.get("shape") != ():
        raise FormatError("not a .dac file (expected a pickled dict)")
    obj = _restricted_unpickle(f.read())
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj[()]
    if not isinstance(obj, dict) or "codes" not in obj or "metadata" not in obj:
        raise FormatError("not a .dac file (missing codes or metadata)")
    meta = obj["metadata"]
    codes = obj["codes"]
    if not isinstance(codes, np.ndarray) or codes.ndim != 3 or codes.dtype.kind not in "ui":
        raise FormatError(".dac codes must be an integer array [items, codebooks, frames]")
    if min(codes.shape) == 0:
        raise FormatError(f".dac codes are empty (shape {list(codes.shape)})")
    if codes.min() < 0:
        raise FormatError(".dac codes must not be negative")
    if not isinstance(meta, dict):
        raise FormatError(f".dac metadata must be a dict, got {type(meta).__name__}")
    if meta.get("dac_version") != "1.0.0":
        version = meta.get("dac_version")
        raise FormatError(
            f".dac version {version if isinstance(version, str) else type(version).__name__!r:.40} is not supported (only 1.0.0)"
        )
    channels = _meta_int(meta, "channels", 1, MAX_DAC_CHANNELS)
    if codes.shape[0] % channels:
        raise FormatError(f".dac codes hold {codes.shape[0]} items, not a multiple of its {channels} channels")
    padding = meta.get("padding")
    if not isinstance(padding, (bool, np.bool_)):
        raise FormatError(f".dac metadata 'padding' must be true or false, got {type(padding).__name__}")
    return DacFile(
        codes=codes.astype(np.int64),
        input_db=_input_db(meta.get("input_db"), codes.shape[0]),
        original_length=_meta_int(meta, "original_length", 1, MAX_DAC_LENGTH),
        sample_rate=_meta_int(meta, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
        chunk_length=_meta_int(meta, "chunk_length", 1, MAX_DAC_LENGTH),
        channels=channels,
        padding=bool(padding),
        dac_version="1.0.0",
    )


MAX_DAC_CHANNELS = 256
MAX_DAC_LENGTH = 2**40
# An unpadded chunk is decoded in one pass (as the reference does): its length bounds the memory.
MAX_UNPADDED_CHUNK_SECONDS = 60


def _meta_int(meta: dict[str, Any], key: str, low: int, high: int) -> int:
    """`meta[key]` as an int in [low, high] (a Python or numpy integer, or a 1-element integer array)."""
    value = meta.get(key)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "ui":
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise FormatError(f".dac metadata {key!r} must be an integer, got {type(value).__name__}")
    if not low <= int(value) <= high:
        raise FormatError(f".dac metadata {key!r} = {int(value)} is out of range [{low}, {high}]")
    return int(value)


def _input_db(value: Any, items: int) -> np.ndarray | None:
    """The stored input loudness: None, a number, or a small numeric array of at most `items` finite values.

    Anything else (nested or shared lists, objects) is refused without being traversed.
    """
    if value is None:
        return None
    if isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_)):
        array = np.array([value], dtype=np.float64)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and 1 <= value.size <= items:
        array = value.astype(np.float64).reshape(-1)
    elif (
        isinstance(value, (list, tuple))
        and 1 <= len(value) <= items
        and all(isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value)
    ):
        array = np.array(value, dtype=np.float64)
    else:
        raise FormatError(f".dac metadata 'input_db' must be up to {items} numbers, got {type(value).__name__}")
    if not np.isfinite(array).all() or np.abs(array).max() > 200:
        raise FormatError(".dac metadata 'input_db' must be finite loudness values in LUFS")
    return array.astype(np.float32)


def _unpadded(model: Codec) -> Codec:
    """A copy of `model` whose convolutions run without padding, as the reference's chunked coding does."""
    clone = copy.deepcopy(model)
    for layer in clone.modules():
        if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d)):
            layer.padding = (0,)
            if isinstance(layer, nn.ConvTranspose1d):
                layer.output_padding = (0,)
    return clone


@torch.no_grad()
def decode_dac_file(model: Codec, dac: DacFile) -> tuple[np.ndarray, int]:
    """Decode a legacy `DacFile` as descript-audio-codec 1.0.0's `decompress` does → (`[C, T]`, sample rate).

    The first item of the file is returned (the reference CLI writes one item per file).

    Chunks of `chunk_length` frames are decoded independently (with unpadded convolutions
    when the file says so), concatenated, brought back to the stored input loudness,
    resampled to the original rate and trimmed to the original length.
    """
    if dac.codes.shape[1] > model.n_codebooks or dac.codes.max(initial=0) >= model.codebook_size:
        raise ValueError("the .dac file's codes do not fit this model (wrong model?)")
    decoded = dac.codes.shape[-1] * model.hop_length
    if dac.original_length > (decoded + model.hop_length) * dac.sample_rate / model.sample_rate:
        raise FormatError(
            f".dac metadata claims {dac.original_length} samples, but its {dac.codes.shape[-1]} frames decode "
            f"to at most {decoded} at {model.sample_rate} Hz"
        )
    codes = torch.from_numpy(dac.codes[: dac.channels])  # the first item: the only one returned
    if dac.padding:  # each chunk is a padded decode of its own: stream it, in bounded memory
        pieces = []
        for i in range(0, codes.shape[-1], dac.chunk_length):
            decoder = StreamingDecoder(model, max(1, int(5 * model.frame_rate)))
            pieces += [decoder.push(codes[..., i : i + dac.chunk_length]), decoder.flush()]
    else:
        if dac.chunk_length * model.hop_length > MAX_UNPADDED_CHUNK_SECONDS * model.sample_rate:
            raise FormatError(f".dac chunk_length {dac.chunk_length} frames is longer than {MAX_UNPADDED_CHUNK_SECONDS} s")
        net = _unpadded(model)
        pieces = [  # the network's own output length (unpadded convolutions shorten it), as the reference's
            net.decode_latents(net.codes_to_latents(codes[..., i : i + dac.chunk_length]), whole_frames=False)
            for i in range(0, codes.shape[-1], dac.chunk_length)
        ]
    audio = torch.cat(pieces, -1)[:, 0].numpy().astype(np.float64)  # [C, T]
    if not np.isfinite(audio).all():
        raise ValueError("the model produced NaN or infinite samples (are its weights damaged?)")
    if dac.input_db is not None:
        for i in range(audio.shape[0]):
            gain_db = float(dac.input_db[i % len(dac.input_db)]) - loudness(audio[i][None], model.sample_rate)
            audio[i] *= 10 ** (gain_db / 20)
    audio = resample(audio.astype(np.float32), model.sample_rate, dac.sample_rate)[:, : dac.original_length]
    if audio.shape[-1] < dac.original_length:
        audio = np.pad(audio, ((0, 0), (0, dac.original_length - audio.shape[-1])))
    return audio.reshape(-1, dac.channels, dac.original_length)[0], dac.sample_rate


def decompress_dac(
    source: BinaryIO, model: Codec | Callable[[], Codec], *, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int]:
    """Read a `.dac` file and decode it (`read_dac_file`, `decode_dac_file`) → (`[C, T]`, sample rate).

    `model` may be a function that loads it: it is called only once the file has been read,
    so a file that is not a `.dac` is reported before any model is loaded. `start`/`end`
    (seconds) cut the decoded audio to that range; the whole file is decoded.
    """
    dac = read_dac_file(source)
    a, b = sample_range(start, end, dac.original_length, dac.sample_rate)
    audio, sample_rate = decode_dac_file(model if isinstance(model, Codec) else model(), dac)
    return audio[:, a:b], sample_rate


# -- .pth weights -----------------------------------------------------------------------------------


def read_dac_pth(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Read an official DAC checkpoint (`{"state_dict", "metadata": {"kwargs"}}`) without unpickling objects."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: refused: the file holds Python objects other than tensors and plain values ({first[:120]})"
        ) from None
    except Exception as exc:  # RuntimeError, EOFError, zipfile errors on truncated/non-torch files
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
        ) from None
    if isinstance(data, dict) and data.get("format") == TRAINING_FORMAT:
        raise CheckpointError(f"{path}: an rvqgan training checkpoint, not a model: `rvqgan export` it to a .safetensors model")
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a DAC checkpoint (expected a dict with a 'state_dict' dict and 'metadata')")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict) or not isinstance(metadata.get("kwargs", {}), dict):
        raise CheckpointError(f"{path}: not a DAC checkpoint ('metadata' and its 'kwargs' must be dicts)")
    kwargs: dict[str, Any] = dict(metadata.get("kwargs", {}))
    allowed = {f.name for f in fields(ModelConfig)}
    cfg = {k: v for k, v in kwargs.items() if k in allowed and k not in ("quantizer_dropout", "output_padding")}
    cfg["output_padding"] = False  # decode as the reference does (its stride-5 decoder emits 8 samples less; files pad)
    # The released files store quantizer_dropout as the bool default False; keep ours unless it is a real fraction.
    qd = kwargs.get("quantizer_dropout")
    if isinstance(qd, float) and not isinstance(qd, bool):
        cfg["quantizer_dropout"] = qd
    try:
        config = from_dict(ModelConfig, cfg, "model")
    except (ConfigError, RecursionError) as exc:
        raise CheckpointError(f"{path}: bad model kwargs in metadata: {exc}") from None
    state = {}
    for k, v in data["state_dict"].items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict entry {str(k)[:80]!r} is not a named tensor")
        state[legacy_weight_norm_name(k)] = v
    return config, state


def legacy_weight_norm_name(name: str) -> str:
    """Newer torch weight-norm parametrisation names (`parametrizations.weight.original0/1`) → the
    legacy `weight_g` / `weight_v` the model and the released checkpoints use."""
    return name.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")


def load_dac_pth(path: str | Path, device: str | torch.device = "cpu") -> Codec:
    """An official DAC `.pth` checkpoint as a `Codec` (strict: no missing or extra keys)."""
    config, state = read_dac_pth(path)
    return build_from_state_dict(config, state, Path(path), device)


def import_dac(weights: str | Path, out: str | Path, *, fp16: bool = False, overwrite: bool = False) -> str:
    """Convert official DAC `.pth` weights to our `.safetensors` (`out` gets that suffix); a one-line summary.

    Raises ValueError when `out` exists and `overwrite` is not set.
    """
    model = load_dac_pth(weights)
    target = Path(out)
    if target.suffix != ".safetensors":
        target = target.with_suffix(target.suffix + ".safetensors") if target.suffix else target.with_suffix(".safetensors")
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists (use --overwrite)")
    extra = {"source": f"descript-audio-codec: {Path(weights).name}"}
    save_model(model, target, dtype=torch.float16 if fp16 else None, extra=extra)
    n_params = sum(p.numel() for p in model.parameters())
    return (
        f"{target}: {n_params / 1e6:.1f}M parameters, {model.sample_rate} Hz, {model.n_codebooks} codebooks, "
        f"{model.bitrate() / 1000:.2f} kbps"
    )
