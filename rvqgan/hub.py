"""The released DAC weights by name: downloaded once, checked, converted, and loaded from the cache after that.

`load_model("dac_44khz")` (and `dac_44khz_16kbps`, `dac_24khz`, `dac_16khz`, the names of the
reference's releases) calls `fetch_official`. It downloads the release file into `model_dir()`
with a progress bar, resuming a download stopped on this side (`NAME.pth.part`) with an HTTP
Range request and giving up on a server too slow to wait for (`MIN_DOWNLOAD_RATE`), checks its
size against the server's Content-Length (or a pinned size) and, where this table pins one, its
SHA-256 (no release digest is published, so none is pinned today), renames it into place,
converts it through the safe `.pth` reader (`dac_compat.read_dac_pth`: no unpickling of objects)
to our safetensors format and records where it came from and the SHA-256 of what was fetched.
Later calls load `NAME.safetensors` without touching the network; a name read from a file
(`load_model(name, paths=False)`) never starts a download. `$RVQGAN_DAC_MIRROR` replaces the
release server (for mirrors and tests): the file name and tag stay as in `OFFICIAL`.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .checkpoint import CheckpointError, build_from_state_dict, check_finite, save_model, set_provenance
from .config import ConfigError, ModelConfig, from_dict
from .dac_compat import legacy_weight_norm_name, load_dac_pth
from .fileio import atomic_write
from .model import Codec
from .paths import model_dir

RELEASES = "https://github.com/descriptinc/descript-audio-codec/releases/download"
MIRROR_ENV = "RVQGAN_DAC_MIRROR"
MAX_DOWNLOAD_BYTES = 4 << 30  # far above any release (the largest is a few hundred MB)
# A transfer slower than this on average over the last window is stopped (a stalled or trickling
# mirror would otherwise hold the download lock, and every other process waiting on it, forever).
MIN_DOWNLOAD_RATE = 8 << 10  # bytes per second: a release takes hours at this rate
RATE_WINDOW_S = 30.0
MAX_CONFIG_BYTES = 1 << 20


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
    return model_dir() / f"{name}.safetensors"


def fetch_official(name: str, progress: bool | None = None, timeout: float = 30.0) -> Path:
    """The converted weights of release `name` in `model_dir()`, downloading and converting them if needed.

    The server has `timeout` seconds to answer a request (connection and headers, in all) and
    to send each piece of the body, and the body must keep `MIN_DOWNLOAD_RATE` on average over
    every `RATE_WINDOW_S`. Raises `CheckpointError` (one line) when the file cannot be fetched in
    that time or is not what it should be.
    """
    release = OFFICIAL[name]
    target = official_path(name)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    import fcntl  # lazy: POSIX only, needed only when a release is fetched

    key = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"rvqgan-download-{key}.lock", "w") as lock:  # outside the cache
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process downloads; the others wait and then find it cached
        if target.exists():
            return target
        raw = target.with_suffix(".pth")
        if not raw.exists():
            _download(name, release, raw, progress if progress is not None else sys.stderr.isatty(), timeout)
        digest = _sha256(raw)
        try:
            model = load_dac_pth(raw)
        except CheckpointError as exc:
            raw.unlink()  # not a release file after all: do not keep it in the cache
            raise CheckpointError(f"{name}: what {release.url()} served is not DAC weights ({exc})") from None
        save_model(
            model, target, extra={"source": release.url(), "source_sha256": digest, "source_size": str(raw.stat().st_size)}
        )
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(name: str, release: Release, raw: Path, progress: bool, timeout: float) -> None:
    """`release` into `raw`: resumed from `raw.pth.part`, checked, then renamed into place.

    A transfer the server cuts short, a 404 or a wrong digest leave nothing behind. A download
    stopped on this side (Ctrl-C, a killed process, a transfer too slow to wait for) leaves its
    `.part`, and the next call asks the server for the rest (HTTP Range) instead of starting over.
    """
    url = release.url()
    part = raw.with_name(raw.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    response = _open_download(name, url, part, have, raw, timeout)
    if response is not None:
        with response:
            resumed = bool(have) and response.status == 206
            if resumed and not str(response.headers.get("Content-Range", "")).startswith(f"bytes {have}-"):
                response.close()  # not the rest of our part: start over
                part.unlink()
                return _download(name, release, raw, progress, timeout)
            have = have if resumed else 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None and length.isdigit() else release.size
            bar = (
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=f"download {name}", leave=False)
                if progress
                else None
            )
            try:
                got = _receive(name, url, response, part, resumed, bar)
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and got < total:
                part.unlink()
                raise CheckpointError(
                    f"{name}: the server closed the download of {url} after {got} of {total} bytes; nothing was kept"
                )
    _check_release(name, url, release, part)
    os.replace(part, raw)


class _Cutter:
    """The sockets one request opens (a redirect opens another), so that a request stuck in a read can be cut.

    The socket timeout bounds each read, not a server that answers one byte at a time; calling
    the cutter (from a timer) shuts the sockets down, which ends the blocked read at once.
    """

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.fired = False

    def connect(self, *args: Any, **kwargs: Any) -> socket.socket:
        """`socket.create_connection`, remembering the socket (the plain one: under TLS too)."""
        sock = socket.create_connection(*args, **kwargs)
        self.sockets.append(sock)
        return sock

    def __call__(self) -> None:
        self.fired = True
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass

    def opener(self) -> urllib.request.OpenerDirector:
        """An opener (proxies and redirects as `urlopen`'s) whose connections this cutter can cut."""
        cutter = self

        def watched(cls: type[http.client.HTTPConnection]) -> Any:
            def connection(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
                conn = cls(*args, **kwargs)
                conn._create_connection = cutter.connect  # type: ignore[attr-defined]  # how http.client opens its socket
                return conn

            return connection

        class HTTPHandler(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> Any:
                return self.do_open(watched(http.client.HTTPConnection), req)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> Any:
                return self.do_open(watched(http.client.HTTPSConnection), req, context=getattr(self, "_context", None))

        return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


def _open_download(name: str, url: str, part: Path, have: int, raw: Path, timeout: float) -> Any:
    """The HTTP response for `url` from byte `have` on, or None when the server says the part is already whole.

    The server has `timeout` seconds in all to connect and send the response's headers.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "rvqgan", **({"Range": f"bytes={have}-"} if have else {})})
    elsewhere = f"fetch {url} another way and run `rvqgan import-dac weights.pth {raw.with_suffix('.safetensors')}`"
    late = f"{name}: {url} did not answer within {timeout:g} s; or {elsewhere}"
    cutter = _Cutter()
    deadline = threading.Timer(timeout, cutter)
    deadline.daemon = True
    deadline.start()
    try:
        response = cutter.opener().open(request, timeout=timeout)
    except ValueError as exc:  # a malformed mirror URL
        raise CheckpointError(f"{name}: cannot download {url[:200]!r}: {exc}") from None
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            return None
        part.unlink(missing_ok=True)
        raise CheckpointError(f"{name}: cannot download {url}: HTTP {exc.code} {exc.reason}; or {elsewhere}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # HTTPException: not an HTTP answer
        if cutter.fired:
            raise CheckpointError(late) from None
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {str(exc)[:100]}"
        raise CheckpointError(f"{name}: cannot reach {url} ({reason}); or {elsewhere}") from None
    finally:
        deadline.cancel()
    if cutter.fired:  # headers cut short look whole to http.client
        response.close()
        raise CheckpointError(late)
    return response


def _receive(name: str, url: str, response: Any, part: Path, append: bool, bar: Any) -> int:
    """Copy the response body into `part` (appending when resuming); the size of `part` after it.

    A broken connection or a body over `MAX_DOWNLOAD_BYTES` deletes `part`: what the server cut
    short is not resumed, only what this side stopped, such as a transfer slower than
    `MIN_DOWNLOAD_RATE` over the last `RATE_WINDOW_S` (`_Pace`).
    """
    read = getattr(response, "read1", response.read)  # what has arrived, so that a trickle is seen as one
    with open(part, "ab" if append else "wb") as f:
        pace = _Pace(f.tell())
        while True:
            if pace.too_slow(f.tell()):
                raise CheckpointError(
                    f"{name}: the download of {url} is slower than {MIN_DOWNLOAD_RATE >> 10} KiB/s over the last "
                    f"{RATE_WINDOW_S:g} s; stopped after {f.tell()} bytes, which the next try resumes from"
                )
            try:
                block = read(1 << 16)
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                got = f.tell()
                f.close()
                part.unlink()
                raise CheckpointError(
                    f"{name}: the server closed the download of {url} after {got} bytes ({type(exc).__name__}); nothing was kept"
                ) from None
            if not block:
                return f.tell()
            if f.tell() + len(block) > MAX_DOWNLOAD_BYTES:
                f.close()
                part.unlink()
                raise CheckpointError(f"{name}: {url} sends more than {MAX_DOWNLOAD_BYTES >> 30} GiB; nothing was kept")
            f.write(block)
            if bar is not None:
                bar.update(len(block))


class _Pace:
    """Whether a transfer averaged less than `MIN_DOWNLOAD_RATE` over the last `RATE_WINDOW_S` seconds."""

    def __init__(self, size: int) -> None:
        self.marks = collections.deque([(time.monotonic(), size)])  # (time, size): one every 1/32 of a window

    def too_slow(self, size: int) -> bool:
        now = time.monotonic()
        window = RATE_WINDOW_S
        if now - self.marks[-1][0] >= window / 32:
            self.marks.append((now, size))
        while len(self.marks) > 1 and self.marks[1][0] <= now - window:
            self.marks.popleft()  # keep the last mark at least a window old
        since, then = self.marks[0]
        return now - since >= window and size - then < MIN_DOWNLOAD_RATE * (now - since)


def _check_release(name: str, url: str, release: Release, part: Path) -> None:
    """Delete `part` and raise unless its size and digest are the release's (where the table pins them)."""
    size = part.stat().st_size
    if release.size is not None and size != release.size:
        part.unlink()
        raise CheckpointError(f"{name}: {url} gave {size} bytes, not the {release.size} of the release; nothing was kept")
    if release.sha256 is not None and _sha256(part) != release.sha256:
        part.unlink()
        raise CheckpointError(f"{name}: {url} is not the release (SHA-256 differs from the pinned one); nothing was kept")


# -- Hugging Face: the transformers `DacModel` layout (config.json + model.safetensors) -------------------

HF_PREFIX = "hf:"


def _hf_module_name(ours: str, n_enc: int, n_dec: int) -> str:
    """Our module path (the reference's names) → the transformers `DacModel` one, for every module with weights."""
    parts = ours.split(".")

    def unit(rest: list[str]) -> str:  # a residual unit's block.{0..3}: snake1, conv1, snake2, conv2
        return {"0": "snake1", "1": "conv1", "2": "snake2", "3": "conv2"}[rest[1]]

    if parts[0] == "quantizer":
        return ours
    if parts[0] == "encoder":
        i = int(parts[2])
        if i == 0:
            return "encoder.conv1"
        if i == n_enc + 1:
            return "encoder.snake1"
        if i == n_enc + 2:
            return "encoder.conv2"
        j = int(parts[4])
        if j < 3:
            return f"encoder.block.{i - 1}.res_unit{j + 1}.{unit(parts[5:])}"
        return f"encoder.block.{i - 1}.{'snake1' if j == 3 else 'conv1'}"
    i = int(parts[2])
    if i == 0:
        return "decoder.conv1"
    if i == n_dec + 1:
        return "decoder.snake1"
    if i == n_dec + 2:
        return "decoder.conv2"
    j = int(parts[4])
    if j >= 2:
        return f"decoder.block.{i - 1}.res_unit{j - 1}.{unit(parts[5:])}"
    return f"decoder.block.{i - 1}.{'snake1' if j == 0 else 'conv_t1'}"


def _hf_names(config: ModelConfig) -> dict[str, str]:
    """Our tensor name → the `DacModel` tensor name; weight-normed pairs (`weight_g`, `weight_v`) map to one `weight`."""
    with torch.device("meta"):
        names = list(Codec(config).state_dict())
    out = {}
    for name in names:
        module, leaf = name.rsplit(".", 1)
        hf_leaf = "weight" if leaf in ("weight_g", "weight_v") else leaf
        out[name] = f"{_hf_module_name(module, len(config.encoder_rates), len(config.decoder_rates))}.{hf_leaf}"
    return out


def hf_config(config: ModelConfig) -> dict[str, Any]:
    """`config` as a transformers `DacConfig` (config.json); a ValueError for what `DacModel` cannot express."""
    n = len(config.encoder_rates)
    if config.latent_dim != config.encoder_dim * 2**n:
        raise ValueError(
            f"transformers' DacModel fixes latent_dim = encoder_dim·2^{n} = {config.encoder_dim * 2**n}; this model has {config.latent_dim}"
        )
    if tuple(config.decoder_rates) != tuple(reversed(config.encoder_rates)):
        raise ValueError("transformers' DacModel needs decoder_rates to be encoder_rates reversed")
    if config.output_padding and any(r % 2 for r in config.decoder_rates):
        raise ValueError(
            "this model decodes with output_padding (odd strides emit stride × input samples); DacModel's decoder does not, "
            "so it would decode these weights differently"
        )
    return {
        "architectures": ["DacModel"],
        "model_type": "dac",
        "encoder_hidden_size": config.encoder_dim,
        "downsampling_ratios": list(config.encoder_rates),
        "decoder_hidden_size": config.decoder_dim,
        "n_codebooks": config.n_codebooks,
        "codebook_size": config.codebook_size,
        "codebook_dim": config.codebook_dim,
        "quantizer_dropout": float(config.quantizer_dropout),
        "commitment_loss_weight": 0.25,
        "codebook_loss_weight": 1.0,
        "sampling_rate": config.sample_rate,
        "upsampling_ratios": list(reversed(config.encoder_rates)),
        "hidden_size": config.latent_dim,
        "hop_length": config.hop_length,
        "torch_dtype": "float32",
    }


def export_hf(model: Codec, out_dir: str | Path) -> Path:
    """Write `model` as a folder that `transformers.DacModel.from_pretrained(out_dir)` loads (weight norm folded).

    Its origin (`Codec.provenance`: what a fine-tune was trained from, whose codes it decodes) goes
    into config.json as "rvqgan", which transformers keeps as a config attribute and `load_hf_folder`
    reads back."""
    config = hf_config(model.config)
    if model.provenance():
        config["rvqgan"] = model.provenance()
    names = _hf_names(model.config)
    state = model.state_dict()
    tensors = {}
    for ours, theirs in names.items():
        if ours.endswith(".weight_g"):
            continue
        if ours.endswith(".weight_v"):
            g = state[ours[: -len("weight_v")] + "weight_g"]
            tensors[theirs] = torch._weight_norm(state[ours].float(), g.float(), 0).contiguous()
        else:
            tensors[theirs] = state[ours].float().contiguous()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "model.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    atomic_write(out_dir / "config.json", lambda tmp: tmp.write_text(json.dumps(config, indent=2)))
    return out_dir


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def load_hf_folder(folder: str | Path, device: str | Any = "cpu") -> Codec:
    """A folder in the transformers `DacModel` layout as our `Codec` (decoding as `DacModel` does: no output_padding)."""
    folder = Path(folder)
    config, data = _hf_folder_config(folder)
    inverse: dict[str, list[str]] = {}  # their tensor name → ours (two for a weight-normed conv)
    for ours, theirs in _hf_names(config).items():
        inverse.setdefault(theirs, []).append(ours)
    path = folder / "model.safetensors"
    raw = _read_hf_tensors(path, config, inverse)
    check_finite(raw, path)  # here too, to name the file's own tensor: a folded weight's norm would carry its NaN
    model = build_from_state_dict(config, _ours_from_hf(raw, inverse), path, device)
    set_provenance(model, data.get("rvqgan", {}), folder / "config.json")
    return model


def _hf_folder_config(folder: Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The `ModelConfig` of a `DacModel` folder's config.json (bounded in size, every field checked), and the JSON."""
    if (folder / "config.json").stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{folder}/config.json: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a model config")
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{folder}/config.json: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("model_type") != "dac":
        raise CheckpointError(
            f"{folder}/config.json: not a DAC model config (model_type {str(data.get('model_type') if isinstance(data, dict) else None)[:40]!r})"
        )
    try:
        rates = data.get("downsampling_ratios", [2, 4, 8, 8])
        config = from_dict(
            ModelConfig,
            {
                "sample_rate": data.get("sampling_rate", 16000),
                "encoder_dim": data.get("encoder_hidden_size", 64),
                "encoder_rates": rates,
                "decoder_dim": data.get("decoder_hidden_size", 1536),
                "decoder_rates": list(reversed(rates)) if isinstance(rates, list) else rates,
                "n_codebooks": data.get("n_codebooks", 9),
                "codebook_size": data.get("codebook_size", 1024),
                "codebook_dim": data.get("codebook_dim", 8),
                "output_padding": False,
            },
            "model",
        )
    except (ConfigError, RecursionError) as exc:
        raise CheckpointError(f"{folder}/config.json: {exc}") from None
    return config, data


def _read_hf_tensors(path: Path, config: ModelConfig, inverse: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """The tensors of `path` this config needs, keyed by their (current) `DacModel` names.

    Names and shapes are checked against `config` from the file's header before any tensor is
    read. Files saved with the older weight-norm names (`weight_g`, `weight_v`) are read too.
    """
    with torch.device("meta"):
        expected_shapes = {k: tuple(v.shape) for k, v in Codec(config).state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = {legacy_weight_norm_name(k): k for k in f.keys()}
            shapes = {k: tuple(f.get_slice(name).get_shape()) for k, name in stored.items()}
            missing = sorted(set(inverse) - {k.replace(".weight_g", ".weight").replace(".weight_v", ".weight") for k in stored})
            if missing:
                raise CheckpointError(f"{path}: not the weights of this config ({len(missing)} missing, e.g. {missing[0]})")
            for theirs, ours_names in inverse.items():  # shapes checked before any tensor is read
                base = theirs[: -len("weight")] if len(ours_names) == 2 else None
                got = shapes.get(theirs) or (shapes.get(base + "weight_v") if base is not None else None)
                want = expected_shapes[next(n for n in ours_names if not n.endswith("weight_g"))]
                if got != want:
                    raise CheckpointError(f"{path}: {theirs} has shape {list(got or [])}, this config needs {list(want)}")
            wanted = set(inverse) | {
                n[: -len("weight")] + s for n, o in inverse.items() if len(o) == 2 for s in ("weight_g", "weight_v")
            }
            return {k: f.get_tensor(stored[k]) for k in stored if k in wanted}
    except CheckpointError:
        raise
    except Exception as exc:  # SafetensorError, OSError
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
        ) from None


def _ours_from_hf(raw: dict[str, torch.Tensor], inverse: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Our state dict from `DacModel` tensors: a folded conv weight w becomes g = ‖w‖ (over all dims but the first), v = w."""
    state = {}
    for theirs, ours_names in inverse.items():
        if len(ours_names) == 2:
            base = theirs[: -len("weight")]
            if base + "weight_v" in raw:
                v, g = raw[base + "weight_v"].float(), raw[base + "weight_g"].float()
            else:
                v = raw[theirs].float()
                g = torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)
                v = torch.where(g == 0, torch.ones_like(v), v)  # an all-zero filter: g = 0 gives it back; v must not be 0
            for ours in ours_names:
                state[ours] = g if ours.endswith("weight_g") else v
        else:
            state[ours_names[0]] = raw[theirs].float()
    return state


# The Hub's names: an owner (user or organisation) and a repository name, or a name alone.
_HUB_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"  # at most 96 characters
HF_REPO_ID = re.compile(rf"(?:{_HUB_NAME}/)?{_HUB_NAME}")
_COMMIT = re.compile(r"[0-9a-fA-F]{40}")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?:/|$)")
MAX_REVISION_CHARS = 255


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """`hf:REPO_ID[@REVISION]` → (repo id, revision or None), both checked as the Hub names them.

    Both end up in paths of `huggingface_hub`'s cache (`models--OWNER--NAME/refs/REVISION`), so
    they are checked here, before the client sees them: a repository id is `[OWNER/]NAME` of
    letters, digits, `_`, `.` and `-` (at most 96 each, starting with a letter or digit, no `..`
    or `--`, not ending in `.git`); a revision is a 40-digit commit or a branch or tag name as
    git allows it (`git check-ref-format`: no `..`, no leading or trailing `/`, no backslash,
    spaces or control characters, no component starting with `.`).
    """
    repo, at, revision = spec[len(HF_PREFIX) :].partition("@")
    if not HF_REPO_ID.fullmatch(repo) or "--" in repo or ".." in repo or repo.endswith(".git"):
        raise CheckpointError(
            f"{spec[:160]!r}: not a Hugging Face repository id (OWNER/NAME: letters, digits, '_', '.' and '-', "
            "at most 96 each, starting with a letter or digit, no '..' or '--')"
        )
    if not at:
        return repo, None
    if _COMMIT.fullmatch(revision):
        return repo, revision
    if (
        not revision
        or len(revision) > MAX_REVISION_CHARS
        or revision.startswith(("/", ".", "-"))
        or revision.endswith(("/", "."))
        or revision == "@"
        or _REF_FORBIDDEN.search(revision)
    ):
        raise CheckpointError(
            f"{spec[:160]!r}: {revision[:80]!r} is not a revision (a branch or tag name, or a 40-digit commit; "
            "no '..', leading '/', backslash, spaces or components starting with '.')"
        )
    return repo, revision


def load_hf(spec: str, device: str | Any = "cpu") -> Codec:
    """`hf:REPO_ID[@REVISION]` through `huggingface_hub` (its cache, token and `HF_HUB_OFFLINE`); the id and the
    revision are checked first (`parse_hf_spec`)."""
    repo, revision = parse_hf_spec(spec)
    try:
        from huggingface_hub import snapshot_download  # optional: hf extra
    except ImportError:
        raise CheckpointError(
            f"{spec}: loading from the Hugging Face Hub needs huggingface_hub: pip install 'rvqgan[hf]'"
        ) from None
    try:
        folder = snapshot_download(repo, revision=revision, allow_patterns=["config.json", "model.safetensors"])
    except Exception as exc:  # huggingface_hub's errors: offline and not cached, no such repo, no access
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{spec}: cannot get it from the Hugging Face Hub ({type(exc).__name__}: {first[:160]})") from None
    if not is_hf_folder(Path(folder)):
        raise CheckpointError(f"{spec}: the repository has no config.json and model.safetensors")
    return load_hf_folder(folder, device)
