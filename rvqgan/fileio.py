"""Files in and out: which files arguments name, where outputs go, and writing files whole.

`expand_inputs` is the one rule by which every command and the trainer turn arguments into
files: folders (searched recursively), globs, plain files and, where asked, manifests.
`plan_outputs` pairs inputs with output names, mirroring a folder's tree, and refuses clashes
before anything is written. `atomic_write` makes a file appear whole or not at all, and
`write_output` does so for a command's output, where "-" is standard output.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

STDIO = "-"  # the argument that names standard input or output
MANIFEST_SUFFIXES = (".txt", ".csv", ".jsonl")


class InputError(ValueError):
    """Arguments that name no usable input or output; the message is one line."""


class Input(NamedTuple):
    """A file an argument names.

    `rel` is where it sits below what named it: its path inside the folder given (output trees
    mirror it), or the path as a manifest writes it; None for a file named directly or by a glob.
    `error` is set, with `path` the argument itself, for a folder that holds no file of the
    kinds asked for, so that a command can report it in its turn.
    """

    path: str
    rel: str | None = None
    error: str | None = None


def find_files(folder: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files under `folder` whose suffix (in any case) is one of `suffixes`, sorted; searched
    recursively, without following links to folders."""
    out = []
    for root, _, files in os.walk(folder):
        out += [Path(root) / f for f in files if Path(f).suffix.lower() in suffixes]
    return sorted(out)


def expand_inputs(
    items: list[str],
    suffixes: tuple[str, ...],
    *,
    what: str = "audio files",
    manifests: bool = False,
    stdin: bool = False,
    strict: bool = True,
) -> list[Input]:
    """The files `items` name, in order: a folder gives its files with one of `suffixes`
    (`find_files`); a path that does not exist but holds `*`, `?` or `[` is a glob (recursive
    with `**`) and gives the files it matches, sorted; with `manifests`, a `.txt` (a path per
    line, `#` comments), `.csv` or `.jsonl` (a `path` column or key) file gives the paths it
    lists, relative ones relative to it; with `stdin`, "-" stays as it is; anything else is a file.

    With `strict`, an item that names nothing (a folder without `what`, a glob that matches no
    file, a path that does not exist) raises `InputError`. Otherwise a folder without `what` comes
    back as `Input(item, error=...)` and the rest as they are, for opening them to report.
    """
    out: list[Input] = []
    for item in items:
        if stdin and item == STDIO:
            out.append(Input(item))
            continue
        found, why = _expand_one(item, suffixes, what, manifests)
        if why and strict:
            raise InputError(f"{item}: {why}")
        out += [Input(item, error=f"{item}: {why}" if Path(item).is_dir() else None)] if why else found
    return out


def _expand_one(item: str, suffixes: tuple[str, ...], what: str, manifests: bool) -> tuple[list[Input], str]:
    """(the files `item` names, "" or why it names none)."""
    path = Path(item)
    if path.is_dir():
        files = [Input(str(f), str(f.relative_to(path))) for f in find_files(path, suffixes)]
        return files, "" if files else f"no {what} in folder"
    if manifests and path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
        return [Input(e if Path(e).is_absolute() else str(path.parent / e), e) for e in manifest_paths(path)], ""
    if path.exists():
        return [Input(item)], ""
    if any(ch in item for ch in "*?["):
        matches = [Input(m) for m in sorted(glob.glob(item, recursive=True)) if Path(m).is_file()]
        return matches, "" if matches else "no files match"
    return [], "no such file or folder"


def manifest_paths(path: Path) -> list[str]:
    """The paths a manifest lists, as written: `.txt` a path per line (`#` starts a comment
    line); `.csv` its `path` column; `.jsonl` each line's `path` key."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({type(exc).__name__})") from None
    if path.suffix.lower() == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or "path" not in rows[0]:
            raise InputError(f"{path}: a CSV manifest needs a 'path' column")
        return [r["path"] for r in rows if r["path"]]
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise InputError(f"{path}:{number}: not JSON") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise InputError(f"{path}:{number}: each line needs a string 'path'")
        out.append(entry["path"])
    return out


def plan_outputs(inputs: list[Input], out: str | None, suffix: str, single: bool) -> list[tuple[Input, str]]:
    """Each input with its output name, checked before anything is written.

    `out` None puts each output beside its input; "-" is standard output; a folder (one that
    exists, one named with a trailing slash, or any `out` unless `single`) receives the outputs,
    mirroring the tree below a folder input. Outputs take `suffix`. Raises `InputError` for two
    inputs that would write one output, and for an output that would replace its own input.
    """
    plan: list[tuple[Input, str]] = []
    seen: dict[str, str] = {}
    for item in inputs:
        dst = _output_path(item, out, suffix, single)
        if dst != STDIO:
            key = os.path.realpath(dst)
            if key in seen:
                raise InputError(f"{seen[key]} and {item.path} would both be written to {dst}; give them separate output folders")
            seen[key] = item.path
            if item.path != STDIO and key == os.path.realpath(item.path):
                raise InputError(f"{item.path}: the output would replace the input; choose another output with -o")
        plan.append((item, dst))
    return plan


def _output_path(item: Input, out: str | None, suffix: str, single: bool) -> str:
    src = item.path
    if out == STDIO:
        return STDIO
    if out is None:
        return str(Path(src).with_suffix(suffix)) if src != STDIO else STDIO
    target = Path(out)
    if single and not out.endswith(("/", "\\")) and not target.is_dir():
        return out
    name = Path(item.rel) if item.rel is not None else Path(Path(src).name if src != STDIO else "stdin")
    return str(target / name.with_suffix(suffix))


def write_output(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Run `write(file)` for the output `path`: "-" is standard output (written once `write`
    returns, so a failure writes nothing); otherwise a file written whole (`atomic_write`),
    its folders made as needed."""
    if path == STDIO:
        buf = io.BytesIO()
        write(buf)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_write(target, to_file)


def atomic_write(path: str | Path, write: Callable[[Path], object], *, durable: bool = False) -> None:
    """Call `write(tmp)` on a temporary path beside `path` (same suffix), then rename it into place.

    The temporary file keeps `path`'s suffix, so writers that pick a format from the name
    still do. It gets the permissions a new file would (0666 less the umask) and is removed
    if `write` fails. With `durable`, the file and its folder are flushed to disk (fsync)
    around the rename, so the file survives a power loss whole or not at all.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
