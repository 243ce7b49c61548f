"""Files in and out: which files arguments name, where outputs go, and writing files whole.

`expand_inputs` is the one rule by which every command and the trainer turn arguments into
files: folders (searched recursively), globs, plain files and, where asked, manifests.
`plan_outputs` pairs inputs with output names, mirroring a folder's tree, and refuses clashes
before anything is written. `atomic_write` makes a file appear whole or not at all, and
`write_output` does so for a command's output, where "-" is standard output. Files being
written have hidden temporary names (`temporary_path`) that no output or input pattern matches;
those a killed process left behind are removed by the next writer (`remove_stale_temporaries`).
"""

from __future__ import annotations

import csv
import errno
import glob
import io
import json
import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

STDIO = "-"  # the argument that names standard input or output
MANIFEST_SUFFIXES = (".txt", ".csv", ".jsonl")
# Bounds of a manifest (`manifest_paths`): 1 GiB (some ten million paths), a line of 1 MiB (a CSV
# row may carry a transcript), a path of 4096 characters (Linux's PATH_MAX, in bytes).
MANIFEST_MAX_BYTES = 2**30
MANIFEST_MAX_LINE = 2**20
MANIFEST_MAX_PATH = 4096
MISSING = "no such file or folder"
SHOWN_CHARS = 300  # how much of a path or other echoed text a message or record shows (`shorten`)
# Temporary files of `atomic_write` (`temporary_path`): `.NAME.rvqgan-PID-RANDOM.tmp[SUFFIX]`.
_TEMPORARY = re.compile(r"\..*\.rvqgan-(?P<pid>[0-9]{1,12})-[0-9a-f]{8}\.tmp(\.[^.]*)?", re.DOTALL)
_TEMPORARY_NAME_BYTES = 120
STALE_SECONDS = 60.0  # a temporary file untouched this long is a killed writer's
_SWEPT: set[str] = set()  # folders whose stale temporary files this process has removed


class InputError(ValueError):
    """Arguments that name no usable input or output; the message is one line."""


class Input(NamedTuple):
    """A file an argument names.

    `rel` is where it sits below what named it: its path inside the folder given (output trees
    mirror it), or the path as a manifest writes it; None for a file named directly or by a glob.
    `error` is set, so that a command can report it in its turn, for a folder that holds no file
    of the kinds asked for (with `path` the argument itself) and for anything that is there but is
    not a regular file (`expand_inputs`).
    """

    path: str
    rel: str | None = None
    error: str | None = None


