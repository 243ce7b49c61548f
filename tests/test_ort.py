"""ONNX export and the ONNX Runtime backend: the same codes and audio within 1e-4 as torch, everywhere a model is used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import check_backend_like_torch, synth

import rvqgan
from rvqgan.backends import BackendError
from rvqgan.backends.ort import with_onnxruntime
from rvqgan.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module", params=["tiny", "default"])
def pair(request, tmp_path_factory):
    torch.manual_seed(0)
    model = (rvqgan.build_model("tiny") if request.param == "tiny" else rvqgan.load_model("default")).folded()
    return model, with_onnxruntime(model, cache_dir=tmp_path_factory.mktemp("onnx"))


def test_codes_identical_and_audio_within_1e_4(pair):
    torch_model, ort_model = pair
    audio = synth(torch_model.hop_length * 120 + 17, torch_model.sample_rate)
    with torch.no_grad():
        codes = torch_model.encode(audio)
        assert torch.equal(ort_model.encode(audio), codes)
        assert (ort_model.decode(codes) - torch_model.decode(codes)).abs().max() < 1e-4
        assert torch.equal(ort_model.encode(audio, 3), codes[:, :3])


def test_streaming_and_file_pipeline_use_the_backend_the_same_way(pair, tmp_path):
    check_backend_like_torch(*pair, tmp_path)


def test_cli_backend_and_tokenize(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    model = tmp_path / "tiny.safetensors"
    rvqgan.save_model(rvqgan.build_model("tiny"), model)
    audio = 0.3 * synth(16000)[0, 0].numpy()
    sf.write(tmp_path / "a.wav", audio, 16000)
    for backend in ("torch", "onnxruntime"):
        args = [
            "encode",
            str(tmp_path / "a.wav"),
            "-o",
            str(tmp_path / f"{backend}.rvq"),
            "--model",
            str(model),
            "--backend",
            backend,
            "-q",
        ]
        assert main(args) == 0
        args = [
            "tokenize",
            str(tmp_path / "a.wav"),
            "-o",
            str(tmp_path / f"tok-{backend}"),
            "--model",
            str(model),
            "--backend",
            backend,
            "--workers",
            "0",
            "-q",
        ]
        assert main(args) == 0
    assert (tmp_path / "torch.rvq").read_bytes() == (tmp_path / "onnxruntime.rvq").read_bytes()
    rows = [
        pq.read_table(next((tmp_path / f"tok-{b}").glob("shard-*.parquet"))).to_pylist()[0]["codes"]
        for b in ("torch", "onnxruntime")
    ]
    assert rows[0] == rows[1]
    args = [
        "decode",
        str(tmp_path / "torch.rvq"),
        "-o",
        str(tmp_path / "b.wav"),
        "--model",
        str(model),
        "--backend",
        "onnxruntime",
        "-q",
    ]
    assert main(args) == 0 and sf.info(tmp_path / "b.wav").frames == len(audio)
    assert main([*args[:-1], "--precision", "bf16", "--overwrite"]) == 1
    assert "fp32" in capsys.readouterr().err


def test_exported_graphs_work_without_rvqgan(tmp_path):
    """The README's example: ONNX Runtime and numpy only."""
    model = rvqgan.build_model("tiny")
    rvqgan.save_model(model, tmp_path / "tiny.safetensors")
    assert main(["export", str(tmp_path / "tiny.safetensors"), str(tmp_path / "onnx"), "--format", "onnx"]) == 0
    script = textwrap.dedent(
        f"""
        import sys; sys.modules["rvqgan"] = None  # prove the example does not need the package
        import json, numpy as np, onnxruntime as ort
        folder = {str(tmp_path / "onnx")!r}
        hop = json.load(open(folder + "/rvqgan.json"))["hop_length"]
        encode = ort.InferenceSession(folder + "/encode.onnx")
        decode = ort.InferenceSession(folder + "/decode.onnx")
        audio = np.random.default_rng(0).standard_normal((1, 1, 50 * hop)).astype(np.float32) * 0.1
        codes = encode.run(None, {{"audio": audio}})[0]            # [1, n_codebooks, 50] int64
        decoded = decode.run(None, {{"codes": codes}})[0]          # [1, 1, 50 * hop] float32
        np.save({str(tmp_path / "codes.npy")!r}, codes)
        print(codes.shape, decoded.shape)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1000:]
    codes = np.load(tmp_path / "codes.npy")
    audio = np.random.default_rng(0).standard_normal((1, 1, 50 * model.hop_length)).astype(np.float32) * 0.1
    with torch.no_grad():
        assert np.array_equal(codes, model.eval().encode(torch.from_numpy(audio)).numpy())


def test_models_sharing_a_cache_folder_keep_their_own_graphs(tmp_path):
    torch.manual_seed(1)
    a, b = rvqgan.build_model("tiny").folded(), rvqgan.build_model("tiny").folded()
    ort_a, ort_b = with_onnxruntime(a, cache_dir=tmp_path), with_onnxruntime(b, cache_dir=tmp_path)
    audio = synth(3200)
    with torch.no_grad():
        assert torch.equal(ort_a.encode(audio), a.encode(audio)) and torch.equal(ort_b.encode(audio), b.encode(audio))
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


def test_the_runtime_model_is_for_fp32_inference_only(pair):
    _, ort_model = pair
    with pytest.raises(RuntimeError, match="fp32 on the CPU"):
        ort_model.folded("bf16")
    with pytest.raises(RuntimeError, match="inference only"):
        ort_model.train()
    with pytest.raises(RuntimeError, match="no torch weights"):
        rvqgan.save_model(ort_model, "/tmp/never.safetensors")
    with torch.no_grad():  # the refused calls left it working
        assert ort_model.encode(synth(ort_model.hop_length * 4, ort_model.sample_rate)).shape[-1] == 4


def test_reference_decoders_export_whole_frames_and_load_model_takes_a_backend(tmp_path, monkeypatch):
    import dataclasses

    torch.manual_seed(0)
    model = rvqgan.Codec(
        dataclasses.replace(rvqgan.preset("16khz"), encoder_dim=4, decoder_dim=64, latent_dim=64, output_padding=False)
    )
    model.eval()
    rvqgan.save_model(model, tmp_path / "m.safetensors")
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "home"))
    ort_model = rvqgan.load_model(tmp_path / "m.safetensors", backend="onnxruntime")
    codes = torch.randint(0, 1024, (1, model.n_codebooks, 12))
    with torch.no_grad():
        expected = model.decode(codes)
        assert expected.shape[-1] == 12 * 320 and (ort_model.decode(codes) - expected).abs().max() < 1e-4
    import onnxruntime as ort

    folder = next((tmp_path / "home" / "onnx").iterdir())
    decoded = ort.InferenceSession(str(folder / "decode.onnx")).run(None, {"codes": codes.numpy()})[0]
    assert decoded.shape[-1] == 12 * 320 and np.abs(decoded - expected.numpy()).max() < 1e-4
    with pytest.raises(BackendError, match="fp32 on the CPU"):
        rvqgan.load_model(tmp_path / "m.safetensors", device="meta", backend="onnxruntime")
