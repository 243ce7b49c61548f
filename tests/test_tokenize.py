"""Corpus tokenization: codes equal to per-file encoding however items are batched, shards, resume, ranks, datasets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT, within

import rvqgan
from rvqgan.cli import main
from rvqgan.tokenize import decode_row, list_sources, load_resampled, tokenize, window_plan

pq = pytest.importorskip("pyarrow.parquet")

# (seconds, sample rate, channels): 0.1 s to 60 s, four rates, mono and stereo, two of equal length.
SPECS = [
    (0.1, 16000, 1),
    (0.2, 16000, 1),  # exactly one window of 0.2 s for the tiny model (100 frames)
    (0.202, 16000, 1),  # one frame longer
    (0.37, 8000, 1),
    (0.5, 22050, 2),
    (1.7, 44100, 1),
    (2.0, 16000, 1),
    (2.0, 16000, 1),
    (3.3, 48000, 2),
    (7.9, 16000, 1),
    (12.0, 44100, 2),
    (60.0, 16000, 1),
]


def write_corpus(folder: Path, specs=SPECS) -> Path:
    rng = np.random.default_rng(0)
    for i, (seconds, sr, channels) in enumerate(specs):
        n = int(seconds * sr)
        t = np.arange(n) / sr
        tone = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t * (1 + 0.1 * np.sin(t)))
        x = (tone[:, None] + 0.05 * rng.standard_normal((n, channels))).astype(np.float32)
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        sf.write(sub / f"item{i:02d}.{'wav' if i % 3 else 'flac'}", x, sr)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "data")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    torch.manual_seed(0)
    rvqgan.save_model(rvqgan.build_model("tiny"), path)
    return path


def read_rows(out: Path) -> dict[str, dict]:
    rows = {}
    for shard in sorted(out.glob("shard-*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            assert row["path"] not in rows, f"{row['path']} twice"
            rows[row["path"]] = row
    return rows


@pytest.mark.parametrize(
    "frames, window, context", [(1, 10, 2), (10, 10, 2), (11, 10, 2), (57, 10, 2), (300, 40, 17), (35, 35, 17)]
)
def test_window_plan_covers_every_frame_once_with_its_context(frames, window, context):
    plan = window_plan(frames, window, context)
    kept = np.zeros(frames, int)
    for start, end, keep_start, keep_end in plan:
        assert end - start == min(window, frames) and 0 <= start and end <= frames
        assert keep_start - start >= context or start == 0
        assert end - keep_end >= context or end == frames
        kept[keep_start:keep_end] += 1
    assert (kept == 1).all()


@pytest.mark.parametrize("batch_seconds, window_seconds, max_seconds", [(0.05, 0.2, 600.0), (30.0, 0.3, 600.0), (30.0, 2.0, 5.0)])
def test_codes_equal_per_file_encoding_however_items_are_batched(
    corpus, tiny_path, tmp_path, batch_seconds, window_seconds, max_seconds
):
    """Batching off (one window per pass), on (windows of many items stacked), and long files streamed."""
    model = rvqgan.load_model(tiny_path).folded()
    summary = tokenize(
        model,
        "tiny",
        [str(corpus)],
        tmp_path / "out",
        batch_seconds=batch_seconds,
        window_seconds=window_seconds,
        max_seconds=max_seconds,
        shard_items=4,
        workers=0,
    )
    assert summary["manifest"]["coded"] == len(SPECS) and summary["manifest"]["failed"] == 0
    rows = read_rows(tmp_path / "out")
    assert len(rows) == len(SPECS)
    for rel, row in rows.items():
        audio, sr, length = load_resampled(str(corpus / rel), model.sample_rate)
        with torch.no_grad():
            expected = model.encode(torch.from_numpy(audio)[:, None]).numpy()
        codes = np.array(row["codes"])
        assert codes.shape == expected.shape and np.array_equal(codes, expected), rel
        assert (row["sample_rate"], row["num_samples"], row["channels"]) == (sr, length, audio.shape[0])
        assert row["weights"] == model.weights_id() and row["n_frames"] == codes.shape[-1]


def test_codes_equal_rvqgan_encode_files(corpus, tiny_path, tmp_path):
    """The same samples reach the model as through `rvqgan encode`: the codes of a row and of its .rvq file agree."""
    from rvqgan.bitstream import Reader
    from rvqgan.files import compress_file

    model = rvqgan.load_model(tiny_path).folded()
    tokenize(model, "tiny", [str(corpus)], tmp_path / "out", window_seconds=0.2, workers=0)
    for rel, row in read_rows(tmp_path / "out").items():
        with open(tmp_path / "x.rvq", "wb") as f:
            compress_file(model, str(corpus / rel), f)
        with open(tmp_path / "x.rvq", "rb") as f:
            assert np.array_equal(Reader(f).read_all(), np.array(row["codes"])), rel


def test_default_model_codes_are_unchanged_by_batching(tmp_path):
    model = rvqgan.load_model("default").folded()
    corpus = write_corpus(tmp_path / "data", [(0.2, 16000, 1), (3.1, 44100, 2), (6.5, 24000, 1), (6.5, 24000, 1)])
    tokenize(model, "default", [str(corpus)], tmp_path / "out", window_seconds=1.0, batch_seconds=20.0, workers=0)
    for rel, row in read_rows(tmp_path / "out").items():
        audio, _, _ = load_resampled(str(corpus / rel), model.sample_rate)
        with torch.no_grad():
            expected = model.encode(torch.from_numpy(audio)[:, None]).numpy()
        assert np.array_equal(np.array(row["codes"]), expected), rel


def test_manifests_globs_and_bad_files(corpus, tiny_path, tmp_path, capsys):
    files = sorted(p for p in corpus.rglob("*") if p.is_file())[:4]
    (tmp_path / "list.txt").write_text("\n".join(str(p) for p in files[:2]) + "\n")
    (tmp_path / "list.csv").write_text("path,text\n" + f"{files[2]},hello\n")
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": str(files[3])}) + "\n")
    (tmp_path / "bad.wav").write_text("not audio")
    inputs = [
        "tokenize",
        str(tmp_path / "list.txt"),
        str(tmp_path / "list.csv"),
        str(tmp_path / "list.jsonl"),
        str(tmp_path / "bad.wav"),
    ]
    inputs += ["-o", str(tmp_path / "out"), "--workers", "1", "-q"]
    assert main([*inputs, "--model", str(tiny_path)]) == 1  # one file failed: the exit status says so
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["coded"] == 4 and manifest["failed"] == 1 and manifest["failures"][0]["path"].endswith("bad.wav")
    assert "cannot read as audio" in manifest["failures"][0]["error"]
    assert "4 of 5 items" in capsys.readouterr().out
    other = rvqgan.build_model("tiny")
    rvqgan.save_model(other, tmp_path / "other.safetensors")
    assert main([*inputs, "--model", str(tmp_path / "other.safetensors")]) == 1
    assert "other settings" in capsys.readouterr().err
    assert main(["tokenize", str(tmp_path / "nothing*.wav"), "-o", str(tmp_path / "o2")]) == 1
    assert "no files match" in capsys.readouterr().err
    assert main(["tokenize", str(corpus), "-o", str(tmp_path / "o3"), "--device", "tpu"]) == 1
    assert "--device" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no such file"):
        list_sources([str(tmp_path / "missing")])


def test_the_dataset_loads_with_datasets_and_rows_decode_to_the_source_length(corpus, tiny_path, tmp_path):
    datasets = pytest.importorskip("datasets")
    model = rvqgan.load_model(tiny_path).folded()
    tokenize(model, "tiny", [str(corpus)], tmp_path / "out", workers=0, shard_items=3)
    data = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "out" / "shard-*.parquet"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert len(data) == len(SPECS) and set(data.column_names) >= {
        "path",
        "codes",
        "sample_rate",
        "channels",
        "duration",
        "weights",
    }
    for row in data:
        audio = decode_row(model, row)
        assert audio.shape == (row["channels"], row["num_samples"])


def run_cli(args: list[str], nproc: int = 1, program: tuple[str, ...] = ("-m", "rvqgan"), **kw) -> subprocess.Popen:
    """`rvqgan tokenize ARGS` in a new process (under torchrun for `nproc` > 1); `program` replaces `-m rvqgan`."""
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
        if nproc > 1
        else [sys.executable]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([*launcher, *program, "tokenize", *args], cwd=ROOT, env=env, **kw)


def test_two_ranks_under_torchrun_give_the_rows_of_one_process(corpus, tiny_path, tmp_path):
    common = [str(corpus), "--model", str(tiny_path), "--workers", "0", "--shard-items", "2", "--window-seconds", "0.5", "-q"]
    one = run_cli([*common, "-o", str(tmp_path / "one")], stderr=subprocess.PIPE)
    assert one.wait(timeout=300) == 0, one.stderr.read() if one.stderr else ""
    two = run_cli([*common, "-o", str(tmp_path / "two")], nproc=2, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    assert two.wait(timeout=300) == 0, two.stderr.read() if two.stderr else ""
    assert {p.name[:10] for p in (tmp_path / "two").glob("shard-*")} == {"shard-r000", "shard-r001"}  # each rank its own shards
    a, b = read_rows(tmp_path / "one"), read_rows(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == len(SPECS)  # none twice (read_rows checks), none missing
    assert all(a[k]["codes"] == b[k]["codes"] for k in a)
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["coded"] == len(SPECS)


# `rvqgan` that SIGKILLs itself while writing its fourth shard: after the parquet file is
# written under its temporary name and before the rename (a fixed point, not a race with a poll loop).
DIES_WRITING_THE_FOURTH_SHARD = """
import os, sys
import pyarrow.parquet as pq
from rvqgan.cli import main
write, calls = pq.write_table, []
def write_then_die(*args, **kwargs):
    write(*args, **kwargs)
    calls.append(1)
    if len(calls) == 4:
        os.kill(os.getpid(), 9)
