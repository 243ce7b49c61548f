"""Baseline systems for evaluations and listening tests: classical codecs and external commands.

A baseline is a `Baseline`: its name as reported, the family whose rate–quality curve it joins,
its nominal bitrate, and its round trip (mono `[T]` audio at a rate → decoded `[T']` audio at that
rate, and the coded size in bytes when known). Baselines are named on the command line by specs
such as `opus:6,8,12`, `mp3:32` or `cmd:NAME='prog {in} {out}'`: the text before the colon picks a
`Family` of the registry `FAMILIES`, which turns the text after it into baselines.

Adding a classical codec is one `register(...)` line at the end of this module; a codec PyAV can
write needs only its `AvCodec` description (container, encoder, frame size, sample rates).
"""

from __future__ import annotations

import functools
import io
import math
import os
import shlex
import subprocess
import tempfile
import typing
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio import load_audio, resample, save_audio

Roundtrip = Callable[[np.ndarray, int], tuple[np.ndarray, int | None]]
"""Mono `[T]` audio and its sample rate → (decoded `[T']` audio at that rate, coded bytes or None if unknown)."""


@dataclass(frozen=True)
class Baseline:
    """One baseline system.

    `name` is the system in reports ("opus 8"); `family` groups systems on one rate–quality curve (the
    codec; a command is a family of its own); `kbps` is the nominal bitrate (None when unknown);
    `roundtrip` codes and decodes audio (see `Roundtrip`). The round trip must pickle (a module-level
    function, a callable dataclass or a `functools.partial` of one) so evaluation workers can receive it.
    """

    name: str
    family: str
    kbps: float | None
    roundtrip: Roundtrip


@dataclass(frozen=True)
class Family:
    """A kind of baseline, as named before the colon of a spec.

    `parse` turns the text after the colon into baselines, raising ValueError with a one-line reason;
    `usage` (e.g. "K,...") and `example` (e.g. "6,8,12") show that text in errors and in `--help`.
    """

    name: str
    usage: str
    example: str
    parse: Callable[[str], list[Baseline]]


FAMILIES: dict[str, Family] = {}
"""The registry: family name → `Family`, in the order they are shown in `--help`."""


def register(family: Family) -> Family:
    """Add `family` to `FAMILIES` (replacing one of the same name) and return it."""
    FAMILIES[family.name] = family
    return family


def parse_baselines(specs: list[str]) -> list[Baseline]:
    """Specs like `opus:6,8,12`, `mp3:32` or `cmd:NAME=TEMPLATE` → their baselines, in order.

    A spec whose family is unknown or whose text the family refuses is a ValueError naming the spec.
    """
    baselines: list[Baseline] = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        family = FAMILIES.get(name)
        if family is None:
            usages = [f"{f.name}:{f.usage}" for f in FAMILIES.values()]
            choices = " ".join(usages[:-1]) + " or " + usages[-1] if len(usages) > 1 else "".join(usages)
            raise ValueError(f"bad baseline {spec!r}: use {choices}")
        try:
            baselines += family.parse(rest)
        except ValueError as exc:
            raise ValueError(f"bad baseline {spec!r}: {exc}") from None
    return baselines


def help_text() -> str:
    """The `--baseline` help of the command line: one example per registered family."""
    return " | ".join(f"{f.name}:{f.example}" for f in FAMILIES.values()) + " (repeatable)"


# -- classical codecs -------------------------------------------------------------------------------


def codec_family(name: str, codec: Callable[..., tuple[np.ndarray, int | None]], example: str = "6,8,12") -> Family:
    """A codec run at the bitrates a spec lists: `NAME:K,...` → one baseline per K (kbps), named "NAME K".

    `codec(audio, sample_rate, kbps=K)` is the round trip at one bitrate (see `Roundtrip`).
    """

    def parse(rest: str) -> list[Baseline]:
        try:
            rates = [float(r) for r in rest.split(",") if r]
        except ValueError:
            raise ValueError(f"expected e.g. {name}:{example}") from None
        if not rates:
            raise ValueError("no bitrates")
        if not all(math.isfinite(r) and r > 0 for r in rates):
            raise ValueError("bitrates must be positive numbers of kbps")
        return [Baseline(f"{name} {r:g}", name, r, functools.partial(codec, kbps=r)) for r in rates]

    return Family(name, "K,...", example, parse)


