"""Files in and out: the one input expander, output plans, atomic writes, standard output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import within

from rvqgan import fileio
from rvqgan.fileio import (
    Input,
    InputError,
    atomic_write,
    expand_inputs,
    find_files,
    is_temporary,
    open_regular,
    plan_outputs,
    remove_stale_temporaries,
    shorten,
    temporary_path,
    write_all,
    write_output,
)

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


class ShortWrites:
    """A stream that takes at most `room` bytes in all and a few bytes per call, as a file system
    that fills up does: writes past the room take nothing."""

    def __init__(self, room: int) -> None:
        self.room, self.data = room, bytearray()

    def write(self, b) -> int:
        n = min(len(b), 7, self.room - len(self.data))
        self.data += bytes(b[:n])
        return n

    def flush(self) -> None:
        pass


def test_standard_output_is_written_whole_or_fails_when_the_device_fills():
    out = ShortWrites(room=10_000)
    write_all(out, b"0123456789" * 100)
    assert bytes(out.data) == b"0123456789" * 100
    full = ShortWrites(room=500)
    with pytest.raises(OSError, match="No space left"):
        write_all(full, b"x" * 1000)


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_outputs_are_written_under_hidden_names_without_their_suffix(tmp_path):
    target = tmp_path / "codes" / "a.rvq"
    seen = {}

    def write(f):
        seen["name"] = f.name  # writers that pick a format from the name see the output's
        seen["files"] = list((tmp_path / "codes").iterdir())
        seen["found"] = find_files(tmp_path / "codes", (".rvq", ".dac", ".wav")) + find_files(tmp_path, AUDIO)
        f.write(b"codes")

    write_output(str(target), write)
    assert target.read_bytes() == b"codes" and seen["name"] == str(target)
    [tmp] = seen["files"]
    assert tmp.name.startswith(".a.rvq.rvqgan-") and tmp.suffix == ".tmp" and is_temporary(tmp)
    assert seen["found"] == [] and not tmp.exists()
    assert [p.name for p in (tmp_path / "codes").iterdir()] == ["a.rvq"]


def test_a_temporary_name_fits_beside_the_longest_output_name(tmp_path):
    target = tmp_path / ("é" * 120 + ".rvq")  # 244 bytes, near the usual limit of 255
    write_output(str(target), lambda f: f.write(b"x"))
    assert target.read_bytes() == b"x"
    tmp = temporary_path(target)
    assert len(os.fsencode(tmp.name)) <= 255 and is_temporary(tmp)


@pytest.mark.parametrize("links", [True, False])
def test_without_overwrite_an_output_written_meanwhile_is_kept_and_this_one_fails(tmp_path, monkeypatch, links):
    if not links:  # a file system without hard links: the name is claimed by an exclusive create instead
        monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(PermissionError(1, "Operation not permitted")))
    target = tmp_path / "a.rvq"

    def race(f):
        target.write_bytes(b"the other process's")  # another writer finishes first
        f.write(b"mine")

    with pytest.raises(FileExistsError, match="a.rvq: exists .*--overwrite"):
        write_output(str(target), race, overwrite=False)
    assert target.read_bytes() == b"the other process's" and os.listdir(tmp_path) == ["a.rvq"]
    write_output(str(target), race, overwrite=True)
    assert target.read_bytes() == b"mine" and os.listdir(tmp_path) == ["a.rvq"]
    write_output(str(tmp_path / "b.rvq"), lambda f: f.write(b"new"), overwrite=False)
    assert (tmp_path / "b.rvq").read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["a.rvq", "b.rvq"]


def test_atomic_write_can_refuse_to_replace(tmp_path):
    (tmp_path / "a.json").write_text("first")
    with pytest.raises(FileExistsError, match="exists"):
        atomic_write(tmp_path / "a.json", lambda tmp: tmp.write_text("second"), exclusive=True)
    assert (tmp_path / "a.json").read_text() == "first" and os.listdir(tmp_path) == ["a.json"]


def test_stale_temporary_files_of_killed_writers_are_removed(tmp_path):
    folder = tmp_path / "codes"
    folder.mkdir()
    gone = folder / f".x.rvq.rvqgan-{dead_pid()}-0123abcd.tmp"  # its writer was killed
    old = folder / f".y.rvq.rvqgan-{os.getpid()}-89abcdef.tmp.npy"  # untouched for two minutes
    live = folder / f".z.rvq.rvqgan-{os.getpid()}-00000000.tmp"  # being written now
    others = [folder / ".x.rvq.tmp123.rvq", folder / "notes.rvqgan-1-0123abcd.tmp", folder / "keep.rvq"]
    for path in [gone, old, live, *others]:
        path.write_bytes(b"")
    os.utime(old, (time.time() - 120, time.time() - 120))
    (folder / "sub").mkdir()
    (folder / "sub" / gone.name).write_bytes(b"")  # only the folder itself is swept
    assert all(is_temporary(p) for p in (gone, old, live)) and not any(is_temporary(p) for p in others)
    assert sorted(remove_stale_temporaries(folder)) == sorted([gone, old])
    assert live.exists() and all(p.exists() for p in others) and (folder / "sub" / gone.name).exists()
    gone.write_bytes(b"")
    write_output(str(folder / "new.rvq"), lambda f: f.write(b"x"))  # a writer sweeps the folder it writes into
    assert not gone.exists() and live.exists()


def special_files(folder: Path) -> dict[str, str]:
    """A FIFO, a link loop, a broken link and a link loop to a folder in `folder`, named like audio → their kinds."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.wav")
    os.symlink("loop.wav", folder / "loop.wav")
    os.symlink("gone", folder / "broken.wav")
    os.symlink("deep", folder / "deep")
    return {"fifo.wav": "a FIFO", "loop.wav": "symbolic links", "broken.wav": "broken link"}