def find_files(folder: str | Path, suffixes: tuple[str, ...], unreadable: list[OSError] | None = None) -> list[Path]:
    """The entries under `folder` whose suffix (in any case) is one of `suffixes`, sorted; searched
    recursively, without following links to folders (a link loop is searched once). They are
    names only: `expand_inputs` tells which are regular files. A subfolder that cannot be listed
    is skipped, and its error appended to `unreadable` where given."""
    out = []
    for root, _, files in os.walk(folder, onerror=None if unreadable is None else unreadable.append):
        out += [Path(root) / f for f in files if Path(f).suffix.lower() in suffixes]
    return sorted(out)


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` cut to `limit` characters by an ellipsis in its middle (a path keeps its start and
    its file name), for messages and records that must stay one short line whatever they echo."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


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
    with `**`, which does not follow links to folders) and gives the files it matches, sorted;
    with `manifests`, a `.txt` (a path per line, `#` comments), `.csv` or `.jsonl` (a `path`
    column or key) file gives the paths it lists (`manifest_paths`), relative ones relative to
    it; with `stdin`, "-" stays as it is; anything else is a file.

    Only regular files (or links to them) are inputs: opening a FIFO waits for a writer forever,
    and a device or socket is no audio file. An entry of a folder, glob or manifest that is
    anything else (a FIFO, a device, a broken link, a link loop, a subfolder that cannot be
    listed) comes back as `Input(path, rel, error=...)`, for the command to report in its turn
    while the rest go on; a manifest's path where nothing is comes back as it is, like a missing
    file named directly without `strict`.

    With `strict`, an item that names nothing (a folder without `what`, a glob that matches no
    file, a path that does not exist or is not a regular file) raises `InputError`. Otherwise
    such an item comes back as `Input(item, error=...)` if something is there (a folder, a FIFO,
    a link loop), and as it is if nothing is, for opening it to report. Paths in messages are
    cut to `SHOWN_CHARS` characters (`shorten`).
    """
    out: list[Input] = []
    for item in items:
        if stdin and item == STDIO:
            out.append(Input(item))
            continue
        found, why = _expand_one(item, suffixes, what, manifests)
        if why and strict:
            raise InputError(f"{shorten(item)}: {why}")
        out += [Input(item, error=f"{shorten(item)}: {why}" if os.path.lexists(item) else None)] if why else found
    return out


def _expand_one(item: str, suffixes: tuple[str, ...], what: str, manifests: bool) -> tuple[list[Input], str]:
    """(the files `item` names, "" or why it names none)."""
    path = Path(item)
    if os.path.isdir(item):  # os.path's tests take any error (a name too long) for "no"; Path's raise some
        unreadable: list[OSError] = []
        files = [_checked(str(f), str(f.relative_to(path))) for f in find_files(path, suffixes, unreadable)]
        for exc in unreadable:
            where, reason = str(exc.filename), exc.strerror or type(exc).__name__
            files.append(Input(where, os.path.relpath(where, path), f"{shorten(where)}: cannot list the folder ({reason})"))
        return files, "" if files else f"no {what} in folder"
    if manifests and path.suffix.lower() in MANIFEST_SUFFIXES and os.path.isfile(item):
        entries = manifest_paths(path)
        return [_checked(e if Path(e).is_absolute() else str(path.parent / e), e) for e in entries], ""
    why = _not_regular(item)
    if why is None:
        return [Input(item)], ""
    if not os.path.lexists(item) and any(ch in item for ch in "*?["):
        matches = [_checked(m) for m in _glob(item) if not os.path.isdir(m)]
        return matches, "" if matches else "no files match"
    return [], why


def _not_regular(path: str) -> str | None:
    """Why `path` is not a regular file (links followed), or None if it is one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return MISSING if not os.path.islink(path) else "a broken link (its target does not exist)"
    except OSError as exc:  # a link loop (ELOOP), a name too long, no permission
        return exc.strerror or type(exc).__name__
    except ValueError:  # os.stat refuses a NUL character, which no path can hold
        return "not a path (it holds a NUL character)"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    return f"not a regular file ({next((kind for test, kind in kinds if test(mode)), 'a special file')})"


def _checked(path: str, rel: str | None = None) -> Input:
    """`Input(path, rel)`, with `error` set if something is at `path` but not a regular file (a
    path where nothing is stays as it is: opening it says so)."""
    why = _not_regular(path)
    if why is None or why == MISSING:
        return Input(path, rel)
    return Input(path, rel, f"{shorten(path)}: {why}")


def _glob(pattern: str) -> list[str]:
    """`glob.glob(pattern, recursive=True)`, sorted, except that `**` does not descend into links to
    folders: following them, two links to `.` make a search exponential in the depth the system
    allows links to nest (a hang), and a folder search does not follow them either."""
    parts = re.split("[/\\\\]" if os.altsep else "/", pattern)
    if "**" not in parts:
        return sorted(glob.glob(pattern))
    i = parts.index("**")
    prefix, rest = os.sep.join(parts[:i]) or (os.sep if i == 1 else ""), os.sep.join(parts[i + 1 :])
    out: set[str] = set()
    for base in glob.glob(prefix) if glob.has_magic(prefix) else [prefix]:
        for root, dirs, files in os.walk(base or os.curdir):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # as glob: `**` skips hidden folders
            here = root if base else os.path.relpath(root)
            here = "" if here == os.curdir else here
            if rest:
                out.update(_glob(os.path.join(glob.escape(here), rest) if here else rest))
            else:
                out.update(os.path.join(here, f) for f in files if not f.startswith("."))
    return sorted(out)


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for reading (binary), if it is a regular file; `InputError` otherwise.

    The check is made on the open file, so a file swapped for a FIFO after it was listed is
    still refused, and the open does not wait (a FIFO opened for reading waits for a writer).
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)
    f = open(os.fspath(path), "rb", opener=lambda name, flags: os.open(name, flags | nonblock))  # named by a str
    try:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{shorten(str(path))}: {_not_regular(str(path)) or 'not a regular file'}")
        if nonblock:
            os.set_blocking(f.fileno(), True)
    except BaseException:
        f.close()
        raise
    return f


