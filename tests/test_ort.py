"""ONNX export and the ONNX Runtime backend: the same codes and audio within 1e-4 as torch, everywhere a model is used."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

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


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A tiny model and its graphs, exported once for the tests that damage a copy of them."""
    torch.manual_seed(2)
    model = rvqgan.build_model("tiny")
    cache = tmp_path_factory.mktemp("pristine")
    with_onnxruntime(model.folded(), cache_dir=cache)
    return model, next(cache.iterdir())


@pytest.fixture
def cached(pristine, tmp_path, monkeypatch):
    """A tiny model (folded), a copy of its cache folder, and a count of the exports that follow."""
    import shutil

    import rvqgan.backends.ort as ort_backend

    model, folder = pristine
    shutil.copytree(folder, tmp_path / folder.name)
    exports = []
    export = ort_backend.export_onnx
    monkeypatch.setattr(ort_backend, "export_onnx", lambda *a, **k: exports.append(1) or export(*a, **k))
    return model.folded(), tmp_path / folder.name, exports


def runs_like_torch(model, cache_dir) -> bool:
    ort_model = with_onnxruntime(model, cache_dir=cache_dir)
    audio = synth(model.hop_length * 20)
    with torch.no_grad():
        codes = model.encode(audio)
        return torch.equal(ort_model.encode(audio), codes) and (ort_model.decode(codes) - model.decode(codes)).abs().max() < 1e-4


