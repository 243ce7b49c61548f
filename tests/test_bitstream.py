"""The .rvq format: round trips, bit packing, every corruption detected, version-1 files still read."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import pickle
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from conftest import write_rvq_unchecked

from rvqgan.bitstream import (
    FOOTER_MAGIC,
    FORMAT_VERSION,
    MAGIC,
    MAX_CHUNK_CODES,
    MAX_CHUNK_FRAMES,
    FormatError,
    Header,
    Reader,
    Writer,
    pack_codes,
    read_bytes,
    read_limited,
    unpack_codes,
)


def make_file(frames: int = 50, channels: int = 2, n_q: int = 4, K: int = 1024, chunk: int = 7, seed: int = 0):
    header = Header(
        model="m",
        config_hash="0123456789abcdef",
        sample_rate=16000,
        input_sample_rate=44100,
        channels=channels,
        length=frames * 88,
        n_codebooks=n_q,
        codebook_size=K,
        frame_rate=500.0,
        chunk_frames=chunk,
    )
    codes = np.random.default_rng(seed).integers(0, K, (channels, n_q, frames))
    buf = io.BytesIO()
    writer = Writer(buf, header)
    writer.write(codes[..., :13])
    writer.write(codes[..., 13:])
    writer.close()
    return header, codes, buf.getvalue()


@pytest.mark.parametrize("bits", [1, 3, 8, 10, 11, 16])
def test_bit_packing_round_trip(bits):
    values = np.random.default_rng(bits).integers(0, 2**bits, 1001)
    packed = pack_codes(values, bits)
    assert len(packed) == -(-1001 * bits // 8)
    assert np.array_equal(unpack_codes(packed, 1001, bits), values)


@pytest.mark.parametrize("frames,channels,chunk", [(1, 1, 1), (50, 2, 7), (49, 1, 7), (300, 2, 512)])
def test_round_trip(frames, channels, chunk):
    header, codes, data = make_file(frames, channels, chunk=chunk)
    h, c = read_bytes(data)
    assert h == header and np.array_equal(c, codes)
    reader = Reader(io.BytesIO(data))
    assert reader.n_frames == frames
    a, b = frames // 3, frames - frames // 4
    assert np.array_equal(reader.read_range(a, b), codes[..., a:b])


def test_ten_bits_per_code_on_disk():
    _, codes, data = make_file(frames=2000, channels=1, n_q=9, chunk=512)
    payload_bits = 2000 * 9 * 10
    assert payload_bits <= len(data) * 8 < payload_bits * 1.02 + 8 * 200  # every code is there, at 10 bits


def test_bad_magic_and_version():
    _, _, data = make_file()
    with pytest.raises(FormatError, match="bad magic"):
        read_bytes(b"RIFF" + data[4:])
    with pytest.raises(FormatError, match="version 9 is not supported"):
        read_bytes(data[:4] + bytes([9]) + data[5:])
    assert data[4] == FORMAT_VERSION == 3


@pytest.mark.parametrize("cut", [3, 10, 40, -50, -13, -5, -1])
def test_truncated(cut):
    _, _, data = make_file()
    with pytest.raises(FormatError):
        read_bytes(data[:cut])


def test_every_single_bit_flip_is_detected():
    _, codes, data = make_file(frames=20, channels=1, n_q=2, chunk=8)
    undetected = []
    for pos in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            try:
                h, c = read_bytes(bytes(bad))
            except FormatError:
                continue
            undetected.append((pos, bit))
    assert not undetected


def test_pickle_is_not_a_code_file(tmp_path):
    with pytest.raises(FormatError, match="bad magic"):
        read_bytes(pickle.dumps({"codes": 1}))


# A version-1 file, byte for byte as the version-1 writer made it (short header keys):
# 2 channels, 3 codebooks of 1024, 12 frames in chunks of 5, gain_db -3.5.
V1_FILE = bytes.fromhex(
    "525651310193007b226d6f64656c223a226d222c2268617368223a2230313233343536373839616263646566222c2273"
    "72223a31363030302c226f7269675f7372223a34343130302c226368616e6e656c73223a322c226c656e677468223a31"
    "3035362c226e5f71223a332c224b223a313032342c22667073223a3530302e302c226368756e6b223a352c226761696e"
    "5f6462223a2d332e357d86fb79bc0500d9e8c82d144ee039b7e2bae8764f6d8dc22c3c524c9ec6c19c41e76c398875f5"
    "cb02d063b800621ec7c105000a44d040b3d022c8f7bd47343baf622cc5bdcc1c0147f022aeff738fb184af48a942e2d8"
    "61909f53892b0200a67a6ab80205a2a86a96f329a6013d89d513209e000000ca000000f60000000b010000e98550b652565145"
)
V1_CODES = [
    [
        [871, 652, 523, 276, 315, 41, 77, 16, 179, 832, 665, 934],
        [515, 621, 994, 747, 647, 556, 573, 957, 284, 835, 686, 2],
        [403, 877, 567, 34, 783, 747, 866, 179, 91, 883, 22, 554],
    ],
    [
        [82, 306, 492, 432, 412, 28, 5, 127, 8, 686, 538, 662],
        [263, 630, 782, 392, 471, 1021, 824, 1004, 388, 701, 972, 666],
        [860, 704, 720, 398, 896, 138, 592, 738, 865, 537, 384, 317],
    ],
]


def test_version_1_files_still_read():
    assert V1_FILE[4] == 1 and b'"sr":16000' in V1_FILE
    header, codes = read_bytes(V1_FILE)
    assert header == Header(
        model="m",
        config_hash="0123456789abcdef",
        sample_rate=16000,
        input_sample_rate=44100,
        channels=2,
        length=1056,
        n_codebooks=3,
        codebook_size=1024,
        frame_rate=500.0,
        chunk_frames=5,
        gain_db=-3.5,
    )
    assert np.array_equal(codes, np.array(V1_CODES))
    assert np.array_equal(Reader(io.BytesIO(V1_FILE)).read_range(4, 11), codes[..., 4:11])


def test_header_keys_are_the_attribute_names_and_cost_little():
    header, _, data = make_file()
    assert set(json.loads(header.to_json())) == {f for f in vars(header) if getattr(header, f) is not None}
    stored = data[7 : 7 + int.from_bytes(data[5:7], "little")]
    assert stored == header.to_bytes() and Header.from_bytes(stored) == header
    assert len(stored) < len(header.to_json()) / 2
    short = json.dumps({"model": "m", "hash": "0", "sr": 1}).encode()
    with pytest.raises(FormatError, match="bad header"):  # plain JSON and short keys only in version-1 files
        Header.from_bytes(short)
    with pytest.raises(FormatError, match="bad header"):
        Header.from_bytes(header.to_bytes() + b"x")


# A version-2 file, byte for byte as the version-2 writer made it (header deflated against the
# version-2 dictionary, no weights_hash): the same header as V1_FILE, codes V2_CODES.
V2_FILE = bytes.fromhex(
    "52565131024600ab86bb3117c391068646c626a666e616968949c929a969e88e3634333030c0ea72131343900cc2f946"
    "08f71b1a989aa1f9c198084f981a18e819a0fbc414c92bbac67aa6b500cf93e44d0500d650b1bd3169ff8303850e23bb"
    "fdbbadeadf1d85644282fd54fa145e87b2397d4339cbe2616010c2897d0500d05ce179569991933aa14e63f6c0e1a23b"
    "df79629460bb179078a47b1acd1b6b87ff65982930a5602dbc0200d02ea42899de2bbe0b1a7a06b741a095be1eff5100"
    "00007d000000a9000000be000000c2023ddb52565145"
)
V2_CODES = [
    [
        [857, 267, 111, 305, 423, 833, 462, 94, 342, 614, 832, 746],
        [1016, 192, 901, 56, 571, 281, 206, 673, 313, 575, 266, 153],
        [767, 443, 695, 685, 967, 432, 225, 648, 957, 990, 888, 699],
    ],
    [
        [389, 401, 40, 191, 340, 354, 593, 523, 709, 912, 898, 794],
        [1000, 325, 929, 946, 229, 482, 583, 710, 717, 109, 488, 107],
        [980, 206, 459, 905, 534, 696, 511, 869, 608, 659, 464, 416],
    ],
]


def test_version_2_files_still_read():
    assert V2_FILE[4] == 2
    header, codes = read_bytes(V2_FILE)
    assert header.weights_hash is None and header.gain_db == -3.5 and header.length == 1056
    assert np.array_equal(codes, np.array(V2_CODES))


def test_weights_hash_and_precision_round_trip():
    header, codes, _ = make_file()
    header = dataclasses.replace(header, weights_hash="0123456789abcdef", precision="bf16")
    buf = io.BytesIO()
    writer = Writer(buf, header)
    writer.write(codes)
    writer.close()
    read = read_bytes(buf.getvalue())[0]
    assert (read.weights_hash, read.precision) == ("0123456789abcdef", "bf16")


def test_fp32_files_do_not_spell_out_their_precision():
    """An fp32 header leaves `precision` out, so fp32 files are the bytes they were before it existed."""
    header, codes, _ = make_file()
    with_none, spelled = io.BytesIO(), io.BytesIO()
    for buf, h in ((with_none, header), (spelled, dataclasses.replace(header, precision="bf16"))):
        writer = Writer(buf, h)
        writer.write(codes)
        writer.close()
    assert read_bytes(with_none.getvalue())[0].precision is None
    assert len(spelled.getvalue()) > len(with_none.getvalue())


@pytest.mark.parametrize(
    "field, value",
    [
        ("input_sample_rate", 0),
        ("sample_rate", -16000),
        ("length", "5"),
        ("length", 0),
        ("length", 10**13),
        ("length", float("inf")),
        ("gain_db", -1e6),
        ("gain_db", float("nan")),
        ("gain_db", "3"),
        ("channels", 1.5),
        ("channels", True),
        ("channels", 10**6),
        ("n_codebooks", 0),
        ("codebook_size", 1),
        ("codebook_size", 2**40),
        ("frame_rate", 0.0),
        ("frame_rate", float("inf")),
        ("frame_rate", 333.3),
        ("frame_rate", 5e-324),  # 16000 / 5e-324 is infinite
        pytest.param("frame_rate", 10**400, id="frame_rate-10**400"),  # an integer no float can hold
        ("frame_rate", 16000 / 2**17),  # a hop of 131072 samples
        ("chunk_frames", 0),
        ("chunk_frames", 70000),
        ("model", 5),
        ("model", "x" * 10_000),
        ("weights_hash", ["a"]),
        ("precision", "fp16"),
        ("precision", 16),
    ],
)
def test_header_fields_of_the_wrong_type_or_range_are_refused(field, value, monkeypatch):
    header, codes, _ = make_file()
    data = write_rvq_unchecked(header, codes, monkeypatch, **{field: value})
    with pytest.raises(FormatError, match="bad header"):
        read_bytes(data)


@pytest.mark.parametrize("length", [2 * 10**7, 10**11, 50 * 88 * 3])
def test_header_length_must_agree_with_the_coded_frames(length, monkeypatch):
    header, codes, _ = make_file()
    data = write_rvq_unchecked(header, codes, monkeypatch, length=length)
    with pytest.raises(FormatError, match="frames"):
        read_bytes(data)


def test_a_header_with_no_chunks_cannot_claim_audio(monkeypatch):
    header, codes, _ = make_file()
    data = write_rvq_unchecked(header, codes[..., :0], monkeypatch, length=2 * 10**7)
    assert len(data) < 200
    with pytest.raises(FormatError, match="0 frames"):
        read_bytes(data)


def test_index_offsets_out_of_order_are_refused():
    _, _, data = make_file()
    index_offset = int.from_bytes(data[-12:-8], "little")
    index = bytearray(data[index_offset:-12])
    index[4:8], index[8:12] = index[8:12], index[4:8]
    bad = data[:index_offset] + bytes(index) + data[-12:-8] + zlib.crc32(bytes(index)).to_bytes(4, "little") + data[-4:]
    with pytest.raises(FormatError, match="out of order"):
        read_bytes(bad)


def test_a_stream_is_read_only_up_to_its_bound():
    with pytest.raises(FormatError, match="larger than"):
        read_limited(io.BytesIO(b"\0" * 2000), 1024, "code file")
    assert read_limited(io.BytesIO(b"abc"), 3, "code file") == b"abc"


def test_a_short_chunk_in_the_middle_is_refused():
    header, codes, _ = make_file(frames=17, chunk=7)
    buf = io.BytesIO()
    writer = Writer(buf, header)
    for a, b in ((0, 7), (7, 10), (10, 17)):  # a 3-frame chunk where a full one belongs
        writer._write_chunk(codes[..., a:b])
    writer.close()
    with pytest.raises(FormatError, match="chunk sizes|frame count"):
        read_bytes(buf.getvalue())


def one_chunk_file(header: Header, frames: int, seed: int = 0) -> bytes:
    """A `.rvq` file of one chunk of `frames` frames of random codes (any bits: `codebook_size` must be a power
    of two), its bytes laid out here, for chunks too large for `pack_codes` in a test."""
    head = header.to_bytes()
    n = -(-header.channels * header.n_codebooks * frames * header.bits_per_code // 8)
    start = len(MAGIC) + 3 + len(head) + 4
    chunk = struct.pack("<H", frames) + np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    index = struct.pack("<I", start)
    return b"".join(
        [
            MAGIC + struct.pack("<BH", FORMAT_VERSION, len(head)) + head + struct.pack("<I", zlib.crc32(head)),
            chunk + struct.pack("<I", zlib.crc32(chunk)),
            index + struct.pack("<II", start + len(chunk) + 4, zlib.crc32(index)) + FOOTER_MAGIC,
        ]
    )


def code_at(data: bytes, index: int, bits: int) -> int:
    """Code number `index` of codes packed at `bits` bits, MSB first: the reference `Reader` is checked against."""
    first = index * bits
    word = int.from_bytes(data[first // 8 : (first + bits - 1) // 8 + 1], "big")
    return (word >> ((-(first + bits)) % 8)) & ((1 << bits) - 1)


@pytest.mark.parametrize("bits", [1, 3, 10, 11, 16])
def test_every_range_of_every_chunk_reads_as_the_codes_written(bits):
    rng = np.random.default_rng(bits)
    header, _, _ = make_file()
    header = dataclasses.replace(header, codebook_size=2**bits, n_codebooks=3, length=23 * 88)
    codes = rng.integers(0, 2**bits, (2, 3, 23))
    buf = io.BytesIO()
    writer = Writer(buf, header)
    writer.write(codes)
    writer.close()
    reader = Reader(io.BytesIO(buf.getvalue()))
    assert np.array_equal(reader.read_all(), codes)
    for a in range(23):
        for b in range(a, 24):
            assert np.array_equal(reader.read_range(a, b), codes[..., a:b]), (a, b)
    assert [c.shape[-1] for c in reader.chunks()] == [7, 7, 7, 2]


def test_codes_outside_a_codebook_that_is_not_a_power_of_two_are_refused(monkeypatch):
    header, codes, _ = make_file()
    codes %= 1000
    codes[1, 2, 30] = 1010  # in 10 bits, not in 1000 entries
    data = write_rvq_unchecked(header, codes, monkeypatch, codebook_size=1000)
    reader = Reader(io.BytesIO(data))
    assert np.array_equal(reader.read_range(0, 28), codes[..., :28])  # the chunks before it read
    with pytest.raises(FormatError, match="chunk 4 holds codes outside the codebook"):
        reader.read_range(28, 29)


def test_a_chunk_holds_at_most_max_chunk_codes():
    header, codes, _ = make_file()
    most = dataclasses.replace(header, channels=256, n_codebooks=4, chunk_frames=MAX_CHUNK_CODES // 1024)
    most.check()
    with pytest.raises(FormatError, match=f"chunk_frames must be at most {MAX_CHUNK_CODES} codes a chunk"):
        dataclasses.replace(most, chunk_frames=most.chunk_frames + 1).check()
    with pytest.raises(FormatError, match="codes a chunk"):
        Writer(io.BytesIO(), dataclasses.replace(most, n_codebooks=5))


def test_a_range_of_the_largest_chunk_takes_memory_for_its_bytes_not_one_integer_a_bit():
    """Reading 10 frames of a one-chunk file with the most codes a chunk may hold (10 bits each) holds the
    chunk's packed bytes once and unpacks only the 10 frames: before, every bit of the chunk became an int64
    (a 20 MiB chunk took 1.6 GiB)."""
    header, _, _ = make_file()
    frames = MAX_CHUNK_FRAMES  # 32 x 8 x 65535 codes: just under MAX_CHUNK_CODES
    header = dataclasses.replace(header, channels=32, n_codebooks=8, chunk_frames=frames, length=int(frames * 88.2))
    data = one_chunk_file(header, frames)
    assert len(data) > 19.9 * 2**20
    reader = Reader(io.BytesIO(data))
    tracemalloc.start()
    try:
        codes = reader.read_range(40_000, 40_010)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.2 * len(data), peak
    body = data[7 + int.from_bytes(data[5:7], "little") + 4 + 2 : -12 - 4 - 4]
    for c, q, t in ((0, 0, 0), (31, 7, 9), (17, 3, 5)):
        assert codes[c, q, t] == code_at(body, (c * 8 + q) * frames + 40_000 + t, 10)
    assert np.array_equal(reader.read_range(39_990, 40_020)[..., 10:20], codes)


class ShortWrites(io.BytesIO):
    """A file that takes at most `most` bytes a write, as a pipe or a filling disk may, and none beyond `room`."""

    def __init__(self, most: int, room: int = 2**30):
        super().__init__()
        self.most, self.room = most, room

    def write(self, data) -> int:  # type: ignore[override]
        n = min(len(data), self.most, self.room - self.tell())
        return super().write(bytes(data[:n]))


def test_the_writer_completes_short_writes_and_a_full_disk_is_an_error():
    header, codes, data = make_file(frames=300, chunk=64)
    for most in (1, 7, 1000):
        out = ShortWrites(most)
        writer = Writer(out, header)
        writer.write(codes)
        writer.close()
        assert out.getvalue() == data
    with pytest.raises(OSError) as caught:
        writer = Writer(ShortWrites(1000, room=len(data) // 2), header)
        writer.write(codes)
        writer.close()
    assert caught.value.errno == errno.ENOSPC