def test_only_regular_files_are_inputs(tmp_path):
    """Whatever lists them (a folder, a glob, a manifest, an argument), a FIFO, a link loop or a broken
    link is an input with an error, never one that a command opens (a FIFO waits for a writer forever)."""
    kinds = special_files(tmp_path / "in")
    tree(tmp_path / "in", "good.wav")
    (tmp_path / "list.txt").write_text("in/fifo.wav\nin/loop.wav\nin/deep/x.wav\nin/good.wav\n")
    with within(30):
        by_folder = expand_inputs([str(tmp_path / "in")], AUDIO)
        by_glob = expand_inputs([str(tmp_path / "in" / "*.wav")], AUDIO)
        by_manifest = expand_inputs([str(tmp_path / "list.txt")], AUDIO, manifests=True)
    for found in (by_folder, by_glob):
        errors = {Path(i.path).name: i.error for i in found}
        assert errors["good.wav"] is None and len(errors) == 4
        for name, kind in kinds.items():
            assert errors[name] and kind in errors[name], errors
    assert [i.error is None for i in by_manifest] == [False, False, False, True]
    assert "symbolic links" in str(by_manifest[2].error)  # a path into a link loop
    for name, kind in kinds.items():
        with pytest.raises(InputError, match=kind):
            expand_inputs([str(tmp_path / "in" / name)], AUDIO)
        assert kind in str(expand_inputs([str(tmp_path / "in" / name)], AUDIO, strict=False)[0].error)
    (tmp_path / "list.fifo.txt").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "fifo.txt")
    with within(30), pytest.raises(InputError, match="not a regular file"):
        expand_inputs([str(tmp_path / "fifo.txt")], AUDIO, manifests=True)  # a manifest that is a FIFO


def test_open_regular_refuses_a_fifo_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "x.wav")
    with within(30), pytest.raises(InputError, match=r"x\.wav: not a regular file \(a FIFO\)"):
        open_regular(tmp_path / "x.wav")
    (tmp_path / "y.wav").write_bytes(b"data")
    with open_regular(tmp_path / "y.wav") as f:
        assert f.read() == b"data" and f.name == str(tmp_path / "y.wav")
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "gone.wav")


