"""Hugging Face interop: parity with transformers' DacModel both ways, the Hub through a prepared cache, stride-5 decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import output_dc, synth

import rvqgan
from rvqgan.cli import main
from rvqgan.hub import export_hf, load_hf_folder

transformers = pytest.importorskip("transformers")

# Narrow versions of the 44.1, 24 and 16 kHz configurations (same strides, fewer channels: the same code paths).
CONFIGS = {
    "44khz": dict(sampling_rate=44100, downsampling_ratios=[2, 4, 8, 8], encoder_hidden_size=4, decoder_hidden_size=64),
    "24khz": dict(sampling_rate=24000, downsampling_ratios=[2, 4, 5, 8], encoder_hidden_size=4, decoder_hidden_size=64),
    "16khz": dict(sampling_rate=16000, downsampling_ratios=[2, 4, 5, 8], encoder_hidden_size=4, decoder_hidden_size=64),
}


def dac_model(name: str, n_codebooks: int = 4) -> transformers.DacModel:
    torch.manual_seed(0)
    config = transformers.DacConfig(**CONFIGS[name], n_codebooks=n_codebooks, codebook_size=1024, codebook_dim=8)
    model = transformers.DacModel(config).eval()
    with torch.no_grad():  # random weights everywhere, biases and Snake alphas included
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def their_codes_and_audio(model: transformers.DacModel, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        codes = model.encode(audio).audio_codes
        return codes, model.decode(audio_codes=codes).audio_values


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_save_pretrained_folder_loads_with_the_same_codes_and_audio(name, tmp_path):
    theirs = dac_model(name)
    theirs.save_pretrained(tmp_path / "hf")
    ours = rvqgan.load_model(tmp_path / "hf")
    hop = ours.hop_length
    audio = synth(hop * 40, ours.sample_rate)
    codes, decoded = their_codes_and_audio(theirs, audio)
    with torch.no_grad():
        our_codes = ours.encode(audio)
        our_audio = ours.decode(our_codes)[:, 0]
    assert torch.equal(our_codes, codes)
    n = decoded.shape[-1]  # DacModel's whole length (stride 5: 8 samples short of frames × hop)
    assert our_audio.shape[-1] == codes.shape[-1] * hop and (our_audio[..., n:] == 0).all()  # padded outside the network
    assert (our_audio[..., :n] - decoded).abs().max() < 1e-5


@pytest.mark.parametrize("name", list(CONFIGS))
def test_export_hf_loads_in_dac_model_with_the_same_codes_and_audio(name, tmp_path):
    ours = load_hf_folder_from(dac_model(name), tmp_path)  # weights in our model, then exported back
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ours.finetuned_from = "dac_24khz (weights 0123456789abcdef)"  # kept in config.json, which transformers still reads
    assert (
        main(["export", str(rvqgan.save_model(ours, tmp_path / "m.safetensors")), str(tmp_path / "out"), "--format", "hf"]) == 0
    )
    theirs = transformers.DacModel.from_pretrained(tmp_path / "out").eval()
    assert theirs.config.rvqgan == {"finetuned_from": ours.finetuned_from}
    audio = synth(ours.hop_length * 40, ours.sample_rate)
    codes, decoded = their_codes_and_audio(theirs, audio)
    with torch.no_grad():
        assert torch.equal(ours.encode(audio), codes)
        assert (ours.decode(codes)[:, 0, : decoded.shape[-1]] - decoded).abs().max() < 1e-5


def load_hf_folder_from(model: transformers.DacModel, tmp_path: Path) -> rvqgan.Codec:
    model.save_pretrained(tmp_path / "from")
    return load_hf_folder(tmp_path / "from").train()


def test_the_default_model_cannot_be_expressed_as_a_dac_model(tmp_path, capsys):
    assert main(["export", "default", str(tmp_path / "out"), "--format", "hf"]) == 1
    assert "latent_dim" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["24khz", "16khz"])
def test_official_format_stride_5_weights_decode_as_the_reference(name, tmp_path):
    """A DAC .pth of the 24/16 kHz architecture (random weights) decodes like DacModel, an independent implementation
    of the reference, over the whole length; and a file round trip keeps the input's exact length."""
    from rvqgan.bitstream import Reader
    from rvqgan.files import compress_file, decompress_file

    theirs = dac_model(name)
    ours = load_hf_folder_from(theirs, tmp_path)
    state = {k: v.detach().clone() for k, v in ours.state_dict().items()}
    kwargs = {k: v for k, v in ours.config.to_dict().items() if k not in ("output_padding", "quantizer_dropout")}
    torch.save({"state_dict": state, "metadata": {"kwargs": {**kwargs, "quantizer_dropout": False}}}, tmp_path / "w.pth")
    imported = rvqgan.load_model(tmp_path / "w.pth")
    assert imported.config.output_padding is False
    audio = synth(imported.hop_length * 50, imported.sample_rate)
    codes, decoded = their_codes_and_audio(theirs, audio)
    with torch.no_grad():
        ours_audio = imported.decode(codes)[:, 0]
    n = decoded.shape[-1]
    assert n == codes.shape[-1] * imported.hop_length - 8  # the reference's stride-5 decoder
    assert (ours_audio[..., :n] - decoded).abs().max() < 1e-4 and (ours_audio[..., n:] == 0).all()
    wav = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(wav, audio[0, 0].numpy(), imported.sample_rate, subtype="FLOAT")
    with open(tmp_path / "x.rvq", "wb") as f:
        compress_file(imported, str(wav), f)
    with open(tmp_path / "x.rvq", "rb") as f:
        decompress_file(imported, Reader(f), str(tmp_path / "y.wav"), chunk_seconds=0.2)  # many chunks
    y, _ = sf.read(tmp_path / "y.wav")
    assert len(y) == audio.shape[-1]  # exact length: the reference's 8 missing samples are padded outside the network
    n = decoded.shape[-1]  # all the reference decodes (the file adds 8 samples of padding after them)
    assert np.abs(y[:n] - decoded[0, :n].numpy()).max() < 2e-4  # 16-bit output


