"""The released DAC weights by name: downloaded once, checked, converted, and loaded from the cache after that.

`load_model("dac_44khz")` (and `dac_44khz_16kbps`, `dac_24khz`, `dac_16khz`, the names of the
reference's releases) calls `fetch_official`. It downloads the release file into `model_dir()`
with a progress bar, resuming a partial download (`NAME.pth.part`) with an HTTP Range request,
checks its size and, where this table pins one, its SHA-256, renames it into place, converts it
through the safe `.pth` reader (`dac_compat.read_dac_pth`: no unpickling of objects) to our
safetensors format and records where it came from and the SHA-256 of what was fetched. Later
calls load `NAME.safetensors` without touching the network. `$RVQGAN_DAC_MIRROR` replaces the
release server (for mirrors and tests): the file name and tag stay as in `OFFICIAL`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .model import CheckpointError

RELEASES = "https://github.com/descriptinc/descript-audio-codec/releases/download"
MIRROR_ENV = "RVQGAN_DAC_MIRROR"


@dataclass(frozen=True)
class Release:
    """One released weights file: `{base}/{tag}/{file}`; `size` and `sha256` are checked when known."""

    tag: str
    file: str
    size: int | None = None
    sha256: str | None = None

    def url(self) -> str:
        return f"{os.environ.get(MIRROR_ENV, RELEASES).rstrip('/')}/{self.tag}/{self.file}"


# The reference's releases (dac/utils/__init__.py of descript-audio-codec). Their digests are not
# published; what was fetched is recorded in the converted file's metadata (`source_sha256`).
OFFICIAL: dict[str, Release] = {
    "dac_44khz": Release("0.0.1", "weights.pth"),
    "dac_44khz_16kbps": Release("1.0.0", "weights_44khz_16kbps.pth"),
    "dac_24khz": Release("0.0.4", "weights_24khz.pth"),
    "dac_16khz": Release("0.0.5", "weights_16khz.pth"),
}


def official_path(name: str) -> Path:
    """Where the converted weights of release `name` are cached."""
    from .checkpoint import model_dir

    return model_dir() / f"{name}.safetensors"


def fetch_official(name: str, progress: bool | None = None, timeout: float = 30.0) -> Path:
    """The converted weights of release `name` in `model_dir()`, downloading and converting them if needed.

    Raises `CheckpointError` (one line) when the file cannot be fetched or is not what it should be.
    """
    from .checkpoint import save_model
    from .dac_compat import load_dac_pth

    release = OFFICIAL[name]
    target = official_path(name)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_suffix(".pth")
    if not raw.exists():
        _download(name, release, raw, progress if progress is not None else sys.stderr.isatty(), timeout)
    digest = _sha256(raw)
    try:
        model = load_dac_pth(raw)
    except CheckpointError as exc:
        raw.unlink()  # not a release file after all: do not keep it in the cache
        raise CheckpointError(f"{name}: what {release.url()} served is not DAC weights ({exc})") from None
    save_model(model, target, extra={"source": release.url(), "source_sha256": digest, "source_size": str(raw.stat().st_size)})
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(name: str, release: Release, raw: Path, progress: bool, timeout: float) -> None:
    """`release` into `raw`: resumed from `raw.pth.part`, checked, then renamed into place."""
    url = release.url()
    part = raw.with_name(raw.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "rvqgan", **({"Range": f"bytes={have}-"} if have else {})})
    elsewhere = f"fetch {url} another way and run `rvqgan import-dac weights.pth {raw.with_suffix('.safetensors')}`"
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            response = None
        else:
            part.unlink(missing_ok=True)
            raise CheckpointError(f"{name}: cannot download {url}: HTTP {exc.code} {exc.reason}; or {elsewhere}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(f"{name}: cannot reach {url} ({reason}); or {elsewhere}") from None
    if response is not None:
        with response:
            resumed = have and response.status == 206
            if not resumed:
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else release.size
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=f"download {name}", leave=False)
            try:
                with open(part, "ab" if resumed else "wb") as f:
                    while True:
                        try:
                            block = response.read(1 << 16)
                        except (OSError, urllib.error.URLError) as exc:
                            raise CheckpointError(
                                f"{name}: the download of {url} broke off after {f.tell()} bytes ({type(exc).__name__}); run again to resume"
                            ) from None
                        if not block:
                            break
                        f.write(block)
                        if bar is not None:
                            bar.update(len(block))
                    got = f.tell()
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and got < total:
                raise CheckpointError(
                    f"{name}: the download of {url} broke off after {got} of {total} bytes; run again to resume"
                )
    size = part.stat().st_size
    if release.size is not None and size != release.size:
        part.unlink()
        raise CheckpointError(f"{name}: {url} gave {size} bytes, not the {release.size} of the release; nothing was kept")
    if release.sha256 is not None and _sha256(part) != release.sha256:
        part.unlink()
        raise CheckpointError(f"{name}: {url} is not the release (SHA-256 differs from the pinned one); nothing was kept")
    os.replace(part, raw)