pq.write_table = write_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_continues_to_the_same_dataset(tmp_path, tiny_path):
    corpus = write_corpus(tmp_path / "data", [(1.0 + 0.1 * i, 16000, 1) for i in range(40)])
    common = [str(corpus), "--model", str(tiny_path), "--workers", "0", "--shard-items", "2", "-q"]
    assert run_cli([*common, "-o", str(tmp_path / "whole")]).wait(timeout=300) == 0
    killed = run_cli([*common, "-o", str(tmp_path / "killed")], program=("-c", DIES_WRITING_THE_FOURTH_SHARD))
    assert killed.wait(timeout=300) == -signal.SIGKILL
    partial = read_rows(tmp_path / "killed")
    assert len(partial) == 6 and not (tmp_path / "killed" / "manifest.json").exists()
    assert len(list((tmp_path / "killed").glob(".shard*"))) == 1  # the fourth shard, left under its temporary name
    assert run_cli([*common, "-o", str(tmp_path / "killed")]).wait(timeout=300) == 0
    whole, resumed = read_rows(tmp_path / "whole"), read_rows(tmp_path / "killed")
    assert whole.keys() == resumed.keys() and all(whole[k]["codes"] == resumed[k]["codes"] for k in whole)
    assert not list((tmp_path / "killed").glob(".shard*"))  # no temporary shard left


