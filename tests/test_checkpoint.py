"""Checkpoint format: exact round trips and clear errors for damaged or unsafe files."""

from __future__ import annotations

import json
import pickle
import time

import pytest
import torch
from conftest import Pwn, synth

import rvqgan
from rvqgan.checkpoint import CheckpointError, save_model
from rvqgan.cli import main
from rvqgan.loading import load_model


def test_round_trip_is_exact(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.config == tiny_model.config
    a, b = tiny_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        x = synth(999)
        assert torch.equal(loaded.encode(x), tiny_model.encode(x))


def test_truncated_checkpoint(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_model(path)


def test_tampered_checkpoint(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="modified or corrupted"):
        load_model(path)


def test_config_not_matching_weights(tiny_model, tmp_path):
    from safetensors.torch import save_file

    from rvqgan.identity import tensors_digest

    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    cfg = {**tiny_model.config.to_dict(), "n_codebooks": 6}
    path = tmp_path / "m.safetensors"
    save_file(
        state,
        str(path),
        metadata={"format": "rvqgan", "format_version": "1", "config": json.dumps(cfg), "sha256": tensors_digest(state)},
    )
    with pytest.raises(CheckpointError, match="do not match the model config.*missing"):
        load_model(path)
    cfg = {**tiny_model.config.to_dict(), "latent_dim": 48}
    save_file(
        state,
        str(path),
        metadata={"format": "rvqgan", "format_version": "1", "config": json.dumps(cfg), "sha256": tensors_digest(state)},
    )
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_model(path)
    cfg = {**tiny_model.config.to_dict(), "bogus": 1}
    save_file(
        state,
        str(path),
        metadata={"format": "rvqgan", "format_version": "1", "config": json.dumps(cfg), "sha256": tensors_digest(state)},
    )
    with pytest.raises(CheckpointError, match="unknown config key"):
        load_model(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pickle_disguised_as_checkpoint_is_refused(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": {}, "metadata": {"kwargs": {}}, "x": Pwn(marker)}, path)
    with pytest.raises(CheckpointError, match="refused|not a valid"):
        load_model(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(Pwn(marker)))
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()


def test_fp16_storage(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "m.safetensors", dtype=torch.float16)
    loaded = load_model(path)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.half().float())


def _write_checkpoint(path, state, config_text, **extra):
    from safetensors.torch import save_file

    from rvqgan.identity import tensors_digest

    metadata = {"format": "rvqgan", "format_version": "1", "config": config_text, "sha256": tensors_digest(state), **extra}
    save_file(state, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    "config_text, match",
    [
        ("null", "expected a JSON object"),
        ("5", "expected a JSON object"),
        ('"text"', "expected a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
        ('{"n_codebooks": ' + "[" * 50_000 + "]" * 50_000 + "}", "bad model config"),
        ("{not json", "not JSON"),
        ('{"n_codebooks": 10000000}', r"n_codebooks must be an integer in \[1, 256\]"),
        ('{"codebook_size": 1e12}', "codebook_size"),
        ('{"decoder_dim": 1000000000}', "decoder_dim"),
        ('{"encoder_rates": [2, 4, 8, 8, 2, 2, 2, 2, 2, 2]}', "encoder_rates"),
        ('{"sample_rate": -1}', "sample_rate"),
        ('{"n_codebooks": true}', "n_codebooks"),
    ],
)
def test_hostile_configs_fail_fast_with_one_line(tmp_path, config_text, match):
    state = {"x": torch.zeros(2)}
    path = _write_checkpoint(tmp_path / "m.safetensors", state, config_text)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=match) as info:
        load_model(path)
    assert time.perf_counter() - t0 < 30 and "\n" not in str(info.value)


def test_tensor_names_and_shapes_are_checked_before_building(tiny_model, tmp_path, monkeypatch):
    """A tiny file that claims a big model is refused from its header, before any model is built."""
    import rvqgan.model as model_module

    built = []
    init = model_module.Codec.__init__

    def counting_init(self, config):
        built.append(torch.empty(0).device.type)  # the device the model's tensors would be made on
        init(self, config)

    monkeypatch.setattr(model_module.Codec, "__init__", counting_init)
    state = {"encoder.block.0.weight": torch.zeros(1)}
    config = json.dumps({**rvqgan.preset("44khz_8kbps").to_dict(), "n_codebooks": 256, "codebook_size": 65536})
    path = _write_checkpoint(tmp_path / "big.safetensors", state, config)
    assert path.stat().st_size < 2000
    with pytest.raises(CheckpointError, match="do not match the model config"):
        load_model(path)
    assert built == ["meta"]  # checked against a model on the meta device; none was built for real


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_non_finite_weights_are_refused_even_with_a_matching_digest(tiny_model, tmp_path, capsys, dtype):
    """NaN or infinite weights (a diverged run saved as is) run without error and code every input alike: refused at
    load with the file and a tensor named, from our checkpoints as from every other reader."""
    with torch.no_grad():
        tiny_model.decoder.model[-2].bias.fill_(float("nan"))
        next(tiny_model.quantizer.parameters()).view(-1)[:3] = float("inf")
    path = save_model(tiny_model, tmp_path / "m.safetensors", dtype=dtype)  # its recorded SHA-256 is right
    with pytest.raises(CheckpointError, match=r"m\.safetensors: weights are damaged: \S+ holds \d+ NaN or infinite values?$"):
        load_model(path)
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, 0.1 * synth(1600)[0, 0].numpy(), 16000)
    assert main(["encode", str(wav), "-o", str(tmp_path / "a.rvq"), "--model", str(path), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert "weights are damaged" in err and "\n" not in err and not (tmp_path / "a.rvq").exists()


def test_build_from_state_dict_names_the_first_damaged_tensor(tiny_model):
    from rvqgan.checkpoint import build_from_state_dict

    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    names = sorted(k for k, v in state.items() if v.is_floating_point())
    state[names[5]].view(-1)[0] = float("nan")
    state[names[9]].view(-1)[:2] = float("inf")
    with pytest.raises(CheckpointError, match=rf"^here: weights are damaged: {names[5]} holds 1 NaN"):
        build_from_state_dict(tiny_model.config, state, "here")
    state[names[5]].view(-1)[0] = 0.0
    with pytest.raises(CheckpointError, match=rf"{names[9]} holds 2 NaN or infinite values$"):
        build_from_state_dict(tiny_model.config, state, "here")


def test_discriminator_files_round_trip_with_their_config_and_refuse_alterations(tmp_path):
    from safetensors.torch import save_file

    from rvqgan.checkpoint import load_discriminator, save_discriminator
    from rvqgan.config import DiscriminatorConfig
    from rvqgan.discriminator import Discriminator

    config = DiscriminatorConfig(periods=(2,), fft_sizes=(512,), period_channels=(8, 16), stft_channels=8)
    state = Discriminator(config).state_dict()
    path = save_discriminator({k: v.half() for k, v in state.items()}, config, tmp_path / "d.safetensors")
    loaded_config, loaded = load_discriminator(path)
    assert loaded_config == config and set(loaded) == set(state)
    assert all(loaded[k].dtype == torch.float32 and torch.equal(loaded[k], state[k].half().float()) for k in state)
    # A bare state dict (no metadata) loads without a config; an altered or damaged file does not load.
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "bare.safetensors"))
    assert load_discriminator(tmp_path / "bare.safetensors")[0] is None
    altered = {k: v.clone() for k, v in state.items()}
    name = next(iter(altered))
    altered[name] += 1
    metadata = {"format": "rvqgan-discriminator", "config": "{}", "sha256": "0" * 64}
    save_file(altered, str(tmp_path / "altered.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="modified or corrupted"):
        load_discriminator(tmp_path / "altered.safetensors")
    altered[name] = torch.full_like(altered[name], float("nan"))
    save_file(altered, str(tmp_path / "nan.safetensors"))
    with pytest.raises(CheckpointError, match="damaged"):
        load_discriminator(tmp_path / "nan.safetensors")
    from rvqgan.identity import tensors_digest

    metadata = {"format": "rvqgan-discriminator", "config": '{"period_channels": [100000]}', "sha256": tensors_digest(state)}
    save_file(state, str(tmp_path / "huge.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="bad discriminator config.*period_channels"):
        load_discriminator(tmp_path / "huge.safetensors")
    (tmp_path / "short.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_discriminator(tmp_path / "short.safetensors")


@pytest.mark.parametrize("ids, ok", [("", True), ("0123456789abcdef,fedcba9876543210", True), ("xyz", False), ("0" * 17, False)])
def test_the_weights_a_model_decodes_the_codes_of_are_read_from_its_metadata(tiny_model, tmp_path, ids, ok):
    path = save_model(tiny_model, tmp_path / "m.safetensors", extra={"decodes_codes_of": ids})
    if not ok:
        with pytest.raises(CheckpointError, match="bad 'decodes_codes_of'"):
            load_model(path)
        return
    model = load_model(path)
    assert model.decodes_codes_of == frozenset(i for i in ids.split(",") if i)
    assert model.makes_codes_of(model.weights_id()) and model.folded().decodes_codes_of == model.decodes_codes_of
    assert all(model.makes_codes_of(i) for i in model.decodes_codes_of) and not model.makes_codes_of("1" * 16)


@pytest.mark.parametrize("origin, ok", [("dac_24khz (weights 0123456789abcdef)", True), ("x" * 2001, False)])
def test_what_a_model_was_fine_tuned_from_is_kept_through_save_load_and_folding(tiny_model, tmp_path, origin, ok):
    path = save_model(tiny_model, tmp_path / "m.safetensors", extra={"finetuned_from": origin})
    if not ok:
        with pytest.raises(CheckpointError, match="bad 'finetuned_from'"):
            load_model(path)
        return
    model = load_model(path)
    assert model.finetuned_from == origin and model.folded().provenance() == {"finetuned_from": origin}
    again = load_model(save_model(model, tmp_path / "again.safetensors"))
    assert again.provenance() == {"finetuned_from": origin} and tiny_model.provenance() == {}