def manifest_paths(path: Path) -> list[str]:
    """The paths a manifest lists, as written: `.txt` a path per line (`#` starts a comment
    line); `.csv` its `path` column; `.jsonl` each line's `path` key.

    A manifest is at most `MANIFEST_MAX_BYTES`, a line at most `MANIFEST_MAX_LINE` characters
    and a path at most `MANIFEST_MAX_PATH`: beyond that it is no list of files (a runaway line,
    a file given by mistake), and `InputError` says where, rather than reading it whole.
    """
    kind = path.suffix.lower()
    try:
        with open_regular(path) as raw:
            size = os.fstat(raw.fileno()).st_size
            if size > MANIFEST_MAX_BYTES:
                raise InputError(f"{shorten(str(path))}: a manifest of {size} bytes (at most {MANIFEST_MAX_BYTES})")
            text = io.TextIOWrapper(raw, newline="" if kind == ".csv" else None)
            lines = _manifest_lines(text, path)
            if kind == ".txt":
                entries = [(n, line.strip()) for n, line in lines if line.strip() and not line.startswith("#")]
            elif kind == ".csv":
                entries = _csv_paths(lines, path)
            else:
                entries = _jsonl_paths(lines, path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{shorten(str(path))}: cannot read the manifest ({type(exc).__name__})") from None
    for number, entry in entries:
        if len(entry) > MANIFEST_MAX_PATH:
            raise InputError(f"{shorten(str(path))}:{number}: a path of {len(entry)} characters (at most {MANIFEST_MAX_PATH})")
    return [entry for _, entry in entries]


def _manifest_lines(text: io.TextIOWrapper, path: Path) -> Iterator[tuple[int, str]]:
    """(number, line with its end) of a manifest, each read only up to `MANIFEST_MAX_LINE` characters."""
    number = 0
    while line := text.readline(MANIFEST_MAX_LINE + 1):
        number += 1
        if len(line.rstrip("\r\n")) > MANIFEST_MAX_LINE:
            raise InputError(f"{shorten(str(path))}:{number}: a line over {MANIFEST_MAX_LINE} characters")
        yield number, line


def _csv_paths(lines: Iterator[tuple[int, str]], path: Path) -> list[tuple[int, str]]:
    """(line number, path) of a CSV manifest's non-empty `path` fields."""
    at = [0]  # the number of the line the reader is on

    def numbered() -> Iterator[str]:
        for number, line in lines:
            at[0] = number
            yield line

    reader = csv.DictReader(numbered())
    try:
        rows = [(at[0], r["path"]) for r in reader if r.get("path")]
    except csv.Error as exc:
        raise InputError(f"{shorten(str(path))}:{at[0]}: not CSV ({exc})") from None
    if reader.fieldnames is None or "path" not in reader.fieldnames:
        raise InputError(f"{shorten(str(path))}: a CSV manifest needs a 'path' column")
    return rows


def _jsonl_paths(lines: Iterator[tuple[int, str]], path: Path) -> list[tuple[int, str]]:
    """(line number, path) of a JSON Lines manifest's `path` keys."""
    out = []
    for number, line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise InputError(f"{shorten(str(path))}:{number}: not JSON") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise InputError(f"{shorten(str(path))}:{number}: each line needs a string 'path'")
        out.append((number, entry["path"]))
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


def write_output(path: str, write: Callable[[BinaryIO], object], *, overwrite: bool = True) -> None:
    """Run `write(file)` for the output `path`: "-" is standard output (written once `write`
    returns, so a failure writes nothing); otherwise a file written whole (`atomic_write`), its
    folders made as needed.

    The file object is named like `path` (writers that pick a format from the name see the
    output's suffix), though it is a temporary file whose name has no output suffix. Without
    `overwrite`, an output that appears meanwhile (another process writing the same name) is
    kept and this one fails with `FileExistsError`. The first output this process writes into a
    folder removes the stale temporary files there (`remove_stale_temporaries`).
    """
    if path == STDIO:
        buf = io.BytesIO()
        write(buf)
        write_all(sys.stdout.buffer, buf.getbuffer())
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = os.path.realpath(target.parent)
    if folder not in _SWEPT:
        _SWEPT.add(folder)
        remove_stale_temporaries(folder)

    def to_file(tmp: Path) -> None:
        raw = io.FileIO(tmp, "xb")
        raw.name = str(target)
        with io.BufferedWriter(raw) as f:
            write(f)

    atomic_write(target, to_file, exclusive=not overwrite, keep_suffix=False)


def write_all(out: BinaryIO, data: bytes | memoryview) -> None:
    """Write all of `data` to `out` and flush it. A buffered stream's `write` may return after
    writing only part (a file system that fills up takes the first bytes and refuses the rest on
    the next call), so it is called until nothing is left; a write that takes nothing is a full
    device."""
    view = memoryview(data).cast("B")
    while view:
        n = out.write(view)
        if not n:
            raise OSError(errno.ENOSPC, "No space left on device")
        view = view[n:]
    out.flush()


def atomic_write(
    path: str | Path, write: Callable[[Path], object], *, durable: bool = False, exclusive: bool = False, keep_suffix: bool = True
) -> None:
    """Call `write(tmp)` on a temporary path beside `path` (`temporary_path`), then move it into place.

    With `keep_suffix` the temporary name ends with `path`'s suffix, for writers that pick a
    format from the name (`np.save` appends `.npy` to any other); without it, it ends with `.tmp`,
    so that nothing that looks for outputs by suffix takes it for one. It gets the permissions a
    new file would (0666 less the umask) and is removed if `write` fails. With `exclusive`, an
    existing `path` is never replaced: the file is linked into place, which fails with
    `FileExistsError` if `path` exists by then, so of two processes writing one name the second
    fails rather than replacing the first one's file. With `durable`, the file and its folder are
    flushed to disk (fsync) around the move, so the file survives a power loss whole or not at all.
    """
    path = Path(path)
    tmp = temporary_path(path, keep_suffix=keep_suffix)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if durable:
            _fsync(tmp)
        if exclusive:
            _link_new(tmp, path)
        else:
            os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def temporary_path(path: Path, *, keep_suffix: bool = False) -> Path:
    """A fresh temporary name beside `path`: `.NAME.rvqgan-PID-RANDOM.tmp` (then `path`'s suffix with
    `keep_suffix`). Hidden (shell and `glob` patterns skip it), not an audio or code suffix, and
    named after the process that writes it, so `remove_stale_temporaries` can tell a killed
    writer's file. NAME is `path`'s name cut to `_TEMPORARY_NAME_BYTES`, to stay within the
    file system's limit on a name."""
    name = os.fsdecode(os.fsencode(path.name)[:_TEMPORARY_NAME_BYTES])
    return path.with_name(f".{name}.rvqgan-{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix if keep_suffix else ''}")


def is_temporary(path: str | Path) -> bool:
    """Whether `path` is named like a temporary file of `atomic_write` (`temporary_path`)."""
    return _TEMPORARY.fullmatch(Path(path).name) is not None


def remove_stale_temporaries(folder: str | Path, *, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporary files (`is_temporary`) in `folder`, not below it, that a killed writer
    left: those whose process is gone, or that nothing has written to for `older_than` seconds.
    Returns what it removed. Other files, and a live writer's temporary file, are left alone.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    now = time.time()
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime > older_than or not _running(int(match["pid"])):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # removed meanwhile, or not ours to remove
            continue
    return removed


def _running(pid: int) -> bool:
    """Whether process `pid` exists on this machine (assumed so where that cannot be asked)."""
    if pid == os.getpid() or os.name != "posix":  # signal 0 is a probe only on POSIX
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def _link_new(tmp: Path, path: Path) -> None:
    """Put the whole file `tmp` at `path` unless `path` exists (`FileExistsError` then): a hard link
    is created only where no name is; on a file system without hard links the name is claimed
    with an exclusive create, then the file moved onto it."""
    exists = FileExistsError(f"{path}: exists (another process wrote it meanwhile); use --overwrite to replace it")
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise exists from None
    except OSError:
        pass  # no hard links on this file system
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise exists from None
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