def test_failures_of_an_earlier_larger_run_are_not_counted_twice(corpus, tiny_path, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.wav").write_text("not audio")
    (tmp_path / "in" / "good.wav").write_bytes(next(corpus.rglob("*.wav")).read_bytes())
    model = rvqgan.load_model(tiny_path).folded()
    tokenize(model, "tiny", [str(tmp_path / "in")], tmp_path / "out", workers=0)
    stale = {"index": 0, "path": "bad.wav", "error": "from a rank of an earlier run"}
    (tmp_path / "out" / "failures-r001.jsonl").write_text(json.dumps(stale) + "\n")  # as a 2-rank run would leave
    manifest = tokenize(model, "tiny", [str(tmp_path / "in")], tmp_path / "out", workers=0)["manifest"]
    assert (manifest["coded"], manifest["failed"], manifest["missing"]) == (1, 1, 0)
    assert "cannot read as audio" in manifest["failures"][0]["error"]


def test_inputs_that_would_share_a_stored_path_are_refused(tmp_path, corpus):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.wav").write_bytes(next(corpus.rglob("*.wav")).read_bytes())
    with pytest.raises(ValueError, match="would both be stored as 'a.wav'"):
        list_sources([str(tmp_path / "x"), str(tmp_path / "y")])


def test_a_second_run_on_the_same_folder_is_refused(corpus, tiny_path, tmp_path):
    from rvqgan.tokenize import _RankLock

    (tmp_path / "out").mkdir()
    lock = _RankLock(tmp_path / "out", 0)
    try:
        with pytest.raises(ValueError, match="another run is writing there"):
            tokenize(rvqgan.load_model(tiny_path).folded(), "tiny", [str(corpus)], tmp_path / "out", workers=0)
    finally:
        lock.close()


def test_an_interrupted_run_keeps_what_it_coded(corpus, tiny_path, tmp_path, monkeypatch):
    import rvqgan.tokenize as tk

    calls = []
    original = tk._Encoder.encode_items

    def interrupted(self, items):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, items)

    monkeypatch.setattr(tk._Encoder, "encode_items", interrupted)
    model = rvqgan.load_model(tiny_path).folded()
    with pytest.raises(KeyboardInterrupt):
        tokenize(model, "tiny", [str(corpus)], tmp_path / "out", workers=0, batch_seconds=0.01)
    assert len(read_rows(tmp_path / "out")) == 2  # the two items coded before Ctrl-C are on disk
    monkeypatch.setattr(tk._Encoder, "encode_items", original)
    tokenize(model, "tiny", [str(corpus)], tmp_path / "out", workers=0)
    assert len(read_rows(tmp_path / "out")) == len(SPECS)


