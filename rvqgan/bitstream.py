"""The `.rvq` compressed file format: versioned, checksummed, seekable, never pickled.

Layout (all integers little-endian)::

    magic  b"RVQ1"                      4 bytes
    version                            u8   (FORMAT_VERSION; versions 1 to 3 are read)
    header length H                    u16
    header                             H bytes: compact JSON (see `Header`), raw-deflated from version 2
    header CRC32                       u32
    chunk*                             each: frame count u16, packed codes, CRC32 u32
    index                              u32 byte offset of every chunk
    footer                             u32 index offset, u32 index CRC32, b"RVQE"

Codes are bit-packed at ceil(log2(codebook_size)) bits each (10 bits for 1024 entries), in
`[channels, n_codebooks, frames]` order within a chunk. Every chunk but the last holds
`chunk_frames` frames, so the chunk holding a time is found by arithmetic and its byte offset
in the index: a time range is decoded by reading only the chunks it needs.

The versions differ only in the header. Version 3 adds `weights_hash`, the identity of the
trained weights that made the codes, so a decoder refuses a different trained model of the
same architecture, and the optional `precision` ("bf16" where the encoder ran in bfloat16; left
out for fp32, so fp32 files are byte for byte what they were before it existed; a reader from before
it refuses the header of a bf16-encoded file). Version 2 spells its JSON keys as the `Header` attributes (and the rest of
the code) do, and stores the JSON compressed with raw DEFLATE against a fixed preset
dictionary of those keys (`HEADER_DICTIONARIES`), so the spelled-out keys cost a few bytes
each: a typical header takes about 90 bytes. Version 1 stored plain JSON with short keys
(`sr`, `orig_sr`, `n_q`, `K`, `fps`, `chunk`, `hash`); such files are still read (`V1_KEYS`).

A chunk holds at most `MAX_CHUNK_CODES` codes (channels x codebooks x frames: 32 MiB packed at
16 bits, 20 MiB at 10 bits), and a frame rate a hop of at most `MAX_HOP_LENGTH` samples, so no
header value makes the arithmetic on it overflow. The encoder's chunks (about 6 s: 517 frames
at 86 frames/s) are far below it.

A reader trusts nothing: every header field is checked for its type and a sane range
(`Header.check`), the index for order and bounds, and the header's length against the
number of coded frames, all before any audio is allocated. A header is checked against
itself only: whoever decodes the codes checks it against the model (`files.decompress_file`).
Reading takes memory in proportion to one chunk (its packed bytes, once) and to the frames
asked for (8 bytes a code), never to the codes of a whole chunk as integers.
"""

from __future__ import annotations

import errno
import io
import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

import numpy as np

from .untrusted import for_terminal

MAGIC = b"RVQ1"
FOOTER_MAGIC = b"RVQE"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# Version-1 header keys → `Header` attributes (keys not listed are spelled the same).
V1_KEYS = {
    "hash": "config_hash",
    "sr": "sample_rate",
    "orig_sr": "input_sample_rate",
    "n_q": "n_codebooks",
    "K": "codebook_size",
    "fps": "frame_rate",
    "chunk": "chunk_frames",
}
# From version 2: the preset dictionary the header JSON is deflated against, per version.
# Part of the format: never change one; a new dictionary needs a new version.
HEADER_DICTIONARIES = {
    2: b'{"model":"","config_hash":"","sample_rate":,"input_sample_rate":,"channels":,"length":,'
    b'"n_codebooks":,"codebook_size":1024,"frame_rate":,"chunk_frames":,"gain_db":}',
    3: b'{"model":"","config_hash":"","sample_rate":,"input_sample_rate":,"channels":,"length":,'
    b'"n_codebooks":,"codebook_size":1024,"frame_rate":,"chunk_frames":,"gain_db":,"weights_hash":""}',
}
MAX_HEADER_JSON = 0xFFFF
# Bounds a header must respect (inclusive); see `Header.check`.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000
MAX_CHANNELS = 256
MAX_LENGTH = 2**40
MAX_CODEBOOKS = 256
MAX_CODEBOOK_SIZE = 65536
MAX_GAIN_DB = 100.0
MAX_HOP_LENGTH = 2**16  # samples per code frame: frame_rate >= sample_rate / MAX_HOP_LENGTH
MAX_CHUNK_FRAMES = 0xFFFF  # a chunk's frame count is a u16
MAX_CHUNK_CODES = 2**24  # channels x n_codebooks x chunk_frames
# Codes packed or unpacked at a time (bounds the temporary arrays to a few MiB; a multiple of 8).
SLICE_CODES = 2**16
MAX_NAME = 256
# A code file read from a stream that cannot seek (stdin) is held in memory up to this size.
MAX_STREAM_BYTES = 256 * 2**20


