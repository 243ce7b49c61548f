"""Released weights by name: download (from a loopback server, never the internet), resume, checks, cache."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES

import rvqgan
from rvqgan.cli import main
from rvqgan.dac_compat import load_dac_pth
from rvqgan.hub import OFFICIAL, Release, fetch_official

PTH = FIXTURES / "reference_small.pth"


def trickle(out, data: bytes, pause: float = 0.01) -> None:
    """Send `data` one byte at a time, until it is all sent or the client goes away."""
    try:
        for i in range(len(data)):
            out.write(data[i : i + 1])
            out.flush()
            time.sleep(pause)
    except OSError:
        pass


class Server:
    """A loopback HTTP server for one file, with Range support and ways to fail: `mode` is ok, truncate, missing,
    chunked, trickle (the body one byte at a time), slow-headers (the headers one byte at a time) or garbage
    (not an HTTP answer)."""

    def __init__(self, payload: bytes):
        self.payload, self.mode, self.requests, self.delay = payload, "ok", [], 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                server.requests.append((self.path, self.headers.get("Range")))
                time.sleep(server.delay)
                if server.mode == "missing":
                    self.send_error(404, "Not Found")
                    return
                if server.mode == "garbage":
                    self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                    return
                if server.mode == "slow-headers":  # a status line, then headers that never end
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    trickle(self.wfile, b"x" * 100_000)
                    return
                if server.mode == "chunked":  # no Content-Length; one chunk, then the connection drops
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"1000\r\n" + server.payload[:4096] + b"\r\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.end_headers()
                if server.mode == "truncate":
                    body = body[: len(body) // 2]  # then the connection closes early
                if server.mode == "trickle":
                    trickle(self.wfile, body)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(monkeypatch, tmp_path):
    server = Server(PTH.read_bytes())
    monkeypatch.setenv("RVQGAN_DAC_MIRROR", server.url)
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "home"))
    yield server
    server.close()


def cache(tmp_path: Path) -> list[str]:
    home = tmp_path / "home"
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


def test_first_call_downloads_and_converts_second_call_stays_offline(served, tmp_path):
    model = rvqgan.load_model("dac_16khz")
    assert served.requests == [("/0.0.5/weights_16khz.pth", None)]
    assert (tmp_path / "home" / "dac_16khz.pth").read_bytes() == PTH.read_bytes()  # what was served, byte for byte
    reference = load_dac_pth(PTH)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reference.state_dict().items())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "home" / "dac_16khz.safetensors"), "pt") as f:
        metadata = f.metadata()
    assert metadata["source"] == f"{served.url}/0.0.5/weights_16khz.pth" and len(metadata["source_sha256"]) == 64
    rvqgan.load_model("dac_16khz")
    assert len(served.requests) == 1  # the cached copy, no request


def test_two_loaders_asking_at_once_download_once(served):
    served.delay = 0.5  # the first download is still running when the second loader asks
    paths: list[Path] = []
    loaders = [threading.Thread(target=lambda: paths.append(fetch_official("dac_16khz", progress=False))) for _ in range(2)]
    for thread in loaders:
        thread.start()
    for thread in loaders:
        thread.join()
    assert len(paths) == 2 and paths[0] == paths[1] and paths[0].exists()
    assert served.requests == [("/0.0.5/weights_16khz.pth", None)]


def test_a_pinned_digest_that_does_not_match_keeps_nothing(served, tmp_path, monkeypatch):
    monkeypatch.setitem(OFFICIAL, "dac_16khz", Release("0.0.5", "weights_16khz.pth", sha256="0" * 64))
    with pytest.raises(rvqgan.CheckpointError, match="SHA-256 differs") as info:
        rvqgan.load_model("dac_16khz")
    assert "\n" not in str(info.value) and cache(tmp_path) == []


def test_a_missing_file_is_one_line_and_keeps_nothing(served, tmp_path, capsys):
    served.mode = "missing"
    assert main(["encode", str(PTH), "--model", "dac_16khz"]) == 1
    err = capsys.readouterr().err.strip()
    assert "HTTP 404" in err and "import-dac" in err and "\n" not in err
    assert cache(tmp_path) == []


def test_a_transfer_the_server_cuts_short_keeps_nothing(served, tmp_path):
    served.mode = "truncate"
    with pytest.raises(rvqgan.CheckpointError, match="server closed the download .* nothing was kept") as info:
        rvqgan.load_model("dac_16khz")
    assert "\n" not in str(info.value) and cache(tmp_path) == []


def test_a_chunked_transfer_cut_short_keeps_nothing(served, tmp_path):
    served.mode = "chunked"
    with pytest.raises(rvqgan.CheckpointError, match="server closed the download") as info:
        rvqgan.load_model("dac_16khz")
    assert "\n" not in str(info.value) and cache(tmp_path) == []


def test_an_interrupted_download_resumes(served, tmp_path):
    (tmp_path / "home").mkdir()
    half = len(served.payload) // 2
    (tmp_path / "home" / "dac_16khz.pth.part").write_bytes(served.payload[:half])  # as a killed download leaves it
    rvqgan.load_model("dac_16khz")
    assert served.requests == [("/0.0.5/weights_16khz.pth", f"bytes={half}-")]  # only the rest was asked for
    assert (tmp_path / "home" / "dac_16khz.pth").read_bytes() == PTH.read_bytes()
    assert cache(tmp_path) == ["dac_16khz.pth", "dac_16khz.safetensors"]


def test_no_network_says_what_could_not_be_reached_and_what_to_do(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RVQGAN_DAC_MIRROR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "home"))
    with pytest.raises(
        rvqgan.CheckpointError, match=r"cannot reach http://127\.0\.0\.1:\d+/0\.0\.1/weights\.pth .*import-dac"
    ) as info:
        rvqgan.load_model("dac_44khz")
    assert "\n" not in str(info.value) and cache(tmp_path) == []


def test_served_bytes_that_are_not_weights_are_not_kept(monkeypatch, tmp_path):
    server = Server(b"<html>a login page</html>")
    monkeypatch.setenv("RVQGAN_DAC_MIRROR", server.url)
    monkeypatch.setenv("RVQGAN_HOME", str(tmp_path / "home"))
    try:
        with pytest.raises(rvqgan.CheckpointError, match="is not DAC weights"):
            rvqgan.load_model("dac_24khz")
    finally:
        server.close()
    assert cache(tmp_path) == []


def test_a_trickling_transfer_is_stopped_and_resumed_later(served, tmp_path, monkeypatch):
    """A mirror that sends a byte at a time would hold the download lock forever: the transfer must keep a minimum
    average rate; what came is kept, the lock is let go, and the next call asks for the rest."""
    monkeypatch.setattr(rvqgan.hub, "MIN_DOWNLOAD_RATE", 4096)
    monkeypatch.setattr(rvqgan.hub, "RATE_WINDOW_S", 0.5)
    served.mode = "trickle"
    started = time.monotonic()
    with pytest.raises(
        rvqgan.CheckpointError, match=r"slower than 4 KiB/s over the last 0\.5 s; stopped after \d+ bytes"
    ) as info:
        fetch_official("dac_16khz", progress=False)
    assert time.monotonic() - started < 5 and "\n" not in str(info.value)
    kept = (tmp_path / "home" / "dac_16khz.pth.part").stat().st_size
    assert 0 < kept < len(served.payload)
    served.mode = "ok"
    fetch_official("dac_16khz", progress=False)  # the lock was let go: this would wait forever otherwise
    assert served.requests[-1] == ("/0.0.5/weights_16khz.pth", f"bytes={kept}-")
    assert (tmp_path / "home" / "dac_16khz.pth").read_bytes() == PTH.read_bytes()


def test_headers_that_never_end_are_cut_at_the_timeout(served, tmp_path):
    served.mode = "slow-headers"
    started = time.monotonic()
    with pytest.raises(rvqgan.CheckpointError, match=r"did not answer within 0\.5 s; or .*import-dac") as info:
        fetch_official("dac_16khz", progress=False, timeout=0.5)
    assert time.monotonic() - started < 5 and "\n" not in str(info.value) and cache(tmp_path) == []


def test_a_server_that_does_not_speak_http_is_one_line(served, tmp_path, capsys):
    served.mode = "garbage"
    assert main(["encode", str(PTH), "--model", "dac_16khz"]) == 1
    err = capsys.readouterr().err.strip()
    assert "cannot reach" in err and "BadStatusLine" in err and "\n" not in err and cache(tmp_path) == []


def test_a_release_named_in_a_code_file_is_never_downloaded(served, tmp_path, capsys):
    """Decoding an untrusted .rvq whose header names a release must not reach the network or write to the cache;
    with the release already cached, the same file decodes; `--model NAME` given by the user downloads as before."""
    import soundfile as sf

    from rvqgan.files import compress_file

    model = load_dac_pth(PTH)
    sf.write(tmp_path / "a.wav", 0.1 * torch.randn(model.hop_length * 20).numpy(), model.sample_rate)
    with open(tmp_path / "a.rvq", "wb") as f:
        compress_file(model, str(tmp_path / "a.wav"), f, model_name="dac_16khz")
    decode = ["decode", str(tmp_path / "a.rvq"), "-o", str(tmp_path / "b.wav"), "-q"]
    assert main(decode) == 1
    err = capsys.readouterr().err.strip()
    assert "never downloads" in err and "--model dac_16khz" in err and "\n" not in err
    assert served.requests == [] and cache(tmp_path) == []
    with pytest.raises(rvqgan.CheckpointError, match="not downloaded"):
        rvqgan.load_model("dac_16khz", paths=False)
    assert main([*decode[:-1], "--model", "dac_16khz", "-q"]) == 0 and len(served.requests) == 1  # asked for by the user
    assert main([*decode[:-1], "--overwrite", "-q"]) == 0 and len(served.requests) == 1  # cached now: no request