def test_outside_torchrun_tokenize_is_one_process_without_barrier(monkeypatch):
    from rvqgan.tokenize import close_distributed, distributed_context

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert distributed_context() == (0, 1, 0, None)
    close_distributed()


def test_a_resume_sets_aside_damaged_foreign_and_duplicated_shards(tmp_path, tiny_path):
    """What a resume finds is checked, not trusted: a shard with a damaged page, a copy of a shard (with
    or without a checksum file), another run's shard and a shard whose rows are other inputs are each
    set aside with a warning naming them, and their items coded again: the same dataset as a clean run."""
    import shutil

    from rvqgan.tokenize import _sha256

    corpus = write_corpus(tmp_path / "data", [(0.3 + 0.05 * i, 16000, 1) for i in range(6)])
    model = rvqgan.load_model(tiny_path).folded()

    def run(out, codec=model, **kw):
        return tokenize(codec, "tiny", [str(corpus)], out, workers=0, shard_items=2, **kw)

    def add_checksum(shard):
        shard.with_suffix(".sha256").write_text(f"{_sha256(shard)}  {shard.name}\n")

    run(tmp_path / "clean")
    out = tmp_path / "out"
    run(out)
    shards = sorted(out.glob("shard-*.parquet"))
    assert len(shards) == 3
    codes = pq.ParquetFile(shards[0]).metadata.row_group(0).column(2)  # the codes' pages, between index and footer
    data = bytearray(shards[0].read_bytes())
    middle = codes.data_page_offset + codes.total_compressed_size // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    shards[0].write_bytes(data)
    assert pq.read_table(shards[0], columns=["index"]).num_rows == 2  # all a resume used to read: still fine
    shutil.copy(shards[1], out / "shard-r000-00007.parquet")
    add_checksum(out / "shard-r000-00007.parquet")
    shutil.copy(shards[2], out / "shard-r000-00008 (copy).parquet")
    other = rvqgan.build_model("tiny")  # other weights
    run(tmp_path / "other", codec=other)
    shutil.copy(tmp_path / "other" / "shard-r000-00000.parquet", out / "shard-r000-00009.parquet")
    add_checksum(out / "shard-r000-00009.parquet")
    table = pq.read_table(shards[2])
    swapped = table.set_column(1, "path", pq.read_table(shards[1]).column("path"))  # the metadata stays this run's
    pq.write_table(swapped, out / "shard-r000-00010.parquet")
    add_checksum(out / "shard-r000-00010.parquet")

    warnings: list[str] = []
    manifest = run(out, warn=warnings.append)["manifest"]
    reasons = {w.split(" ", 1)[0]: w for w in warnings}
    assert "does not match its checksum file" in reasons[shards[0].name]
    assert "holds 2 items that another shard holds" in reasons["shard-r000-00007.parquet"]
    assert "has no checksum file" in reasons["shard-r000-00008"]  # the name "... (copy).parquet"
    assert "written by another run" in reasons["shard-r000-00009.parquet"]
    assert "which is not this run's input there" in reasons["shard-r000-00010.parquet"]
    assert len(warnings) == 5 and all("set aside as" in w and "coded again" in w for w in warnings)
    assert len(list(out.glob("shard-*.parquet.damaged"))) == 5 and (out / "shard-r000-00000.sha256.damaged").exists()
    clean, resumed = read_rows(tmp_path / "clean"), read_rows(out)  # every column of every shard read; none twice
    assert clean.keys() == resumed.keys() and all(clean[k]["codes"] == resumed[k]["codes"] for k in clean)
    assert (manifest["coded"], manifest["failed"], manifest["missing"]) == (6, 0, 0)
    assert all(s["sha256"] == _sha256(out / s["file"]) for s in manifest["shards"])
    warnings.clear()
    run(out, warn=warnings.append)
    assert warnings == []  # a clean folder resumes without a word


