"""The `.rvq` compressed file format: versioned, checksummed, seekable, never pickled.

Layout (all integers little-endian)::

    magic  b"RVQ1"                      4 bytes
    version                            u8   (FORMAT_VERSION)
    header length H                    u16
    header                             H bytes of compact JSON (see `Header`)
    header CRC32                       u32
    chunk*                             each: frame count u16, packed codes, CRC32 u32
    index                              u32 byte offset of every chunk
    footer                             u32 index offset, u32 index CRC32, b"RVQE"

Codes are bit-packed at ceil(log2(codebook_size)) bits each (10 bits for 1024 entries), in
`[channels, n_codebooks, frames]` order within a chunk. Every chunk but the last holds
`chunk_frames` frames, so the chunk holding a time is found by arithmetic and its byte offset
in the index: a time range is decoded by reading only the chunks it needs.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

import numpy as np

MAGIC = b"RVQ1"
FOOTER_MAGIC = b"RVQE"
FORMAT_VERSION = 1


class FormatError(ValueError):
    """A code file that cannot be read; the message names the problem."""


@dataclass
class Header:
    """What a decoder needs besides the codes.

    Attributes:
        model: name of the model that made the file; hash: its config digest (16 hex digits).
        sr: model sample rate; orig_sr: the input's sample rate; channels: input channels.
        length: input length in samples at `orig_sr` (the decode is trimmed to it exactly).
        n_q: codebooks used; K: codebook size; fps: frame rate (sr / hop).
        chunk: frames per chunk; gain_db: loudness gain applied before coding (undone on decode).
    """

    model: str
    hash: str
    sr: int
    orig_sr: int
    channels: int
    length: int
    n_q: int
    K: int
    fps: float
    chunk: int = 512
    gain_db: float | None = None

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(self.K)))

    @property
    def hop(self) -> int:
        return int(round(self.sr / self.fps))

    @property
    def duration(self) -> float:
        return self.length / self.orig_sr

    @property
    def code_bitrate(self) -> float:
        """Bits per second of the codes alone, per channel times channels."""
        return self.n_q * self.bits * self.fps * self.channels

    def to_bytes(self) -> bytes:
        fields = {k: v for k, v in asdict(self).items() if v is not None}  # every byte counts at 8 kbps
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        try:
            d = json.loads(data.decode())
            header = cls(**d)
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            raise FormatError(f"bad header ({exc})") from None
        if header.K < 2 or header.n_q < 1 or header.channels < 1 or header.chunk < 1 or header.length < 0 or header.fps <= 0:
            raise FormatError("bad header values")
        return header


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Pack non-negative ints (any shape, C order) at `bits` bits each, MSB first."""
    flat = np.ascontiguousarray(codes, dtype=np.int64).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_matrix = ((flat[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.reshape(-1)).tobytes()


def unpack_codes(data: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of `pack_codes`: `count` ints as int64."""
    need = math.ceil(count * bits / 8)
    if len(data) < need:
        raise FormatError("truncated chunk")
    bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=need))[: count * bits]
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return bit_array.reshape(count, bits).astype(np.int64) @ weights


def _read_exactly(f: BinaryIO, n: int, what: str) -> bytes:
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
        if len(head) > 0xFFFF:
            raise ValueError("header too large")
        self._write(MAGIC + struct.pack("<BH", FORMAT_VERSION, len(head)) + head + struct.pack("<I", zlib.crc32(head)))

    def _write(self, data: bytes) -> None:
        self.f.write(data)
        self.position += len(data)

    def write(self, codes: np.ndarray) -> None:
        """Append frames `[channels, n_q, f]`; full chunks are written as they fill."""
        codes = np.asarray(codes)
        h = self.header
        if codes.ndim != 3 or codes.shape[0] != h.channels or codes.shape[1] != h.n_q:
            raise ValueError(f"codes must be [{h.channels}, {h.n_q}, F], got {list(codes.shape)}")
        if codes.size and (codes.min() < 0 or codes.max() >= h.K):
            raise ValueError(f"codes must be in [0, {h.K})")
        self.pending = codes if self.pending is None else np.concatenate([self.pending, codes], -1)
        while self.pending.shape[-1] >= h.chunk:
            self._write_chunk(self.pending[..., : h.chunk])
            self.pending = self.pending[..., h.chunk :]

    def _write_chunk(self, chunk: np.ndarray) -> None:
        body = struct.pack("<H", chunk.shape[-1]) + pack_codes(chunk, self.header.bits)
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
    version, length = struct.unpack("<BH", _read_exactly(f, 3, "header"))
    if version != FORMAT_VERSION:
        raise FormatError(f"format version {version} is not supported (this reader knows version {FORMAT_VERSION})")
    head = _read_exactly(f, length, "header")
    (crc,) = struct.unpack("<I", _read_exactly(f, 4, "header"))
    if zlib.crc32(head) != crc:
        raise FormatError("header is corrupted (CRC mismatch)")
    return Header.from_bytes(head), 4 + 3 + length + 4


class Reader:
    """Read a code file: whole, chunk by chunk, or a time range (seeking through the index)."""

    def __init__(self, f: BinaryIO):
        if not f.seekable():  # e.g. stdin: code files are small, so hold this one in memory
            import io

            f = io.BytesIO(f.read())
        self.f = f
        self.header, self.data_start = _read_header(f)
        self.offsets: list[int] = []
        self.file_size = 0
        self._read_index()

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
        self.offsets = list(struct.unpack(f"<{n // 4}I", index)) + [index_offset]
        f.seek(self.data_start)

    @property
    def n_frames(self) -> int:
        """Frames per channel."""
        n_chunks = len(self.offsets) - 1
        if n_chunks == 0:
            return 0
        self.f.seek(self.offsets[-2])
        (last,) = struct.unpack("<H", _read_exactly(self.f, 2, "chunk"))
        self.f.seek(self.data_start)
        return (n_chunks - 1) * self.header.chunk + last

    def _read_chunk(self, number: int) -> np.ndarray:
        h = self.header
        head = _read_exactly(self.f, 2, f"chunk {number}")
        (frames,) = struct.unpack("<H", head)
        if frames == 0 or frames > h.chunk:
            raise FormatError(f"chunk {number} is corrupted (frame count {frames})")
        count = h.channels * h.n_q * frames
        body = _read_exactly(self.f, math.ceil(count * h.bits / 8), f"chunk {number}")
        (crc,) = struct.unpack("<I", _read_exactly(self.f, 4, f"chunk {number}"))
        if zlib.crc32(head + body) != crc:
            raise FormatError(f"chunk {number} is corrupted (CRC mismatch)")
        codes = unpack_codes(body, count, h.bits).reshape(h.channels, h.n_q, frames)
        if codes.max(initial=0) >= h.K:
            raise FormatError(f"chunk {number} holds codes outside the codebook")
        return codes

    def chunks(self, first: int = 0, last: int | None = None) -> Iterator[np.ndarray]:
        """Yield code chunks `[channels, n_q, f]`, from chunk `first` up to (excluding) `last`."""
        assert self.offsets is not None
        last = len(self.offsets) - 1 if last is None else min(last, len(self.offsets) - 1)
        for number in range(first, last):
            self.f.seek(self.offsets[number])
            yield self._read_chunk(number)

    def read_all(self) -> np.ndarray:
        """All codes `[channels, n_q, frames]`."""
        parts = list(self.chunks())
        if not parts:
            return np.zeros((self.header.channels, self.header.n_q, 0), dtype=np.int64)
        return np.concatenate(parts, -1)

    def read_range(self, start_frame: int, end_frame: int) -> np.ndarray:
        """Codes of frames `[start_frame, end_frame)`, reading only the chunks that hold them."""
        c = self.header.chunk
        first, last = start_frame // c, math.ceil(end_frame / c)
        parts = list(self.chunks(first, last))
        if not parts:
            return np.zeros((self.header.channels, self.header.n_q, 0), dtype=np.int64)
        codes = np.concatenate(parts, -1)
        return codes[..., start_frame - first * c : end_frame - first * c]


def read_bytes(data: bytes) -> tuple[Header, np.ndarray]:
    """Parse a complete code file held in memory → (header, codes `[channels, n_q, frames]`)."""
    import io

    reader = Reader(io.BytesIO(data))
    return reader.header, reader.read_all()


# -- legacy .dac files (descript-audio-codec 1.0.0) -------------------------------------------------


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


def _restricted_unpickle(data: bytes):
    """Unpickle only numpy arrays, dtypes, scalars and plain containers; refuse anything else."""
    import importlib
    import io
    import pickle

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
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
    import ast

    magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise FormatError("not a .dac file (no numpy magic)")
    major = _read_exactly(f, 2, "npy header")[0]
    if major == 1:
        (hlen,) = struct.unpack("<H", _read_exactly(f, 2, "npy header"))
    else:
        (hlen,) = struct.unpack("<I", _read_exactly(f, 4, "npy header"))
    try:
        npy_header = ast.literal_eval(_read_exactly(f, hlen, "npy header").decode("latin1"))
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
    if meta.get("dac_version") != "1.0.0":
        raise FormatError(f".dac version {meta.get('dac_version')!r} is not supported (only 1.0.0)")
    try:
        input_db = meta.get("input_db")
        return DacFile(
            codes=codes.astype(np.int64),
            input_db=None if input_db is None else np.asarray(input_db, dtype=np.float32).reshape(-1),
            original_length=int(meta["original_length"]),
            sample_rate=int(meta["sample_rate"]),
            chunk_length=int(meta["chunk_length"]),
            channels=int(meta["channels"]),
            padding=bool(meta["padding"]),
            dac_version="1.0.0",
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f".dac metadata is incomplete ({exc})") from None
