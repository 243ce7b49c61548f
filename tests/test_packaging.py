"""The built wheel is the product: installed into a fresh environment, away from the clone, its
commands work with what the wheel ships (default weights, recipes by name, the listening-test page)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


def _clean() -> dict[str, str]:
    """This environment without what would put the clone's code on the path (PYTHONPATH, an active venv)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (no editable link to the clone); the test venv's
    site-packages supply the dependencies (torch, numpy, ...), so nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
        env=_clean(),
    )
    (wheel,) = (tmp / "dist").glob("rvqgan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("rvqgan/weights/default.safetensors", "rvqgan/configs/cpu.yaml", "rvqgan/assets/mushra.html"):
        assert shipped in names, f"{shipped} is not in the wheel"
    env = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, env=_clean())
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, env=_clean())
    site = Path(
        subprocess.run(
            [str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            env=_clean(),
        ).stdout.strip()
    )
    # Appended after the venv's own site-packages: the wheel's rvqgan comes first. The test venv's
    # editable `rvqgan` is a .pth finder in that folder, which a path added this way does not run.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def _run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(env / "bin" / "rvqgan"), *args], cwd=cwd, env=_clean(), capture_output=True, text=True, timeout=900
    )


def _corpus(folder: Path, seconds: float = 3.0, sample_rate: int = 24000) -> Path:
    """speech/, music/ and general/ folders of two short synthetic files each."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i, group in enumerate(("speech", "music", "general")):
        (folder / group).mkdir(parents=True)
        for j in range(2):
            audio = 0.2 * np.sin(2 * np.pi * (150 + 100 * i + 37 * j) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(folder / group / f"{group}{j}.wav", audio.astype(np.float32), sample_rate)
    return folder


def test_the_wheel_runs_from_its_own_install(installed, tmp_path):
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import rvqgan; print(rvqgan.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=_clean(),
    ).stdout
    assert str(installed) in where and str(ROOT) not in where


def test_encode_with_the_shipped_default_model(installed, tmp_path):
    corpus = _corpus(tmp_path / "data")
    result = _run(installed, "encode", str(corpus / "speech" / "speech0.wav"), "-o", "x.rvq", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.rvq").stat().st_size > 100


def test_train_a_shipped_recipe_by_name_on_data_given_on_the_command_line(installed, tmp_path):
    corpus = _corpus(tmp_path / "data")
    result = _run(
        installed,
        "train",
        "--config",
        "cpu",
        "--data",
        str(corpus),
        "--set",
        "steps=2",
        "--set",
        "out_dir='run'",
        "--set",
        "data.num_workers=0",
        "--set",
        "data.cache_dir=None",
        "--set",
        "fuse_snake=False",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()


def test_listen_prepares_a_test_with_the_shipped_page(installed, tmp_path):
    corpus = _corpus(tmp_path / "data", seconds=4.0)
    result = _run(installed, "listen", "--data", str(corpus), "--per-group", "1", "--seconds", "2", "-o", "test", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    page = (tmp_path / "test" / "index.html").read_text()
    assert "<html" in page.lower() and len(list((tmp_path / "test").rglob("*.wav"))) >= 3
