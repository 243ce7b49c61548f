"""DAC interoperability: `.dac` files read without pickle and decoded like the reference; official `.pth` weights.

The fixtures were made with descript-audio-codec 1.0.0 by
tests/data/dac-reference/make_reference_fixtures.py.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES, Pwn, write_dac

import rvqgan
from rvqgan.bitstream import MAGIC, FormatError
from rvqgan.cli import main
from rvqgan.dac_compat import (
    DAC_MAGIC,
    _unpadded,
    decode_dac_file,
    decompress_dac,
    load_dac_pth,
    read_code_stream,
    read_dac_file,
    sniff_code_file,
)
from rvqgan.loading import load_model


def test_legacy_dac_read_without_pickle():
    with open(FIXTURES / "reference_small.dac", "rb") as f:
        dac = read_dac_file(f)
    assert dac.codes.dtype == np.int64 and dac.codes.shape == (1, 4, 657)
    assert dac.sample_rate == 16000 and dac.original_length == 16000 and dac.chunk_length == 219


def test_malicious_dac_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.dac"
    payload = {"codes": np.zeros((1, 1, 1), np.uint16), "metadata": {"dac_version": "1.0.0", "x": Pwn(marker)}}
    with open(path, "wb") as f:
        np.save(f, payload, allow_pickle=True)
    with open(path, "rb") as f, pytest.raises(FormatError, match="refused.*posix.system|refused.*os.system"):
        read_dac_file(f)
    assert not marker.exists()


def test_legacy_dac_file_decodes_like_the_reference():
    with open(FIXTURES / "reference_small.dac", "rb") as f:
        dac = read_dac_file(f)
    assert dac.codes.shape == (1, 4, 657) and not dac.padding
    model = rvqgan.load_model(FIXTURES / "reference_small.pth")
    audio, sr = decode_dac_file(model, dac)
    ref, ref_sr = sf.read(FIXTURES / "reference_small_decompressed.wav", dtype="float32")
    assert sr == ref_sr and audio.shape == (1, len(ref))
    # Same waveform; the level differs by our loudness meter's 0.02 dB from the reference's.
    assert np.corrcoef(audio[0], ref)[0, 1] > 0.99999
    gain = float(audio[0] @ ref / (ref @ ref))
    assert abs(gain - 1) < 0.006
    assert np.abs(audio[0] / gain - ref).max() < 1e-4
    # The one call the CLI makes: the same audio, cut to a range; the model is loaded only after the file is read.
    with open(FIXTURES / "reference_small.dac", "rb") as f:
        part, part_sr = decompress_dac(f, lambda: model, start=0.25, end=0.5)
    assert part_sr == sr and np.array_equal(part, audio[:, 4000:8000])


def test_not_a_dac_file_is_reported_before_loading_a_model(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, np.zeros(3))

    def no_model() -> rvqgan.Codec:
        raise AssertionError("the model was loaded")

    with open(path, "rb") as f, pytest.raises(FormatError, match="expected a pickled dict"):
        decompress_dac(f, no_model)


def test_import_dac_cli_round_trip(tmp_path):
    out = tmp_path / "ref.safetensors"
    assert main(["import-dac", str(FIXTURES / "reference_small.pth"), str(out)]) == 0
    ref, ours = load_model(FIXTURES / "reference_small.pth"), load_model(out)
    assert ref.config == ours.config
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in ref.state_dict().items())
    assert main(["import-dac", str(FIXTURES / "reference_small.pth"), str(out)]) == 1  # exists, no --overwrite
    direct = load_dac_pth(FIXTURES / "reference_small.pth")
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in ref.state_dict().items())


def shared_nest(depth: int) -> list:
    """A list that pickles to a few bytes (shared references) but holds 2**depth leaves when walked."""
    x: list = [1.0]
    for _ in range(depth):
        x = [x, x]
    return x


@pytest.mark.parametrize(
    "meta, match",
    [
        ({"original_length": 10**13}, "original_length"),
        ({"original_length": "5"}, "original_length.*integer"),
        ({"original_length": 0}, "original_length"),
        ({"original_length": True}, "original_length"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 16000.5}, "sample_rate"),
        ({"channels": 1.5}, "channels"),
        ({"channels": 3}, "multiple of its 3 channels"),
        ({"chunk_length": -1}, "chunk_length"),
        ({"padding": "yes"}, "padding"),
        ({"input_db": shared_nest(60)}, "input_db"),
        ({"input_db": np.array([np.nan], np.float32)}, "input_db.*finite"),
        ({"input_db": np.zeros(0, np.float32)}, "input_db"),
        ({"input_db": {"a": 1}}, "input_db"),
        ({"dac_version": ["1.0.0"]}, "version"),
    ],
)
def test_dac_metadata_of_the_wrong_type_or_range_is_refused_at_once(tmp_path, meta, match):
    path = write_dac(tmp_path / "x.dac", **meta)
    assert path.stat().st_size < 4000
    t0 = time.perf_counter()
    with open(path, "rb") as f, pytest.raises(FormatError, match=match):
        read_dac_file(f)
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize(
    "codes",
    [
        np.zeros((1, 2, 0), np.uint16),
        np.zeros((0, 2, 5), np.uint16),
        np.zeros((1, 0, 5), np.uint16),
        np.full((1, 1, 5), -1, np.int64),
    ],
)
def test_empty_or_negative_dac_codes_are_refused(tmp_path, codes):
    with open(write_dac(tmp_path / "x.dac", codes), "rb") as f, pytest.raises(FormatError, match="codes"):
        read_dac_file(f)


def test_dac_length_must_agree_with_its_frames(tmp_path, tiny_model):
    path = write_dac(tmp_path / "x.dac", original_length=2 * 10**9)  # 50 frames claim 35 hours
    with open(path, "rb") as f, pytest.raises(FormatError, match="claims 2000000000 samples"):
        decompress_dac(f, tiny_model)


@pytest.mark.parametrize("start, end", [(-0.5, None), (None, -0.1), (0.5, 0.2), (2.0, None), (float("nan"), None)])
def test_dac_time_ranges_outside_the_audio_are_refused(tmp_path, tiny_model, start, end):
    path = write_dac(tmp_path / "x.dac")
    with open(path, "rb") as f, pytest.raises(ValueError, match="--start|--end"):
        decompress_dac(f, tiny_model, start=start, end=end)


@pytest.mark.parametrize(
    "payload, match",
    [
        ({"state_dict": [1, 2]}, "state_dict"),
        ({"state_dict": {}, "metadata": [1]}, "metadata"),
        ({"state_dict": {}, "metadata": {"kwargs": "x"}}, "kwargs"),
        ({"state_dict": {"a": 1}, "metadata": {"kwargs": {}}}, "not a named tensor"),
        ({"state_dict": {}, "metadata": {"kwargs": {"n_codebooks": 10**7}}}, "n_codebooks"),
        ({"state_dict": {}, "metadata": {"kwargs": {"sample_rate": shared_nest(60)}}}, "sample_rate"),
        ({"state_dict": {}, "metadata": {"kwargs": {"encoder_rates": shared_nest(60)}}}, "encoder_rates"),
        ([1, 2, 3], "state_dict"),
    ],
)
def test_pth_files_of_the_wrong_shape_are_one_line(tmp_path, payload, match):
    path = tmp_path / "w.pth"
    torch.save(payload, path)
    t0 = time.perf_counter()
    with pytest.raises(rvqgan.CheckpointError, match=match) as info:
        load_model(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 500 and time.perf_counter() - t0 < 10


def test_only_the_first_item_of_a_dac_file_is_decoded(tmp_path, tiny_model):
    codes = np.random.default_rng(0).integers(0, 256, (5000, 2, 8)).astype(np.uint16)  # 5000 items, only one is returned
    path = write_dac(tmp_path / "x.dac", codes, original_length=200, input_db=None)
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        audio, sr = decompress_dac(f, tiny_model)
    assert audio.shape == (1, 200) and time.perf_counter() - t0 < 10


@pytest.mark.parametrize("padding", [True, False])
def test_dac_chunks_decode_as_the_reference_decodes_them(tmp_path, tiny_model, padding):
    """Each chunk is decoded on its own (padded ones streamed, in bounded memory): equal to a whole decode per chunk."""
    codes = np.random.default_rng(1).integers(0, 256, (1, 3, 120)).astype(np.uint16)
    path = write_dac(tmp_path / "x.dac", codes, original_length=100 * 32, chunk_length=40, padding=padding, input_db=None)
    with open(path, "rb") as f:
        dac = read_dac_file(f)
    audio, _ = decode_dac_file(tiny_model, dac)
    net = tiny_model if padding else _unpadded(tiny_model)
    with torch.no_grad():
        pieces = [
            net.decode_latents(net.codes_to_latents(torch.from_numpy(dac.codes[..., i : i + 40])), False)
            for i in range(0, 120, 40)
        ]
    expected = torch.cat(pieces, -1)[0].numpy()
    n = min(expected.shape[-1], audio.shape[-1])
    assert np.abs(audio[:, :n] - expected[:, :n]).max() < 1e-5


def test_code_files_are_told_apart_by_their_first_bytes(tmp_path):
    dac = write_dac(io.BytesIO(), np.zeros((1, 1, 4), np.uint16)).getvalue()
    assert dac.startswith(DAC_MAGIC) and sniff_code_file(dac[:6]) == "dac"
    assert sniff_code_file(MAGIC + b"\3\0\0") == "rvq"
    assert sniff_code_file(b"RIFF\0\0") is None and sniff_code_file(b"") is None


def test_a_piped_code_file_is_checked_before_it_is_read():
    rvq = MAGIC + bytes(40)
    stream = read_code_stream(io.BytesIO(rvq))
    assert stream.name == "<stdin>" and stream.read() == rvq
    with pytest.raises(FormatError, match="no input"):
        read_code_stream(io.BytesIO(b""))
    with pytest.raises(FormatError, match="not an .rvq or .dac code file"):
        read_code_stream(io.BytesIO(b"RIFF" + bytes(10**6)))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_pth_weights_that_are_not_finite_are_refused_naming_the_tensor(tmp_path, capsys, value):
    """A damaged .pth would load and code every input to the same codes, exit 0: refused on load and on import-dac."""
    data = torch.load(FIXTURES / "reference_small.pth", map_location="cpu", weights_only=True)
    name = sorted(k for k, v in data["state_dict"].items() if v.is_floating_point())[-1]
    data["state_dict"][name] = data["state_dict"][name].clone()
    data["state_dict"][name].view(-1)[-1] = value
    torch.save(data, tmp_path / "w.pth")
    with pytest.raises(rvqgan.CheckpointError, match=rf"w\.pth: weights are damaged: {name} holds 1 NaN or infinite value$"):
        load_dac_pth(tmp_path / "w.pth")
    assert main(["import-dac", str(tmp_path / "w.pth"), str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert "weights are damaged" in err and "\n" not in err and not (tmp_path / "w.safetensors").exists()