def test_a_fine_tune_that_makes_the_run_s_codes_continues_it(tmp_path, tiny_path):
    """A run stopped part-way is continued by a fine-tune that kept its model's encoder and quantizer
    (it records their weights id): the dataset is the one the first model would have written. A model
    that does not make those codes is refused."""
    corpus = write_corpus(tmp_path / "data", [(0.3 + 0.05 * i, 16000, 1) for i in range(6)])
    source = rvqgan.load_model(tiny_path)
    tuned = rvqgan.load_model(tiny_path)
    with torch.no_grad():
        for p in tuned.decoder.parameters():
            p.add_(0.01)
    other = rvqgan.load_model(rvqgan.save_model(tuned, tmp_path / "other.safetensors"))
    tuned.decodes_codes_of = frozenset({source.weights_id()})
    tuned = rvqgan.load_model(rvqgan.save_model(tuned, tmp_path / "tuned.safetensors"))

    def run(out, codec, name="tiny", **kw):
        return tokenize(codec.folded(), name, [str(corpus)], out, workers=0, shard_items=2, **kw)

    run(tmp_path / "whole", source)
    run(tmp_path / "out", source)
    last = sorted((tmp_path / "out").glob("shard-*.parquet"))[-1]
    for path in (last, last.with_suffix(".sha256"), tmp_path / "out" / "manifest.json"):
        path.unlink()  # as a run stopped before its last shard leaves the folder
    with pytest.raises(ValueError, match="other settings"):
        run(tmp_path / "out", other, "tuned")
    notes: list[str] = []
    manifest = run(tmp_path / "out", tuned, "tuned", warn=notes.append)["manifest"]
    assert manifest["coded"] == 6 and manifest["settings"]["weights"] == source.weights_id()
    assert notes == [f"continuing the run of tiny (weights {source.weights_id()}): this model makes its codes"]
    rows = read_rows(tmp_path / "out")
    assert rows == read_rows(tmp_path / "whole") and {r["model"] for r in rows.values()} == {"tiny"}  # every column


