"""Shared fixtures: paths to ../shared, skip marks for when it is missing, a tiny model, synthetic audio.

The reference fixtures in ../shared/fixtures/dac-reference (weights, expected tensors, a
`.dac` file and its decoding) were made with descript-audio-codec 1.0.0 by
../shared/fixtures/dac-reference/make_reference_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import rvqgan
from rvqgan.bitstream import Header, Writer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "dac-reference"
DATA = SHARED / "data"

needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(),
    reason=f"reference fixtures not found at {FIXTURES} (made by make_reference_fixtures.py in that folder)",
)
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"audio data not found at {DATA}")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def _home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rvqgan_home")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, _home):
    """Every test sees the same environment wherever it runs: a fresh cache folder of the session's own
    (not ~/.cache/rvqgan, which may hold another checkout's files), no HTTP proxy (loopback servers are
    reached directly), and the thread count it started with (the trainer and evaluator set theirs)."""
    monkeypatch.setenv("RVQGAN_HOME", str(_home))
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class Pwn:
    """A pickle payload: unpickling it runs `touch MARKER` (so a test can see whether it ran)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@torch.no_grad()
def output_dc(model: rvqgan.Codec, audio: torch.Tensor) -> float:
    """The constant offset a round trip adds: mean of `decode(encode(audio)) − audio`, `audio` `[1, 1, T]`."""
    return float((model.decode(model.encode(audio))[..., : audio.shape[-1]] - audio).mean())


@pytest.fixture
def tiny_model() -> rvqgan.Codec:
    return rvqgan.build_model("tiny")


def synth(n: int, sample_rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Sines plus noise, `[1, 1, n]`."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / sample_rate
    x = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.1 * torch.sin(2 * torch.pi * 1770 * t) + 0.05 * torch.randn(n, generator=g)
    return x.view(1, 1, n)


def narrow(name: str) -> rvqgan.Codec:
    """A cheap model with the strides (and so the length arithmetic and receptive field) of a preset."""
    cfg = rvqgan.preset(name)
    small = rvqgan.ModelConfig(
        **{**cfg.to_dict(), "encoder_dim": 4, "decoder_dim": 16 * 2 ** len(cfg.decoder_rates), "latent_dim": 16}
    )
    torch.manual_seed(0)
    return rvqgan.Codec(small).eval()


def write_rvq_unchecked(header: Header, codes: np.ndarray, monkeypatch: pytest.MonkeyPatch, **changes: object) -> bytes:
    """An `.rvq` file of `codes` written as `header` says, but stored under `header` with `changes`
    (values the writer would refuse: hostile files for the reader's checks)."""
    import dataclasses
    import io

    with monkeypatch.context() as m:
        m.setattr(Header, "check", lambda self: None)
        stored = dataclasses.replace(header, **changes).to_bytes()
        m.setattr(Header, "to_bytes", lambda self: stored)
        buf = io.BytesIO()
        writer = Writer(buf, header)
        writer.write(codes)
        writer.close()
    return buf.getvalue()


def write_dac(path, codes=None, **meta):
    """A `.dac` file (path or binary file) as the reference writes it (`np.save` of a pickled dict), with `meta`
    overriding its metadata."""
    metadata = {
        "input_db": np.array([-20.0], np.float32),
        "original_length": 16000,
        "sample_rate": 16000,
        "chunk_length": 72,
        "channels": 1,
        "padding": True,
        "dac_version": "1.0.0",
        **meta,
    }
    codes = np.zeros((1, 2, 50), np.uint16) if codes is None else codes
    if hasattr(path, "write"):
        np.save(path, {"codes": codes, "metadata": metadata}, allow_pickle=True)
        return path
    with open(path, "wb") as f:
        np.save(f, {"codes": codes, "metadata": metadata}, allow_pickle=True)
    return path


def check_backend_like_torch(torch_model: rvqgan.Codec, other: rvqgan.Codec, tmp_path: Path) -> None:
    """`other` (a backend of `torch_model`) writes the same codes as torch in the chunked file pipeline
    (chunk seams need the right context), decodes them within 16-bit rounding, and streams within 1e-4."""
    import soundfile as sf

    from rvqgan.bitstream import Reader
    from rvqgan.files import compress_file, decompress_file
    from rvqgan.streaming import StreamingDecoder

    audio = 0.3 * synth(torch_model.sample_rate * 2, torch_model.sample_rate)[0, 0].numpy()
    sf.write(tmp_path / "a.wav", audio, torch_model.sample_rate, subtype="FLOAT")
    for name, model in (("torch", torch_model), ("other", other)):
        with open(tmp_path / f"{name}.rvq", "wb") as f:
            compress_file(model, str(tmp_path / "a.wav"), f, chunk_seconds=0.5)
        with open(tmp_path / f"{name}.rvq", "rb") as f:
            decompress_file(model, Reader(f), str(tmp_path / f"{name}.wav"), chunk_seconds=0.5)
    with open(tmp_path / "torch.rvq", "rb") as a, open(tmp_path / "other.rvq", "rb") as b:
        assert np.array_equal(Reader(a).read_all(), Reader(b).read_all())
    with open(tmp_path / "other.rvq", "rb") as f:  # the header names the same weights: torch decodes it
        decompress_file(torch_model, Reader(f), str(tmp_path / "crossed.wav"), chunk_seconds=0.5)
    x, y = sf.read(tmp_path / "other.wav")[0], sf.read(tmp_path / "torch.wav")[0]
    assert len(x) == len(audio) and np.abs(x - y).max() <= 2 / 32768  # 16-bit outputs
    assert np.abs(sf.read(tmp_path / "crossed.wav")[0] - y).max() <= 2 / 32768
    with torch.no_grad():
        codes = torch_model.encode(torch.from_numpy(audio.astype(np.float32))[None, None])
        decoder = StreamingDecoder(other, chunk_frames=7)
        chunks = [decoder.push(codes[..., i : i + 5]) for i in range(0, codes.shape[-1], 5)]
        streamed = torch.cat(chunks + [decoder.flush()], -1)
        assert (streamed - torch_model.decode(codes)).abs().max() < 1e-4