def test_a_recursive_glob_does_not_follow_links_to_folders(tmp_path):
    """Three links to `.` would make `glob.glob("**")` walk 3^40 paths (the nesting the system allows)."""
    tree(tmp_path / "g", "a.wav", "sub/b.wav", ".hidden/c.wav")
    for name in ("l1", "l2", "l3"):
        os.symlink(".", tmp_path / "g" / name)
    with within(30):
        found = expand_inputs([str(tmp_path / "g" / "**" / "*.wav")], AUDIO)
        assert [i.path for i in found] == [str(tmp_path / "g" / "a.wav"), str(tmp_path / "g" / "sub" / "b.wav")]
        assert [i.path for i in expand_inputs([str(tmp_path / "g" / "**")], AUDIO)] == [i.path for i in found]
        assert len(find_files(tmp_path / "g", AUDIO)) == 3  # a folder search includes hidden folders, as before
    old = Path.cwd()
    os.chdir(tmp_path / "g")
    try:
        assert [i.path for i in expand_inputs(["**/*.wav"], AUDIO)] == ["a.wav", os.path.join("sub", "b.wav")]
    finally:
        os.chdir(old)


def test_a_folder_that_cannot_be_listed_is_reported_not_skipped(tmp_path, monkeypatch):
    tree(tmp_path / "in", "a.wav", "locked/b.wav")
    scandir = os.scandir

    def refuse_locked(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))  # as a folder of mode 0 to a user
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    found = expand_inputs([str(tmp_path / "in")], AUDIO)
    assert found[0] == Input(str(tmp_path / "in" / "a.wav"), "a.wav")
    assert found[1].rel == "locked" and "cannot list the folder (Permission denied)" in str(found[1].error)


def test_manifests_are_bounded_and_their_errors_are_one_short_line(tmp_path, monkeypatch):
    """A runaway line, an over-long path, a huge file or a field over the CSV module's limit: one short
    InputError naming the manifest and line, never the text itself or a csv.Error."""
    huge = "x" * (fileio.MANIFEST_MAX_LINE + 10)
    (tmp_path / "line.txt").write_text(f"a.wav\n{huge}\n")
    (tmp_path / "path.jsonl").write_text(json.dumps({"path": "y" * 5000}) + "\n")
    (tmp_path / "field.csv").write_text(f"path,text\na.wav,{'z' * 200_000}\n")
    (tmp_path / "ok.csv").write_text('path,text\n"a.wav","two\nlines"\n')
    cases = {
        "line.txt": r"line\.txt:2: a line over 1048576 characters",
        "path.jsonl": r"path\.jsonl:1: a path of 5000 characters \(at most 4096\)",
        "field.csv": r"field\.csv:2: not CSV \(field larger than field limit",
    }
    for name, message in cases.items():
        with pytest.raises(InputError, match=message) as caught:
            expand_inputs([str(tmp_path / name)], AUDIO, manifests=True)
        assert len(str(caught.value)) < 200 + len(str(tmp_path)) and "\n" not in str(caught.value)
    assert expand_inputs([str(tmp_path / "ok.csv")], AUDIO, manifests=True) == [Input(str(tmp_path / "a.wav"), "a.wav")]
    monkeypatch.setattr(fileio, "MANIFEST_MAX_BYTES", 100)
    (tmp_path / "big.txt").write_text("a.wav\n" * 20)
    with pytest.raises(InputError, match=r"big\.txt: a manifest of 120 bytes \(at most 100\)"):
        expand_inputs([str(tmp_path / "big.txt")], AUDIO, manifests=True)


def test_messages_show_at_most_a_few_hundred_characters_of_a_path(tmp_path):
    assert shorten("short") == "short"
    cut = shorten("/start/" + "m" * 10_000 + "/name.wav")
    assert len(cut) == fileio.SHOWN_CHARS and cut.startswith("/start/") and cut.endswith("/name.wav") and "…" in cut
    long_name = str(tmp_path / ("q" * 100_000 + "*.wav"))
    with pytest.raises(InputError) as caught:
        expand_inputs([long_name], AUDIO)
    assert len(str(caught.value)) < 400