def test_a_folder_with_shards_but_no_run_settings_is_refused(corpus, tiny_path, tmp_path, capsys):
    """Without run.json nothing says whose shards these are: refused, one line, nothing changed."""
    model = rvqgan.load_model(tiny_path).folded()
    small = write_corpus(tmp_path / "data", [(0.3, 16000, 1), (0.4, 16000, 1)])
    tokenize(model, "tiny", [str(small)], tmp_path / "out", workers=0)
    (tmp_path / "out" / "run.json").unlink()
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    with pytest.raises(ValueError, match="holds shards but no run.json"):
        tokenize(model, "tiny", [str(small)], tmp_path / "out", workers=0)
    assert main(["tokenize", str(small), "-o", str(tmp_path / "out"), "--model", str(tiny_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run.json" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before


def test_the_run_settings_hold_the_stored_paths_not_only_the_files(tiny_path, tmp_path):
    """The same files named through a folder and through a manifest are stored under other paths (and
    so indices): a run of one is not resumed by the other."""
    model = rvqgan.load_model(tiny_path).folded()
    small = write_corpus(tmp_path / "data", [(0.3, 16000, 1), (0.4, 16000, 1)])
    (tmp_path / "list.txt").write_text("\n".join(str(p.relative_to(tmp_path)) for p in sorted(small.rglob("*.*"))))
    tokenize(model, "tiny", [str(small)], tmp_path / "out", workers=0)
    with pytest.raises(ValueError, match="other settings or inputs"):
        tokenize(model, "tiny", [str(tmp_path / "list.txt")], tmp_path / "out", workers=0)


def test_fifos_and_link_loops_are_failed_items_never_hangs_or_tracebacks(tmp_path, tiny_path):
    """A FIFO (it would block the open forever) and link loops, in a folder and in a manifest, are
    failed items with one-line reasons, in worker processes too; the other files are coded."""
    corpus = write_corpus(tmp_path / "data", [(0.3, 16000, 1), (0.4, 16000, 1)])
    good = tmp_path / "elsewhere" / "good.wav"
    good.parent.mkdir()
    good.write_bytes(next(corpus.rglob("*.wav")).read_bytes())
    os.mkfifo(corpus / "fifo.wav")
    os.symlink("loop.wav", corpus / "loop.wav")
    os.symlink(".", corpus / "again")  # a link to a folder: not followed
    os.mkfifo(tmp_path / "elsewhere" / "fifo.flac")
    os.symlink("loopdir", tmp_path / "elsewhere" / "loopdir")
    (tmp_path / "list.txt").write_text("elsewhere/fifo.flac\nelsewhere/loopdir/x.wav\nelsewhere/good.wav\n")
    out = tmp_path / "out"
    args = [str(corpus), str(tmp_path / "list.txt"), "-o", str(out), "--model", str(tiny_path), "--workers", "1", "-q"]
    proc = run_cli(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 1 and "Traceback" not in err and "internal error" not in err, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["coded"], manifest["failed"]) == (3, 4)
    errors = {f["path"]: f["error"] for f in manifest["failures"]}
    assert "not a regular file (a FIFO)" in errors["fifo.wav"] and "symbolic links" in errors["loop.wav"]
    assert "not a regular file (a FIFO)" in errors["elsewhere/fifo.flac"]
    assert "symbolic links" in errors["elsewhere/loopdir/x.wav"]
    assert all(len(line) < 400 for line in err.splitlines())


def test_a_file_that_turns_into_a_fifo_after_the_listing_fails_at_once(tmp_path, tiny_path):
    """The open itself refuses anything but a regular file, without waiting: a listing is no guarantee."""
    from rvqgan.tokenize import Source, _Encoder, _Loader

    os.mkfifo(tmp_path / "x.wav")
    model = rvqgan.load_model(tiny_path).folded()
    with within(60):
        audio, error = _Loader([], model.sample_rate, 600.0).read(Source(0, str(tmp_path / "x.wav"), "x.wav"))
        assert audio is None and "x.wav: not a regular file (a FIFO)" in str(error)
        with pytest.raises(ValueError, match="not a regular file"):
            _Encoder(model, 4, 100, 1000, torch.device("cpu")).encode_long(str(tmp_path / "x.wav"), 100)
        with pytest.raises(ValueError, match="not a regular file"):
            load_resampled(str(tmp_path / "x.wav"), model.sample_rate)


def test_runaway_manifests_and_long_paths_are_one_short_line(tiny_path, tmp_path, capsys):
    """A manifest line of megabytes, a CSV field over the csv module's limit, a link loop named directly:
    one short error line, nothing written; a failed item's record shows a few hundred characters of its error."""
    from rvqgan.fileio import SHOWN_CHARS

    (tmp_path / "runaway.txt").write_text("a.wav\n" + "b" * 3_000_000 + ".wav\n")
    (tmp_path / "field.csv").write_text("path\n" + "c" * 200_000 + ".wav\n")
    os.symlink("loop.wav", tmp_path / "loop.wav")
    for item, message in (
        ("runaway.txt", "runaway.txt:2: a line over"),
        ("field.csv", "field.csv:2: not CSV"),
        ("loop.wav", "loop.wav: Too many levels of symbolic links"),
    ):
        out = tmp_path / f"out-{item}"
        assert main(["tokenize", str(tmp_path / item), "-o", str(out), "--model", str(tiny_path), "-q"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and len(err) < 400 and message in err, err
        assert not out.exists()
    deep = tmp_path / ("d" * 200) / ("e" * 200)
    deep.mkdir(parents=True)
    (deep / "bad.wav").write_text("not audio")
    manifest = tokenize(rvqgan.load_model(tiny_path).folded(), "tiny", [str(tmp_path / ("d" * 200))], tmp_path / "o", workers=0)
    failure = manifest["manifest"]["failures"][0]
    assert failure["path"] == f"{'e' * 200}/bad.wav" and len(failure["error"]) <= SHOWN_CHARS and "…" in failure["error"]
    assert "cannot read as audio" in failure["error"]


# `rvqgan` whose whole process group gets SIGTERM from another process (as from a job scheduler or
# `kill -- -PGID`) as it codes its first batch, while a loader worker is running. (A worker that the
# signal kills makes the main process raise "DataLoader worker ... is killed by signal" as it unwinds;
# one that raises in its turn prints its own traceback.)
TERMINATED_WHILE_CODING = """
import os, signal, subprocess, sys
import rvqgan.tokenize as tk
from rvqgan.cli import main
encode = tk._Encoder.encode_items
def terminate_then_encode(self, items):
    subprocess.run([sys.executable, "-c", f"import os, signal; os.killpg({os.getpgrp()}, signal.SIGTERM)"])
    return encode(self, items)
tk._Encoder.encode_items = terminate_then_encode
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_to_the_process_group_is_one_line_without_worker_tracebacks(corpus, tiny_path, tmp_path):
    args = [str(corpus), "-o", str(tmp_path / "out"), "--model", str(tiny_path), "--workers", "1", "--batch-seconds", "0.01"]
    proc = run_cli(
        [*args, "-q"], program=("-c", TERMINATED_WHILE_CODING), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 143 and err.splitlines() == ["rvqgan tokenize: terminated"], err
