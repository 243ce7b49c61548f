"""Files in and out: the one input expander, output plans, atomic writes, standard output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from rvqgan.fileio import Input, InputError, atomic_write, expand_inputs, find_files, plan_outputs, write_output

AUDIO = (".wav", ".flac")


def test_atomic_write_all_or_nothing(tmp_path):
    target = tmp_path / "out.wav"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert tmp.suffix == ".wav" and tmp.parent == tmp_path and not target.exists()
        tmp.write_bytes(b"new")

    atomic_write(target, write)
    assert target.read_bytes() == b"new" and not seen[0].exists()
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


def tree(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def test_folders_are_searched_recursively_for_the_suffixes_asked_for(tmp_path):
    tree(tmp_path / "in", "b.WAV", "a.flac", "sub/c.wav", "notes.txt")
    assert find_files(tmp_path / "in", AUDIO) == [tmp_path / "in" / n for n in ("a.flac", "b.WAV", "sub/c.wav")]
    found = expand_inputs([str(tmp_path / "in")], AUDIO)
    assert [(Path(i.path).name, i.rel) for i in found] == [("a.flac", "a.flac"), ("b.WAV", "b.WAV"), ("c.wav", "sub/c.wav")]


def test_globs_files_and_standard_input(tmp_path):
    tree(tmp_path, "x/2.wav", "x/1.wav", "x/deep/3.wav", "y.flac")
    assert [i.path for i in expand_inputs([str(tmp_path / "x" / "*.wav")], AUDIO)] == [
        str(tmp_path / "x" / "1.wav"),
        str(tmp_path / "x" / "2.wav"),
    ]
    assert len(expand_inputs([str(tmp_path / "x" / "**" / "*.wav")], AUDIO)) == 3
    assert expand_inputs([str(tmp_path / "y.flac"), "-"], AUDIO, stdin=True) == [Input(str(tmp_path / "y.flac")), Input("-")]


def test_manifests_list_paths_relative_to_themselves(tmp_path):
    (tmp_path / "m.txt").write_text("# a comment\na.wav\n\n/abs/b.wav\n")
    (tmp_path / "m.csv").write_text("path,text\nc.wav,hello\n")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "sub/d.wav"}) + "\n")
    found = expand_inputs([str(tmp_path / f"m.{s}") for s in ("txt", "csv", "jsonl")], AUDIO, manifests=True)
    assert found == [
        Input(str(tmp_path / "a.wav"), "a.wav"),
        Input("/abs/b.wav", "/abs/b.wav"),
        Input(str(tmp_path / "c.wav"), "c.wav"),
        Input(str(tmp_path / "sub/d.wav"), "sub/d.wav"),
    ]
    assert expand_inputs([str(tmp_path / "m.txt")], AUDIO) == [Input(str(tmp_path / "m.txt"))]  # only when asked
    (tmp_path / "bad.csv").write_text("file\nx.wav\n")
    (tmp_path / "bad.jsonl").write_text('{"path": 3}\n')
    with pytest.raises(InputError, match="needs a 'path' column"):
        expand_inputs([str(tmp_path / "bad.csv")], AUDIO, manifests=True)
    with pytest.raises(InputError, match="bad.jsonl:1: each line needs a string 'path'"):
        expand_inputs([str(tmp_path / "bad.jsonl")], AUDIO, manifests=True)


def test_an_item_that_names_nothing_is_refused_or_kept_for_its_turn(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [(str(tmp_path / "empty"), "no code files in folder"), (str(tmp_path / "*.wav"), "no files match")]
    cases.append((str(tmp_path / "gone.wav"), "no such file or folder"))
    for item, message in cases:
        with pytest.raises(InputError, match=f"{item}: {message}".replace("*", "\\*")):
            expand_inputs([item], AUDIO, what="code files")
    kept = expand_inputs([item for item, _ in cases], AUDIO, what="code files", strict=False)
    assert kept == [Input(cases[0][0], error=f"{cases[0][0]}: no code files in folder"), Input(cases[1][0]), Input(cases[2][0])]


def test_output_plans_mirror_folders_and_refuse_clashes_before_writing(tmp_path):
    tree(tmp_path / "in", "a.wav", "sub/b.wav")
    inputs = expand_inputs([str(tmp_path / "in")], AUDIO)
    out = tmp_path / "codes"
    assert [dst for _, dst in plan_outputs(inputs, str(out), ".rvq", single=False)] == [
        str(out / "a.rvq"),
        str(out / "sub" / "b.rvq"),
    ]
    one = [Input(str(tmp_path / "in" / "a.wav"))]
    assert plan_outputs(one, None, ".rvq", single=True)[0][1] == str(tmp_path / "in" / "a.rvq")  # beside the input
    assert plan_outputs(one, str(tmp_path / "x.rvq"), ".rvq", single=True)[0][1] == str(tmp_path / "x.rvq")
    assert plan_outputs(one, str(tmp_path / "d") + "/", ".rvq", single=True)[0][1] == str(tmp_path / "d" / "a.rvq")
    assert plan_outputs([Input("-")], None, ".rvq", single=True)[0][1] == "-"
    assert plan_outputs([Input("-")], str(tmp_path / "d") + "/", ".rvq", single=True)[0][1] == str(tmp_path / "d" / "stdin.rvq")
    with pytest.raises(InputError, match="would both be written to"):
        plan_outputs([Input("p/a.wav"), Input("q/a.flac")], str(out), ".rvq", single=False)
    with pytest.raises(InputError, match="the output would replace the input"):
        plan_outputs(one, one[0].path, ".wav", single=True)


def test_write_output_writes_whole_files_or_standard_output(tmp_path, capfdbinary):
    write_output(str(tmp_path / "new" / "deep" / "a.bin"), lambda f: f.write(b"abc"))
    assert (tmp_path / "new" / "deep" / "a.bin").read_bytes() == b"abc"

    def fail(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_output("-", fail)
    with pytest.raises(RuntimeError):
        write_output(str(tmp_path / "b.bin"), fail)
    assert not (tmp_path / "b.bin").exists() and capfdbinary.readouterr().out == b""
    write_output("-", lambda f: f.write(b"to stdout"))
    sys.stdout.flush()
    assert capfdbinary.readouterr().out == b"to stdout"
