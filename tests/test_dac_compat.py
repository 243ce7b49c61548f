"""DAC interoperability: `.dac` files read without pickle and decoded like the reference; official `.pth` weights.

The fixtures were made with descript-audio-codec 1.0.0 by
../shared/fixtures/dac-reference/make_reference_fixtures.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import FIXTURES, needs_fixtures

import rvqgan
from rvqgan.bitstream import FormatError
from rvqgan.checkpoint import load_model
from rvqgan.cli import main
from rvqgan.dac_compat import decode_dac_file, decompress_dac, load_dac_pth, read_dac_file


@needs_fixtures
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


@needs_fixtures
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


@needs_fixtures
def test_import_dac_cli_round_trip(tmp_path):
    out = tmp_path / "ref.safetensors"
    assert main(["import-dac", str(FIXTURES / "reference_small.pth"), str(out)]) == 0
    ref, ours = load_model(FIXTURES / "reference_small.pth"), load_model(out)
    assert ref.config == ours.config
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in ref.state_dict().items())
    assert main(["import-dac", str(FIXTURES / "reference_small.pth"), str(out)]) == 1  # exists, no --overwrite
    direct = load_dac_pth(FIXTURES / "reference_small.pth")
    assert all(torch.equal(v, direct.state_dict()[k]) for k, v in ref.state_dict().items())
