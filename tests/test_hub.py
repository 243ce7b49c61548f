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


class Server:
    """A loopback HTTP server for one file, with Range support and ways to fail: `mode` is ok, truncate or missing."""

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