def test_the_hub_through_a_prepared_cache_offline(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    theirs = dac_model("16khz")
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--descript--dac_tiny" / "snapshots" / commit
    theirs.save_pretrained(snapshot)
    (tmp_path / "hub" / "models--descript--dac_tiny" / "refs").mkdir(parents=True)
    (tmp_path / "hub" / "models--descript--dac_tiny" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import importlib

    import huggingface_hub.constants

    importlib.reload(huggingface_hub.constants)  # it reads the environment when imported
    try:
        model = rvqgan.load_model("hf:descript/dac_tiny")
        assert model.sample_rate == 16000 and model.config.output_padding is False
        assert rvqgan.load_model(f"hf:descript/dac_tiny@{commit}").weights_id() == model.weights_id()
        with pytest.raises(rvqgan.CheckpointError, match="hf:descript/missing: cannot get it") as info:
            rvqgan.load_model("hf:descript/missing")
        assert "\n" not in str(info.value)
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)


def test_a_folder_that_is_not_a_dac_model_is_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "m" / "model.safetensors").write_bytes(b"")
    with pytest.raises(rvqgan.CheckpointError, match="not a DAC model config"):
        rvqgan.load_model(tmp_path / "m")


def test_a_malformed_origin_record_in_a_folder_is_one_line(tmp_path):
    model = load_hf_folder_from(dac_model("16khz"), tmp_path)
    model.decodes_codes_of = frozenset({"0123456789abcdef"})
    folder = export_hf(model, tmp_path / "m")
    assert rvqgan.load_model(folder).decodes_codes_of == {"0123456789abcdef"}
    config = json.loads((folder / "config.json").read_text())
    for bad, message in [("text", "bad provenance record"), ({"decodes_codes_of": "xyz"}, "bad 'decodes_codes_of'")]:
        (folder / "config.json").write_text(json.dumps({**config, "rvqgan": bad}))
        with pytest.raises(rvqgan.CheckpointError, match=message):
            rvqgan.load_model(folder)


