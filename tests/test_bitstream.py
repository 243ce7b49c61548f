"""The .rvq format: round trips, bit packing, every corruption detected, legacy .dac read safely."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from conftest import FIXTURES

from rvqgan.bitstream import FormatError, Header, Reader, Writer, pack_codes, read_bytes, read_dac_file, unpack_codes


def make_file(frames: int = 50, channels: int = 2, n_q: int = 4, K: int = 1024, chunk: int = 7, seed: int = 0):
    header = Header(
        model="m",
        hash="0123456789abcdef",
        sr=16000,
        orig_sr=44100,
        channels=channels,
        length=frames * 88,
        n_q=n_q,
        K=K,
        fps=500.0,
        chunk=chunk,
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
    assert len(data) * 8 < payload_bits * 1.02 + 8 * 200


def test_bad_magic_and_version():
    _, _, data = make_file()
    with pytest.raises(FormatError, match="bad magic"):
        read_bytes(b"RIFF" + data[4:])
    with pytest.raises(FormatError, match="version 9 is not supported"):
        read_bytes(data[:4] + bytes([9]) + data[5:])


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


def test_legacy_dac_read_without_pickle():
    with open(FIXTURES / "reference_small.dac", "rb") as f:
        dac = read_dac_file(f)
    assert dac.codes.dtype == np.int64 and dac.codes.shape == (1, 4, 657)
    assert dac.sample_rate == 16000 and dac.original_length == 16000 and dac.chunk_length == 219


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/rvqgan_dac_pwned",))


def test_malicious_dac_refused_without_executing(tmp_path):
    marker = "/tmp/rvqgan_dac_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.dac"
    payload = {"codes": np.zeros((1, 1, 1), np.uint16), "metadata": {"dac_version": "1.0.0", "x": _Evil()}}
    with open(path, "wb") as f:
        np.save(f, payload, allow_pickle=True)
    with open(path, "rb") as f, pytest.raises(FormatError, match="refused.*posix.system|refused.*os.system"):
        read_dac_file(f)
    assert not os.path.exists(marker)


def test_pickle_is_not_a_code_file(tmp_path):
    with pytest.raises(FormatError, match="bad magic"):
        read_bytes(pickle.dumps({"codes": 1}))