class FormatError(ValueError):
    """A code file that cannot be read; the message names the problem."""


@dataclass
class Header:
    """What a decoder needs besides the codes (written as JSON with these attribute names as keys).

    Attributes:
        model: name of the model that made the file; config_hash: its config digest (16 hex digits).
        sample_rate: the model's sample rate; input_sample_rate: the input's; channels: the input's.
        length: input length in samples at `input_sample_rate` (the decode is trimmed to it exactly).
        n_codebooks: codebooks used; codebook_size: entries per codebook; frame_rate: code
            frames per second (sample_rate / hop_length).
        chunk_frames: frames per chunk; gain_db: loudness gain applied before coding (undone on decode).
        weights_hash: `Codec.weights_id()` of the model that made the codes (version 3; None in older files).
        precision: "bf16" where the encoder ran in bfloat16 (its codes may differ from fp32's where a
            latent sits near a border between two entries); None (left out) for fp32.
    """

    model: str
    config_hash: str
    sample_rate: int
    input_sample_rate: int
    channels: int
    length: int
    n_codebooks: int
    codebook_size: int
    frame_rate: float
    chunk_frames: int = 512
    gain_db: float | None = None
    weights_hash: str | None = None
    precision: str | None = None

    @property
    def bits_per_code(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate / self.frame_rate))

    @property
    def duration(self) -> float:
        return self.length / self.input_sample_rate

    @property
    def code_bitrate(self) -> float:
        """Bits per second of the codes alone, per channel times channels."""
        return self.n_codebooks * self.bits_per_code * self.frame_rate * self.channels

    def summary(self, file_size: int) -> str:
        """One line for a file of `file_size` bytes with this header: duration, channels, codebooks,
        bitrates (the codes' for all channels together, as `--kbps` counts it)."""
        file_kbps = file_size * 8 / self.duration / 1000 if self.duration else float("nan")
        return (
            f"{self.duration:.2f} s, {self.channels} ch, {self.n_codebooks} codebooks, "
            f"codes {self._code_kbps()}, file {file_kbps:.3f} kbps ({file_size} bytes)"
        )

    def _code_kbps(self) -> str:
        """The codes' bitrate, all channels together, and what each channel takes when there are several."""
        per_channel = f" ({self.code_bitrate / self.channels / 1000:.3f} per channel)" if self.channels > 1 else ""
        return f"{self.code_bitrate / 1000:.3f} kbps{per_channel}"

    def to_json(self) -> bytes:
        """Compact JSON keyed by the attribute names; None fields are left out (every byte counts at 8 kbps)."""
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(fields, separators=(",", ":")).encode()

    def to_bytes(self) -> bytes:
        """The header as this version (`FORMAT_VERSION`) stores it: `to_json()`, deflated against its dictionary."""
        self.check()
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARIES[FORMAT_VERSION])
        return deflate.compress(self.to_json()) + deflate.flush()

    def check(self) -> None:
        """Raise `FormatError` unless every field has its type and a value in its range (see the bounds above)."""

        def bad(name: str, what: str) -> FormatError:
            return FormatError(f"bad header: {name} must be {what}, got {getattr(self, name)!r:.40}")

        for name, low, high in (
            ("sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
            ("input_sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
            ("channels", 1, MAX_CHANNELS),
            ("length", 1, MAX_LENGTH),
            ("n_codebooks", 1, MAX_CODEBOOKS),
            ("codebook_size", 2, MAX_CODEBOOK_SIZE),
            ("chunk_frames", 1, MAX_CHUNK_FRAMES),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise bad(name, f"an integer in [{low}, {high}]")
        for name, optional in (("model", False), ("config_hash", False), ("weights_hash", True)):
            value = getattr(self, name)
            if not (isinstance(value, str) and len(value) <= MAX_NAME) and not (optional and value is None):
                raise bad(name, f"a string of at most {MAX_NAME} characters")
        if self.channels * self.n_codebooks * self.chunk_frames > MAX_CHUNK_CODES:
            raise bad("chunk_frames", f"at most {MAX_CHUNK_CODES} codes a chunk (channels x n_codebooks x chunk_frames)")
        fr = self.frame_rate
        slowest = self.sample_rate / MAX_HOP_LENGTH
        # Compared before any conversion to float, so an integer too large for one is refused, not an OverflowError.
        if isinstance(fr, bool) or not isinstance(fr, (int, float)) or not slowest <= fr <= self.sample_rate:
            raise bad("frame_rate", f"a number in [{slowest:g}, {self.sample_rate}] (a hop of 1 to {MAX_HOP_LENGTH} samples)")
        if abs(self.sample_rate / fr - self.hop_length) > 1e-3:
            raise bad("frame_rate", "the sample rate divided by a whole hop length")
        if self.precision not in (None, "bf16"):
            raise bad("precision", 'null or "bf16"')
        g = self.gain_db
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not abs(g) <= MAX_GAIN_DB):
            raise bad("gain_db", f"null or a number in [-{MAX_GAIN_DB:g}, {MAX_GAIN_DB:g}] dB")

    def expected_frames(self) -> int:
        """Code frames per channel that `length` input samples make (resampled to `sample_rate`)."""
        return math.ceil(self.length * self.sample_rate / self.input_sample_rate / self.hop_length)

    @classmethod
    def from_bytes(cls, data: bytes, version: int = FORMAT_VERSION) -> Header:
        """Parse a header as format `version` stores it (1: plain JSON, short keys; 2: see `to_bytes`)."""
        try:
            if version >= 2:
                inflate = zlib.decompressobj(-15, zdict=HEADER_DICTIONARIES[version])
                data = inflate.decompress(data, MAX_HEADER_JSON)
                if not inflate.eof or inflate.unused_data or inflate.unconsumed_tail:
                    raise ValueError("compressed header does not end where it should")
            d = json.loads(data.decode(), parse_constant=_refuse_constant)
            if not isinstance(d, dict):
                raise TypeError("not a JSON object")
            if version == 1:
                d = {V1_KEYS.get(k, k): v for k, v in d.items()}
            if version < 3:
                d.pop("weights_hash", None)  # not part of these versions
                d.pop("precision", None)
            header = cls(**d)
        except (
            zlib.error,
            ValueError,
            TypeError,
            RecursionError,
        ) as exc:  # ValueError covers UnicodeDecodeError, JSONDecodeError
            raise FormatError(f"bad header ({str(exc)[:120]})") from None
        header.check()
        return header


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a header may hold")


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Pack non-negative ints (any shape, C order) at `bits` bits each, MSB first.

    `SLICE_CODES` codes at a time (a multiple of 8, so each slice ends on a byte boundary): the
    temporary bit matrix stays a few MiB however large the chunk.
    """
    flat = np.asarray(codes).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    parts = []
    for s in range(0, flat.size, SLICE_CODES):
        piece = flat[s : s + SLICE_CODES].astype(np.int64)
        bit_matrix = ((piece[:, None] >> shifts) & 1).astype(np.uint8)
        parts.append(np.packbits(bit_matrix.reshape(-1)).tobytes())
    return b"".join(parts)


def unpack_codes(data: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of `pack_codes`: `count` ints as int64."""
    need = math.ceil(count * bits / 8)
    if len(data) < need:
        raise FormatError("truncated chunk")
    return _unpack_rows(_padded(data, need), 1, count, 0, count, bits).reshape(count)


def _padded(data: bytes | memoryview, n: int) -> np.ndarray:
    """The first `n` bytes of `data` and two zero bytes, as uint8 (`_unpack_rows` reads up to two bytes past a code)."""
    buf = np.zeros(n + 2, dtype=np.uint8)
    buf[:n] = np.frombuffer(data, dtype=np.uint8, count=n)
    return buf


def _unpack_rows(buf: np.ndarray, rows: int, row_len: int, a: int, b: int, bits: int) -> np.ndarray:
    """Codes `[a, b)` of each of `rows` rows of `row_len` codes packed in `buf` (`pack_codes` order) → int64 `[rows, b - a]`.

    Each code (at most 16 bits, so within three bytes) is read from the three bytes that hold
    it, `SLICE_CODES` codes at a time: memory is the output and a few MiB, never a byte or an
    integer per bit. `buf` must hold two bytes past the last code's (any values).
    """
    width = b - a
    out = np.empty((rows, width), dtype=np.int64)
    flat = out.reshape(-1)
    mask = (1 << bits) - 1
    for s in range(0, flat.size, SLICE_CODES):
        k = np.arange(s, min(flat.size, s + SLICE_CODES), dtype=np.int64)
        position = ((k // width) * row_len + a + k % width) * bits  # bit offset of each code
        byte = position >> 3
        word = (buf[byte].astype(np.int64) << 16) | (buf[byte + 1].astype(np.int64) << 8) | buf[byte + 2]
        flat[s : s + k.size] = (word >> (24 - bits - (position & 7))) & mask
    return out


def read_limited(f: BinaryIO, limit: int, what: str) -> bytes:
    """All of `f`, or a `FormatError` as soon as it holds more than `limit` bytes (never reads more)."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise FormatError(f"{what} is larger than {limit // 2**20} MiB, the most read from a stream; pass a file path")
    return data


def write_all(f: BinaryIO, data: bytes) -> None:
    """Write all of `data` to `f`: a short write (a full disk, for a large write) is continued, and
    one that writes nothing is an `OSError` (ENOSPC), never a silently truncated file."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if n is None:  # a file object that does not say: it wrote everything
            return
        if n <= 0:
            raise OSError(errno.ENOSPC, "no space left on device (a write wrote nothing)")
        view = view[n:]


def read_exactly(f: BinaryIO, n: int, what: str) -> bytes:
    """Exactly `n` bytes from `f`, or a `FormatError` saying the file is truncated in `what`."""
    data = f.read(n)
    if len(data) != n:
        raise FormatError(f"file is truncated (in {what})")
    return data


class Writer:
    """Write a code file chunk by chunk (works on non-seekable outputs such as stdout)."""

    def __init__(self, f: BinaryIO, header: Header):
        self.f = f
        self.header = header
        self.offsets: list[int] = []
        self.position = 0
        self.pending: np.ndarray | None = None
        head = header.to_bytes()
        if len(head) > 0xFFFF or len(header.to_json()) > MAX_HEADER_JSON:
            raise ValueError("header too large (is the model name very long?)")
        self._write(MAGIC + struct.pack("<BH", FORMAT_VERSION, len(head)) + head + struct.pack("<I", zlib.crc32(head)))

    def _write(self, data: bytes) -> None:
        write_all(self.f, data)
        self.position += len(data)

    def write(self, codes: np.ndarray) -> None:
        """Append frames `[channels, n_codebooks, f]`; full chunks are written as they fill."""
        codes = np.asarray(codes)
        h = self.header
        if codes.ndim != 3 or codes.shape[0] != h.channels or codes.shape[1] != h.n_codebooks:
            raise ValueError(f"codes must be [{h.channels}, {h.n_codebooks}, F], got {list(codes.shape)}")
        if codes.size and (codes.min() < 0 or codes.max() >= h.codebook_size):
            raise ValueError(f"codes must be in [0, {h.codebook_size})")
        self.pending = codes if self.pending is None else np.concatenate([self.pending, codes], -1)
        while self.pending.shape[-1] >= h.chunk_frames:
            self._write_chunk(self.pending[..., : h.chunk_frames])
            self.pending = self.pending[..., h.chunk_frames :]

    def _write_chunk(self, chunk: np.ndarray) -> None:
        body = struct.pack("<H", chunk.shape[-1]) + pack_codes(chunk, self.header.bits_per_code)
        self.offsets.append(self.position)
        self._write(body + struct.pack("<I", zlib.crc32(body)))

    def close(self) -> None:
        """Write the last partial chunk, the index and the footer."""
        if self.pending is not None and self.pending.shape[-1]:
            self._write_chunk(self.pending)
        self.pending = None
        index = struct.pack(f"<{len(self.offsets)}I", *self.offsets)
        index_offset = self.position
        self._write(index + struct.pack("<II", index_offset, zlib.crc32(index)) + FOOTER_MAGIC)


def _read_header(f: BinaryIO) -> tuple[Header, int]:
    magic = f.read(4)
    if magic != MAGIC:
        if magic[:3] == b"RVQ":
            raise FormatError(f"unsupported format generation {magic!r}")
        raise FormatError("not an rvqgan code file (bad magic number)")
    version, length = struct.unpack("<BH", read_exactly(f, 3, "header"))
    if version not in READABLE_VERSIONS:
        known = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise FormatError(f"format version {version} is not supported (this reader knows versions {known})")
    head = read_exactly(f, length, "header")
    (crc,) = struct.unpack("<I", read_exactly(f, 4, "header"))
    if zlib.crc32(head) != crc:
        raise FormatError("header is corrupted (CRC mismatch)")
    return Header.from_bytes(head, version), 4 + 3 + length + 4


class Reader:
    """Read a code file: whole, chunk by chunk, or a time range (seeking through the index)."""

    def __init__(self, f: BinaryIO):
        if not f.seekable():  # e.g. stdin: code files are small, so hold this one in memory (bounded)
            f = io.BytesIO(read_limited(f, MAX_STREAM_BYTES, "code file"))
        self.f = f
        self.header, self.data_start = _read_header(f)
        self.offsets = np.zeros(0, dtype=np.int64)  # byte offset of each chunk, then of the index
        self.file_size = 0
        self._chunk: tuple[int, int, np.ndarray] | None = None  # the last chunk read (`_load_chunk`)
        self._read_index()
        self.n_frames = self._count_frames()
        h = self.header
        if abs(self.n_frames - h.expected_frames()) > 1:
            raise FormatError(
                f"header says {h.length} samples ({h.expected_frames()} frames), but the file holds {self.n_frames} frames"
            )

    def describe(self) -> str:
        """What `rvqgan info` shows: model and weights, audio, codes, true bitrate (all channels
        together), loudness (five lines). The names read from the file are shown without their
        control characters (`for_terminal`)."""
        h, size = self.header, self.file_size
        weights = f", weights {for_terminal(h.weights_hash)}" if h.weights_hash else ""
        bf16 = ", encoded in bf16" if h.precision == "bf16" else ""
        gain = "not normalised" if h.gain_db is None else f"coded with {h.gain_db:+.2f} dB gain, undone on decode"
        return (
            f"  model        {for_terminal(h.model)} (config {for_terminal(h.config_hash)}{weights})\n"
            f"  audio        {h.duration:.3f} s, {h.length} samples at {h.input_sample_rate} Hz, {h.channels} channel(s)\n"
            f"  codes        {h.n_codebooks} codebooks x {h.codebook_size} entries ({h.bits_per_code} bits), "
            f"{h.frame_rate:.3f} frames/s at {h.sample_rate} Hz, {self.n_frames} frames{bf16}\n"
            f"  bitrate      codes {h._code_kbps()}, file {size * 8 / h.duration / 1000:.3f} kbps ({size} bytes)\n"
            f"  loudness     {gain}"
        )

    def _read_index(self) -> None:
        f = self.f
        end = f.seek(0, 2)
        self.file_size = end
        if end < self.data_start + 12:
            raise FormatError("file is truncated (no index)")
        f.seek(end - 12)
        index_offset, crc, magic = struct.unpack("<II4s", f.read(12))
        if magic != FOOTER_MAGIC:
            raise FormatError("file is truncated or corrupted (no footer)")
        n = end - 12 - index_offset
        if index_offset < self.data_start or n < 0 or n % 4:
            raise FormatError("index is corrupted")
        f.seek(index_offset)
        index = f.read(n)
        if zlib.crc32(index) != crc:
            raise FormatError("index is corrupted (CRC mismatch)")
        # One int64 a chunk (which takes at least 7 bytes of the file), not a Python int each.
        self.offsets = np.append(np.frombuffer(index, dtype="<u4").astype(np.int64), index_offset)
        if self.offsets[0] != self.data_start or not np.all(np.diff(self.offsets) > 0):
            raise FormatError("index is corrupted (chunk offsets out of order)")
        f.seek(self.data_start)

    def _count_frames(self) -> int:
        """Frames per channel: full chunks and the last chunk's own frame count."""
        n_chunks = len(self.offsets) - 1
        if n_chunks == 0:
            return 0
        self.f.seek(int(self.offsets[-2]))
        (last,) = struct.unpack("<H", read_exactly(self.f, 2, "chunk"))
        self.f.seek(self.data_start)
        if not 1 <= last <= self.header.chunk_frames:
            raise FormatError(f"chunk {n_chunks - 1} is corrupted (frame count {last})")
        sizes = np.diff(self.offsets)
        full = self._chunk_bytes(self.header.chunk_frames)
        if np.any(sizes[:-1] != full) or sizes[-1] != self._chunk_bytes(last):
            raise FormatError("index is corrupted (chunk sizes do not match the header)")
        return (n_chunks - 1) * self.header.chunk_frames + last

    def _chunk_bytes(self, frames: int) -> int:
        """Bytes a chunk of `frames` frames takes: frame count, packed codes, CRC."""
        h = self.header
        return 2 + math.ceil(h.channels * h.n_codebooks * frames * h.bits_per_code / 8) + 4

    def _load_chunk(self, number: int) -> tuple[int, np.ndarray]:
        """Chunk `number`, checked (frame count, CRC, codes in the codebook) → (its frames, its packed
        codes as uint8 followed by its CRC). The last chunk loaded is kept, so a chunk read piece by
        piece is read and checked once; it is the only one held."""
        if self._chunk is not None and self._chunk[0] == number:
            return self._chunk[1], self._chunk[2]
        self._chunk = None  # freed before the next one is read
        h = self.header
        self.f.seek(int(self.offsets[number]))
        head = read_exactly(self.f, 2, f"chunk {number}")
        (frames,) = struct.unpack("<H", head)
        last = number == len(self.offsets) - 2
        if frames == 0 or frames > h.chunk_frames or (not last and frames != h.chunk_frames):
            raise FormatError(f"chunk {number} is corrupted (frame count {frames})")
        count = h.channels * h.n_codebooks * frames
        n = math.ceil(count * h.bits_per_code / 8)
        data = read_exactly(self.f, n + 4, f"chunk {number}")  # the packed codes, then their CRC
        (crc,) = struct.unpack("<I", data[n:])
        if zlib.crc32(memoryview(data)[:n], zlib.crc32(head)) != crc:
            raise FormatError(f"chunk {number} is corrupted (CRC mismatch)")
        buf = np.frombuffer(data, dtype=np.uint8)  # the CRC's bytes are the two `_unpack_rows` reads past the end
        if h.codebook_size < 1 << h.bits_per_code:  # otherwise every value of the bits is a code
            for s in range(0, count, SLICE_CODES):
                if _unpack_rows(buf, 1, count, s, min(count, s + SLICE_CODES), h.bits_per_code).max() >= h.codebook_size:
                    raise FormatError(f"chunk {number} holds codes outside the codebook")
        self._chunk = (number, frames, buf)
        return frames, buf

    def _chunk_codes(self, number: int, a: int, b: int) -> np.ndarray:
        """Frames `[a, b)` of chunk `number` (cut to its frames) → int64 `[channels, n_codebooks, f]`."""
        h = self.header
        frames, buf = self._load_chunk(number)
        b = min(b, frames)
        codes = _unpack_rows(buf, h.channels * h.n_codebooks, frames, a, b, h.bits_per_code)
        return codes.reshape(h.channels, h.n_codebooks, b - a)

    def chunks(self, first: int = 0, last: int | None = None) -> Iterator[np.ndarray]:
        """Yield code chunks `[channels, n_codebooks, f]`, from chunk `first` up to (excluding) `last`."""
        last = len(self.offsets) - 1 if last is None else min(last, len(self.offsets) - 1)
        for number in range(max(0, first), last):
            yield self._chunk_codes(number, 0, self.header.chunk_frames)

    def read_all(self) -> np.ndarray:
        """All codes `[channels, n_codebooks, frames]`."""
        return self.read_range(0, self.n_frames)

    def read_range(self, start_frame: int, end_frame: int) -> np.ndarray:
        """Codes of frames `[start_frame, end_frame)`, reading only the chunks that hold them and
        unpacking only the frames asked for."""
        h = self.header
        c = h.chunk_frames
        start_frame, end_frame = max(0, start_frame), min(end_frame, self.n_frames)
        end_frame = max(start_frame, end_frame)
        parts = [
            self._chunk_codes(number, max(start_frame, number * c) - number * c, min(end_frame, (number + 1) * c) - number * c)
            for number in range(start_frame // c, math.ceil(end_frame / c))
        ]
        if not parts:
            return np.zeros((h.channels, h.n_codebooks, 0), dtype=np.int64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, -1)


def read_bytes(data: bytes) -> tuple[Header, np.ndarray]:
    """Parse a complete code file held in memory → (header, codes `[channels, n_codebooks, frames]`)."""
    reader = Reader(io.BytesIO(data))
    return reader.header, reader.read_all()