def test_training_works_from_reference_decoders(tmp_path):
    """forward, remove_output_dc and a loss see frames × hop samples from a stride-5 decoder without output_padding."""
    from rvqgan.loss import multiscale_mel_loss

    ours = load_hf_folder_from(dac_model("24khz"), tmp_path)
    audio = synth(ours.hop_length * 10, ours.sample_rate)
    out = ours(audio)
    assert out.audio.shape == audio.shape
    loss = multiscale_mel_loss(out.audio, audio, ours.sample_rate)
    loss.backward()
    grads = [p.grad for p in ours.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        ours.decoder.model[-2].bias += 0.2  # a decoder that drifted to a DC offset
    before = output_dc(ours, audio)
    ours.remove_output_dc([audio])
    assert abs(before) > 0.02 and abs(output_dc(ours, audio)) < 0.1 * abs(before)


def test_all_zero_filters_and_wrong_shapes_in_a_folder(tmp_path):
    from safetensors.torch import load_file, save_file

    theirs = dac_model("16khz")
    with torch.no_grad():
        theirs.decoder.conv2.weight.zero_()  # a filter of zeros: g = 0 must give it back, not NaN
    theirs.save_pretrained(tmp_path / "hf")
    ours = rvqgan.load_model(tmp_path / "hf")
    with torch.no_grad():
        assert torch.isfinite(ours.decode(torch.zeros(1, 4, 5, dtype=torch.long))).all()
    state = load_file(tmp_path / "hf" / "model.safetensors")
    state["decoder.conv2.weight"] = torch.zeros(1, 64, 9)
    save_file(state, str(tmp_path / "hf" / "model.safetensors"))
    with pytest.raises(rvqgan.CheckpointError, match="decoder.conv2.weight has shape"):
        rvqgan.load_model(tmp_path / "hf")


def test_a_file_decodes_whichever_output_padding_the_decoder_uses(tmp_path):
    import dataclasses

    import soundfile as sf

    from rvqgan.bitstream import Reader
    from rvqgan.files import compress_file, decompress_file

    padded = rvqgan.Codec(rvqgan.preset("tiny")).eval()
    reference = rvqgan.Codec(dataclasses.replace(padded.config, output_padding=False)).eval()
    reference.load_state_dict(padded.state_dict())
    audio = 0.1 * synth(8000)[0, 0].numpy()
    sf.write(tmp_path / "a.wav", audio, 16000)
    with open(tmp_path / "a.rvq", "wb") as f:
        compress_file(padded, str(tmp_path / "a.wav"), f)
    with open(tmp_path / "a.rvq", "rb") as f:
        decompress_file(reference, Reader(f), str(tmp_path / "b.wav"))
    assert sf.info(tmp_path / "b.wav").frames == len(audio)


BAD_HF_SPECS = [
    "hf:descript/dac_tiny@../../../../etc/x",  # a refs file outside the cache
    "hf:descript/dac_tiny@/etc/passwd",
    "hf:descript/dac_tiny@refs\\..\\x",
    "hf:descript/dac_tiny@.hidden",
    "hf:descript/dac_tiny@main/.",
    "hf:descript/dac_tiny@a b",
    "hf:descript/dac_tiny@main\nx",
    "hf:descript/dac_tiny@",
    "hf:../dac_tiny",
    "hf:descript/../x",
    "hf:/etc/passwd",
    "hf:a/b/c",
    "hf:descript--x/dac",
    "hf:-descript/dac",
    "hf:descript/dac.git",
    "hf:descript/" + "d" * 97,
    "hf:",
]


@pytest.mark.parametrize("spec", BAD_HF_SPECS)
def test_bad_repository_ids_and_revisions_never_reach_the_hub_client(spec, monkeypatch, capsys, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def never(*args, **kwargs):
        raise AssertionError(f"snapshot_download was called with {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", never)
    with pytest.raises(rvqgan.CheckpointError, match="not a Hugging Face repository id|is not a revision") as info:
        rvqgan.load_model(spec)
    assert "\n" not in str(info.value)
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(1600), 16000)
    assert main(["encode", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.rvq"), "--model", spec, "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert ("repository id" in err or "not a revision" in err) and "\n" not in err


@pytest.mark.parametrize(
    "spec, repo, revision",
    [
        ("hf:descript/dac_44khz", "descript/dac_44khz", None),
        ("hf:gpt2", "gpt2", None),
        ("hf:a.b_c-d/E.f_1@main", "a.b_c-d/E.f_1", "main"),
        ("hf:descript/dac@refs/pr/12", "descript/dac", "refs/pr/12"),
        ("hf:descript/dac@v1.0.0", "descript/dac", "v1.0.0"),
        ("hf:descript/dac@" + "0123456789abcdef" * 2 + "01234567", "descript/dac", "0123456789abcdef" * 2 + "01234567"),
        ("hf:o/" + "n" * 96, "o/" + "n" * 96, None),
    ],
)
def test_good_repository_ids_and_revisions_reach_the_client_unchanged(spec, repo, revision, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def offline(*args, **kwargs):
        calls.append((args, kwargs))
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(rvqgan.CheckpointError, match="cannot get it from the Hugging Face Hub"):
        rvqgan.load_model(spec)
    assert calls[0][0] == (repo,) and calls[0][1]["revision"] == revision


def test_non_finite_weights_in_a_folder_are_refused_naming_the_file_and_tensor(tmp_path, capsys):
    theirs = dac_model("16khz")
    with torch.no_grad():
        theirs.decoder.conv2.bias[0] = float("nan")
    theirs.save_pretrained(tmp_path / "hf")
    with pytest.raises(
        rvqgan.CheckpointError, match=r"model\.safetensors: weights are damaged: decoder\.conv2\.bias holds 1 NaN"
    ):
        rvqgan.load_model(tmp_path / "hf")
    theirs = dac_model("16khz")
    with torch.no_grad():
        theirs.encoder.conv1.weight[0, 0, 0] = float("inf")  # in a weight-normed conv: named as the file names it
    theirs.save_pretrained(tmp_path / "hf2")
    audio = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(audio, 0.1 * synth(16000)[0, 0].numpy(), 16000)
    capsys.readouterr()  # save_pretrained's progress bars
    assert main(["encode", str(audio), "-o", str(tmp_path / "a.rvq"), "--model", str(tmp_path / "hf2"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert "hf2/model.safetensors: weights are damaged: encoder.conv1.weight" in err and "\n" not in err
    assert not (tmp_path / "a.rvq").exists()