@dataclass(frozen=True)
class AvCodec:
    """A codec PyAV (FFmpeg) writes, called as a round trip at a bitrate: `codec(audio, sample_rate, kbps=K)`.

    `container` and `encoder` are FFmpeg names ("ogg", "libopus"); `frame_size` is the samples per
    frame the encoder takes; `rates` are the sample rates it takes: the item's own when listed, else
    the first (audio is resampled to it and back). `options` are encoder options as (key, value) pairs.
    """

    container: str
    encoder: str
    frame_size: int
    rates: tuple[int, ...]
    options: tuple[tuple[str, str], ...] = ()

    def __call__(self, audio: np.ndarray, sample_rate: int, kbps: float) -> tuple[np.ndarray, int | None]:
        """Mono `[T]` audio → (decoded `[T']` at `sample_rate`, bytes of the coded stream)."""
        rate = sample_rate if sample_rate in self.rates else self.rates[0]
        data = self._encode(resample(audio[None], sample_rate, rate)[0], rate, kbps)
        decoded, decoded_rate = self._decode(data, rate)
        return resample(decoded[None], decoded_rate, sample_rate)[0], len(data)

    def _encode(self, audio: np.ndarray, rate: int, kbps: float) -> bytes:
        """`[T]` audio at `rate` → the coded stream in its container, 16-bit PCM fed in whole frames (the last one padded)."""
        import av  # optional: eval extra

        buf = io.BytesIO()
        with av.open(buf, "w", format=self.container) as container:
            stream = typing.cast("av.AudioStream", container.add_stream(self.encoder, rate=rate))
            stream.bit_rate = int(kbps * 1000)
            stream.layout = "mono"
            if self.options:
                stream.codec_context.options = dict(self.options)
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            for i in range(0, len(pcm), self.frame_size):
                chunk = pcm[i : i + self.frame_size]
                if len(chunk) < self.frame_size:
                    chunk = np.pad(chunk, (0, self.frame_size - len(chunk)))
                frame = av.AudioFrame.from_ndarray(chunk[None], format="s16", layout="mono")
                frame.sample_rate = rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        return buf.getvalue()

    @staticmethod
    def _decode(data: bytes, rate: int) -> tuple[np.ndarray, int]:
        """A coded stream → (mono float32 `[T]`, its decoded sample rate; `rate` if it holds no frames)."""
        import av  # optional: eval extra

        out = []
        with av.open(io.BytesIO(data), "r") as container:
            for frame in container.decode(audio=0):
                arr = frame.to_ndarray()
                arr = arr.astype(np.float32) / (32768.0 if arr.dtype == np.int16 else 1.0)
                out.append(arr.reshape(-1) if arr.shape[0] == 1 else arr.mean(0))
                rate = frame.sample_rate
        return (np.concatenate(out) if out else np.zeros(1, np.float32)), rate


# -- external commands ------------------------------------------------------------------------------


def command_roundtrip(template: str, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int | None]:
    """Run a shell command on a WAV of mono `[T]` audio: `{in}` and `{out}` in `template` become the file
    paths; its output (any format, mixed to mono) comes back at `sample_rate`. The coded size is unknown."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.wav")
        save_audio(src, audio[None], sample_rate)
        cmd = template.replace("{in}", shlex.quote(src)).replace("{out}", shlex.quote(dst))
        result = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.exists(dst):
            message = " ".join(result.stderr.split())[-200:]
            raise RuntimeError(f"baseline command failed ({result.returncode}): {message}")
        y, sr = load_audio(dst)
        return resample(y.mean(0, keepdims=True), sr, sample_rate)[0], None


def _parse_command(rest: str) -> list[Baseline]:
    """`NAME=TEMPLATE` → one baseline named NAME (its own family, bitrate unknown)."""
    name, sep, template = rest.partition("=")
    if not sep or not name:
        raise ValueError("expected cmd:NAME=TEMPLATE")
    if "{in}" not in template or "{out}" not in template:
        raise ValueError("the command needs {in} and {out}")
    return [Baseline(name, name, None, functools.partial(command_roundtrip, template))]


# -- the registry: one line per family --------------------------------------------------------------

register(codec_family("opus", AvCodec("ogg", "libopus", 960, (48000,), (("application", "audio"),)), "6,8,12"))
register(codec_family("mp3", AvCodec("mp3", "libmp3lame", 1152, (44100, 32000, 48000, 22050, 24000, 16000)), "32"))
register(Family("cmd", "NAME=TEMPLATE", "NAME='prog {in} {out}'", _parse_command))