def test_the_export_records_each_graph_and_a_healthy_cache_is_used_as_is(cached):
    import hashlib
    import json

    model, folder, exports = cached
    record = json.loads((folder / "rvqgan.json").read_text())
    assert record["weights_id"] == model.weights_id() and set(record["graphs"]) == {
        "encoder.onnx",
        "decoder.onnx",
        "encode.onnx",
        "decode.onnx",
    }
    for name, entry in record["graphs"].items():
        data = (folder / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert runs_like_torch(model, folder.parent) and exports == []


def another_models_graphs(tmp_path, exports):
    """The cache folder of another model of the same architecture (its export is not counted)."""
    torch.manual_seed(3)
    other = rvqgan.build_model("tiny").folded()
    with_onnxruntime(other, cache_dir=tmp_path / "other")
    exports.clear()
    return next((tmp_path / "other").iterdir())


@pytest.mark.parametrize("graph", ["encoder.onnx", "decoder.onnx"])
def test_another_models_graph_copied_into_the_cache_is_replaced(cached, tmp_path, graph):
    """Another model's graph under this model's key would give wrong codes or audio with exit 0 (while the code file
    names this model's weights): it fails its recorded SHA-256 and the folder is exported again, in place."""
    model, folder, exports = cached
    (folder / graph).write_bytes((another_models_graphs(tmp_path, exports) / graph).read_bytes())
    assert runs_like_torch(model, folder.parent) and exports == [1]
    assert runs_like_torch(model, folder.parent) and exports == [1]  # healed for good: no export the next time


def test_another_models_whole_folder_copied_under_this_key_is_replaced(cached, tmp_path):
    import shutil

    model, folder, exports = cached
    shutil.rmtree(folder)
    shutil.copytree(
        another_models_graphs(tmp_path, exports), folder
    )  # its record, consistent with its graphs, names other weights
    assert runs_like_torch(model, folder.parent) and exports == [1]


def damage(folder, how: str) -> None:
    import json
    import os

    record = json.loads((folder / "rvqgan.json").read_text())
    if how == "truncated":
        data = (folder / "decoder.onnx").read_bytes()
        (folder / "decoder.onnx").write_bytes(data[: len(data) // 2])
    elif how == "huge":  # a sparse file: its size is refused before a byte of it is read
        with open(folder / "encoder.onnx", "r+b") as f:
            f.truncate(64 << 30)
    elif how == "fifo":
        (folder / "encoder.onnx").unlink()
        os.mkfifo(folder / "encoder.onnx")  # opening it to read would wait forever
    elif how == "missing":
        (folder / "decoder.onnx").unlink()
    elif how == "a folder":
        (folder / "encoder.onnx").unlink()
        (folder / "encoder.onnx").mkdir()
    elif how == "record not json":
        (folder / "rvqgan.json").write_bytes(b"\xff\xfe{")
    elif how == "record a list":
        (folder / "rvqgan.json").write_text("[1, 2]")
    elif how == "graphs not a dict":
        (folder / "rvqgan.json").write_text(json.dumps({**record, "graphs": "encoder.onnx"}))
    elif how == "size a string":
        record["graphs"]["encoder.onnx"]["size"] = "many"
        (folder / "rvqgan.json").write_text(json.dumps(record))
    elif how == "huge recorded size":
        record["graphs"]["encoder.onnx"]["size"] = 1 << 40
        (folder / "rvqgan.json").write_text(json.dumps(record))
    elif how == "no record of graphs":  # as an older version wrote it
        del record["graphs"]
        (folder / "rvqgan.json").write_text(json.dumps(record))
    elif how == "record nested deep":
        (folder / "rvqgan.json").write_text("[" * 100_000 + "]" * 100_000)
    elif how == "record huge":
        (folder / "rvqgan.json").write_text(" " * (2 << 20) + "{}")
    elif how == "the folder a file":
        import shutil

        shutil.rmtree(folder)
        folder.write_text("not a folder")
    else:
        raise AssertionError(how)


DAMAGE = [
    "truncated",
    "huge",
    "fifo",
    "missing",
    "a folder",
    "record not json",
    "record a list",
    "graphs not a dict",
    "size a string",
    "huge recorded size",
    "no record of graphs",
    "record nested deep",
    "record huge",
    "the folder a file",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_cache_is_exported_again_and_replaced(cached, how):
    model, folder, exports = cached
    damage(folder, how)
    started = time.monotonic()
    assert runs_like_torch(model, folder.parent) and exports == [1]
    assert time.monotonic() - started < 120
    assert runs_like_torch(model, folder.parent) and exports == [1]  # the replaced folder verifies
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # nothing left beside it


def test_a_graph_onnx_runtime_cannot_load_is_a_backend_error_naming_the_file(tmp_path):
    from rvqgan.backends.ort import OrtGraph

    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(BackendError, match=r"junk\.onnx: ONNX Runtime cannot load this graph") as info:
        OrtGraph(tmp_path / "junk.onnx", torch.nn.Identity())
    assert "\n" not in str(info.value)
    with pytest.raises(BackendError, match=r"named\.onnx: ONNX Runtime cannot load this graph"):
        OrtGraph(tmp_path / "named.onnx", torch.nn.Identity(), graph=b"")


def test_a_consistent_record_of_a_junk_graph_is_one_line_from_the_cli(pristine, tmp_path, capsys, monkeypatch):
    """Graph and record both rewritten (the record's digest is the junk's): the graph still fails to load, as a
    BackendError naming it, exit 1, never an internal error."""
    import hashlib
    import json
    import shutil

    model, folder = pristine
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "home"))
    shutil.copytree(folder, tmp_path / "home" / "onnx" / folder.name)
    folder = tmp_path / "home" / "onnx" / folder.name
    junk = b"\x08\x07junk" * 100
    (folder / "encoder.onnx").write_bytes(junk)
    record = json.loads((folder / "rvqgan.json").read_text())
    record["graphs"]["encoder.onnx"] = {"size": len(junk), "sha256": hashlib.sha256(junk).hexdigest()}
    (folder / "rvqgan.json").write_text(json.dumps(record))
    with pytest.raises(BackendError, match=r"encoder\.onnx: ONNX Runtime cannot load this graph"):
        with_onnxruntime(model.folded(), cache_dir=folder.parent)
    rvqgan.save_model(model, tmp_path / "m.safetensors")
    sf.write(tmp_path / "a.wav", 0.1 * synth(1600)[0, 0].numpy(), 16000)
    args = ["encode", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.rvq"), "--model", str(tmp_path / "m.safetensors")]
    assert main([*args, "--backend", "onnxruntime", "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert "encoder.onnx: ONNX Runtime cannot load this graph" in err and "\n" not in err


def test_replacing_a_cache_folder_leaves_one_whole_export_whatever_runs_at_once(tmp_path):
    """Processes healing the same stale folder at once: each runs the graphs it exported (read before the move), and
    the folder ends as one of their exports, whole, with nothing left beside it."""
    import shutil
    import threading

    from rvqgan.backends.ort import _replace_folder

    target = tmp_path / "key"
    target.mkdir()
    for name in ("encoder.onnx", "decoder.onnx", "rvqgan.json"):
        (target / name).write_text("stale")

    def heal(i: int) -> None:
        for j in range(30):
            new = tmp_path / f".key.{i}.{j}"
            new.mkdir()
            for name in ("encoder.onnx", "decoder.onnx", "rvqgan.json"):
                (new / name).write_text(f"{i}.{j}")
            _replace_folder(new, target)
            shutil.rmtree(new, ignore_errors=True)

    healers = [threading.Thread(target=heal, args=(i,)) for i in range(4)]
    for healer in healers:
        healer.start()
    for healer in healers:
        healer.join()
    contents = {(target / name).read_text() for name in ("encoder.onnx", "decoder.onnx", "rvqgan.json")}
    assert len(contents) == 1 and contents != {"stale"}
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_stale_cache_that_cannot_be_replaced_still_runs_the_right_graphs(cached, tmp_path, monkeypatch):
    import os

    model, folder, exports = cached
    (folder / "decoder.onnx").write_bytes((another_models_graphs(tmp_path, exports) / "decoder.onnx").read_bytes())
    replace = os.replace

    def refuse_to_move_the_cache(src, dst):
        if os.fspath(src) == os.fspath(folder):
            raise PermissionError(13, "Permission denied")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse_to_move_the_cache)
    with pytest.warns(UserWarning, match="cannot replace this stale ONNX cache"):
        assert runs_like_torch(model, folder.parent) and exports == [1]
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]  # nor the export left beside it
