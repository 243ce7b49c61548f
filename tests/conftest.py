"""Shared fixtures: the reference vectors, a tiny model, synthetic audio and recordings, the skip policy.

The reference vectors in tests/data/dac-reference (weights, expected tensors, a `.dac` file and
its decoding) were made with descript-audio-codec 1.0.0 by make_reference_fixtures.py in that
folder (tests/data/README.md says how). Everything else a test reads it writes itself, so a
fresh clone runs every test.

With RVQGAN_STRICT_SKIPS=1 (as CI runs) the session fails when a test is skipped for a reason
not in `ALLOWED_SKIPS`: a missing extra, browser or data file must not pass unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import rvqgan
from rvqgan.bitstream import Header, Writer

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "dac-reference"

# The only reasons a test may be skipped in a strict run: conditions of the platform that CI cannot
# change. A missing package, browser or file is not among them: CI installs and ships those.
ALLOWED_SKIPS = (
    "glibc malloc tuning is Linux-only",
    "this C library has no mallopt (not glibc)",
)
NO_CHROMIUM = "Debian's chromium is not installed (run.sh test installs it)"


class StrictSkips:
    """Counts skipped tests (and skipped modules) and fails the session when one was skipped for a
    reason not in `ALLOWED_SKIPS`; registered by `pytest_configure` when RVQGAN_STRICT_SKIPS=1."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []  # (node id, reason)

    @staticmethod
    def reason(report: pytest.CollectReport | pytest.TestReport) -> str:
        longrepr = report.longrepr
        text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return text.removeprefix("Skipped: ")

    def record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append((report.nodeid, self.reason(report)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.record(report)

    @property
    def disallowed(self) -> list[tuple[str, str]]:
        return [(node, reason) for node, reason in self.skipped if reason not in ALLOWED_SKIPS]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.disallowed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        write = terminalreporter.write_line
        write(f"RVQGAN_STRICT_SKIPS: {len(self.skipped)} skipped, {len(self.disallowed)} for a reason not allowed")
        for node, reason in self.disallowed:
            write(f"not allowed: {node}: {reason}", red=True)
        if self.disallowed:
            write(f"allowed skip reasons (tests/conftest.py ALLOWED_SKIPS): {list(ALLOWED_SKIPS)}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("RVQGAN_STRICT_SKIPS") == "1":
        config.pluginmanager.register(StrictSkips(), "rvqgan-strict-skips")


def chromium() -> str:
    """Debian's headless Chromium (for the HTML pages' tests), or a skip that a strict run fails on."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip(NO_CHROMIUM)
    return path


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
    reached directly), the thread count it started with (the trainer and evaluator set theirs), and
    `--precision auto` resolved as on a CPU without native bf16 (fp32), so outputs do not depend on the
    CPU; the tests of `auto` itself set the detection either way."""
    monkeypatch.setenv("RVQGAN_HOME", str(_home))
    monkeypatch.setenv("RVQGAN_NATIVE_BF16", "0")
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


def recording(kind: str, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A synthetic stand-in for a recording, float32 `[T]`, peak about 0.5.

    kind: "speech" (a voice-like harmonic source with a gliding pitch, shaped by two moving formants,
    in syllables with pauses), "music" (a sequence of three-note chords of harmonic tones) or
    "general" (bursts of coloured noise and clicks over a quiet floor). Pitch trackers find the
    pitch of the first two, loudness gates see their pauses and onsets.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    if kind == "speech":
        f0 = (110 + 40 * rng.random()) * (1 + 0.15 * np.sin(2 * np.pi * (0.5 + rng.random()) * t))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        formants = [
            (500 + 300 * np.sin(2 * np.pi * 1.3 * t + rng.random() * 6), 90.0),
            (1500 + 600 * np.sin(2 * np.pi * 0.9 * t), 120.0),
        ]
        x = np.zeros(n)
        for k in range(1, 40):
            fk = k * f0
            gain = sum(np.exp(-(((fk - fc) / bw) ** 2) / 2) for fc, bw in formants) + 0.05
            x += np.where(fk < sample_rate / 2, gain * np.sin(k * phase) / k, 0.0)
        syllables = np.clip(np.sin(2 * np.pi * (3.5 + rng.random()) * t + rng.random() * 6), 0, None) ** 0.5
        breath = np.convolve(rng.standard_normal(n), np.ones(3) / 3, mode="same")  # aspiration noise
        x = (x + 0.3 * breath) * syllables * (np.sin(2 * np.pi * 0.4 * t + 1.0) > -0.6) + 0.01 * rng.standard_normal(n)
    elif kind == "music":
        x = np.zeros(n)
        notes = 220 * 2 ** (rng.integers(-5, 8, size=(int(seconds * 2) + 1, 3)) / 12)
        for i, chord in enumerate(notes):
            start, stop = int(i * 0.5 * sample_rate), min(n, int((i + 1) * 0.5 * sample_rate))
            if start >= n:
                break
            tt = t[start:stop] - t[start]
            for f in chord:
                for k in range(1, 12):
                    if k * f < sample_rate / 2:
                        x[start:stop] += np.sin(2 * np.pi * k * f * tt) * np.exp(-3 * tt) * 0.6**k
        x = x + 0.03 * rng.standard_normal(n)
    elif kind == "general":
        x = 0.01 * rng.standard_normal(n)
        for _ in range(int(4 * seconds)):
            start = int(rng.integers(n))
            length = min(n - start, int(rng.uniform(0.02, 0.3) * sample_rate))
            burst = np.cumsum(rng.standard_normal(length)) * rng.uniform(0.001, 0.01) + rng.standard_normal(length)
            x[start : start + length] += burst * np.exp(-np.arange(length) / (0.3 * length + 1)) * rng.uniform(0.2, 1)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


# How each group's files are written: as a corpus comes, in several formats, rates and channel counts.
RECORDING_FORMATS = {"speech": (16000, 1, "flac"), "music": (44100, 2, "wav"), "general": (22050, 1, "wav")}


def write_recordings(folder: Path, files: int = 3, seconds: float = 4.0, seed: int = 0, groups=tuple(RECORDING_FORMATS)) -> Path:
    """`folder`/GROUP/GROUP-N.EXT: `files` synthetic recordings (`recording`) of each group, `seconds` long."""
    for group in groups:
        sample_rate, channels, ext = RECORDING_FORMATS[group]
        (folder / group).mkdir(parents=True, exist_ok=True)
        for i in range(files):
            mono = recording(group, seconds, sample_rate, seed=1000 * seed + 10 * list(RECORDING_FORMATS).index(group) + i)
            audio = mono if channels == 1 else np.stack([mono, np.roll(mono, 37) * 0.8], 1)
            sf.write(folder / group / f"{group}-{i}.{ext}", audio, sample_rate)
    return folder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus laid out like the real one: train/ and valid/ (other seeds), each with
    speech/, music/ and general/ of three 4-second recordings."""
    root = tmp_path_factory.mktemp("corpus")
    write_recordings(root / "train", seed=1)
    write_recordings(root / "valid", seed=2)
    return root


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


def modulated_tone(seconds: float, sample_rate: int = 44100, seed: int = 0) -> np.ndarray:
    """A 440 Hz tone under 3 Hz amplitude modulation, plus noise: `[T]` float32, for codec and metric tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (
        0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    ).astype(np.float32)


@contextlib.contextmanager
def within(seconds: int):
    """Fail with TimeoutError, rather than hang the suite, if the block runs longer than `seconds`
    (SIGALRM interrupts a blocking open of a FIFO too)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
