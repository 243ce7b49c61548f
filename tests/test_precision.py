"""The CPU's bf16 detection, the `auto` policy, and what it changes (and does not) on machines without native bf16."""

from __future__ import annotations

import pytest
import torch
from conftest import synth

import rvqgan
from rvqgan import precision
from rvqgan.cli import main
from rvqgan.loading import inference_model


def test_environment_overrides_the_detection(monkeypatch):
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "1")
    assert precision.native_bf16() and precision.resolve("auto", "decode") == precision.AUTO_WHERE_NATIVE["decode"]
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "0")
    assert not precision.native_bf16()
    assert precision.resolve("auto", "encode") == precision.resolve("auto", "decode") == "fp32"
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "yes")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        precision.native_bf16()


@pytest.mark.parametrize(
    "flags,native",
    [({"fpu", "avx2", "avx512f"}, False), ({"avx512f", "avx512_bf16"}, True), ({"amx_bf16", "amx_tile"}, True), (set(), False)],
)
def test_native_bf16_follows_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.delenv(precision.NATIVE_BF16_ENV)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.native_bf16("cpu") is native
    assert precision.resolve("auto", "decode") == (precision.AUTO_WHERE_NATIVE["decode"] if native else "fp32")
    assert precision.describe()["native_bf16"] is native


def test_cpu_flags_are_read_from_this_machine():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    if precision.cpu_capability().startswith("AVX"):  # an x86 CPU whose kernels use AVX lists it
        assert any(f.startswith("avx") for f in flags), sorted(flags)[:20]


def test_explicit_precisions_are_kept_and_bad_ones_refused():
    assert precision.resolve("bf16", "encode") == "bf16" and precision.resolve("fp32", "decode") == "fp32"
    with pytest.raises(ValueError, match="precision must be"):
        precision.resolve("fp16", "encode")
    with pytest.raises(ValueError, match="direction must be"):
        precision.resolve("auto", "export")


def test_describe_reports_what_benchmarks_need():
    facts = precision.describe()
    assert set(facts) >= {"cpu", "capability", "native_bf16", "bf16_flags", "threads", "torch", "auto"}
    assert facts["capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["auto"] == {"encode": "fp32", "decode": "fp32", "train": "fp32"}  # detection forced off in conftest


@torch.no_grad()
def test_auto_without_native_bf16_is_fp32_exactly():
    """A CPU without native bf16 gets the fp32 model: same weights, same outputs, bit for bit."""
    torch.manual_seed(0)
    model = rvqgan.build_model("tiny").eval()
    x = synth(model.sample_rate // 4, model.sample_rate)
    auto, fp32 = model.folded("auto"), model.folded("fp32")
    assert all(p.dtype == torch.float32 for p in auto.parameters()) and auto.encode_precision == "fp32"
    codes = fp32.encode(x)
    assert torch.equal(auto.encode(x), codes)
    assert torch.equal(auto.decode(codes), fp32.decode(codes))


@torch.no_grad()
def test_auto_with_native_bf16_follows_the_policy(monkeypatch):
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "1")
    model = rvqgan.build_model("tiny").eval().folded("auto")
    assert model.encode_precision == precision.AUTO_WHERE_NATIVE["encode"]
    decoder_dtype = next(model.decoder.parameters()).dtype
    assert decoder_dtype == (torch.bfloat16 if precision.AUTO_WHERE_NATIVE["decode"] == "bf16" else torch.float32)


def test_bf16_decoder_keeps_its_output_layers_in_fp32():
    model = rvqgan.build_model("tiny").eval().folded("bf16")
    layers = list(model.decoder.model)
    tail = model.decoder.fp32_tail
    assert tail == len(layers) - 4
    assert all(p.dtype == torch.bfloat16 for layer in layers[:tail] for p in layer.parameters())
    assert all(p.dtype == torch.float32 for layer in layers[tail:] for p in layer.parameters())
    y = model.decode(torch.zeros(1, model.n_codebooks, 3, dtype=torch.long))
    assert y.dtype == torch.float32
    codes = torch.zeros(1, model.n_codebooks, 3, dtype=torch.long)
    assert model.to(torch.bfloat16).decode(codes).isfinite().all()  # cast again as a whole, it runs as a whole


def test_auto_stays_fp32_on_a_backend_that_runs_only_fp32(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "1")
    model = inference_model(rvqgan.build_model("tiny").eval(), "auto", "onnxruntime")
    assert model.encode_precision == "fp32"


def test_info_without_files_describes_the_machine(capsys, monkeypatch):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"rvqgan:         {rvqgan.__version__}" in out
    assert f"capability:     {precision.cpu_capability()}" in out
    assert "native_bf16:    False" in out and "precision auto: encode fp32, decode fp32" in out
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "1")
    assert main(["info"]) == 0
    assert "native_bf16:    True" in capsys.readouterr().out
