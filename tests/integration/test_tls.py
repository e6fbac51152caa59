"""HTTPS end to end: `vergence serve --tls auto` on all interfaces, reached at the session's non-loopback address by
clients that trust exactly the certificate it made (never verification turned off)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import STARTUP_TIMEOUT_S, ServerProcess, free_port
from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder
from vergence import tls


@dataclass
class HttpsServer:
    """A running `vergence serve --tls auto` and the address clients use."""

    process: ServerProcess
    address: str
    tls_dir: Path

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.process.port}"

    @property
    def ws_url(self) -> str:
        return f"wss://{self.address}:{self.process.port}"

    @property
    def cert_path(self) -> Path:
        return self.tls_dir / "cert.pem"

    def trusting(self) -> ssl.SSLContext:
        """A client context whose only trust anchor is this server's certificate; host names are checked."""
        return ssl.create_default_context(cafile=self.cert_path)


def start_https_server(address: str, tls_dir: Path, log_path: Path, *args: str) -> HttpsServer:
    """Start `vergence serve --tls auto` bound to 0.0.0.0; wait (with a deadline) until `address` answers over https."""
    port = free_port()
    command = [sys.executable, "-m", "vergence", "serve", "--host", "0.0.0.0", "--port", str(port), "--tls", "auto"]
    env = {
        **os.environ,
        "VERGENCE_SERVER__TLS_DIR": str(tls_dir),
        "VERGENCE_STATE__PATH": str(log_path.with_suffix(".state.json")),
    }
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen([*command, *args], stdout=log_file, stderr=subprocess.STDOUT, env=env)
    server = HttpsServer(ServerProcess(popen, port, log_path), address, tls_dir)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"vergence exited with {popen.returncode}:\n{server.process.log()}")
        if server.cert_path.exists():  # written before the server listens
            try:
                if httpx.get(f"{server.url}/api/streams", verify=server.trusting(), timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
        time.sleep(0.05)  # poll interval of a deadline loop, not a wait for an event
    server.process.stop()
    raise RuntimeError(f"vergence did not answer over https within {STARTUP_TIMEOUT_S} s:\n{server.process.log()}")


@pytest.fixture
def https_server(tmp_path: Path, ice_address: str) -> Iterator[Callable[..., HttpsServer]]:
    """Factory: `https_server("--size", "320x240")` starts a server keeping its certificate in tmp_path/tls."""
    servers: list[HttpsServer] = []

    def start(*args: str) -> HttpsServer:
        server = start_https_server(ice_address, tmp_path / "tls", tmp_path / f"server{len(servers)}.log", *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.process.stop()


def test_api_answers_over_https_at_the_lan_address(https_server):
    server = https_server("--size", "320x240")

    response = httpx.get(f"{server.url}/api/streams", verify=server.trusting(), timeout=5)
    assert response.status_code == 200 and response.json()[0]["id"] == "cam0"
    assert response.url.scheme == "https"
    # The system's trust store does not know this certificate: the one above was trusted on purpose, not by accident.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/api/streams", timeout=5)
    # And the port speaks only TLS.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{server.address}:{server.process.port}/api/streams", timeout=5)


def test_video_arrives_over_wss_and_decodes(https_server):
    server = https_server("--size", "320x240", "--fps", "30")

    with connect(f"{server.ws_url}/ws/video/cam0", ssl=server.trusting(), max_size=None, open_timeout=10) as ws:
        client = VideoClient(ws)
        first = client.next()
        assert client.init is not None and (client.init["width"], client.init["height"]) == (320, 240)
        assert first.header.keyframe
        decoder = H264Decoder()
        seqs, decoded = [], 0
        for index in range(30):
            message = first if index == 0 else client.next()
            seqs.append(message.header.seq)
            decoded += len(decoder.decode(message.payload))
    assert decoded == 30
    assert seqs == sorted(seqs) and len(set(seqs)) == 30


def test_the_certificate_is_kept_across_restarts_and_its_fingerprint_logged(https_server):
    first = https_server("--size", "320x240")
    cert_pem = first.cert_path.read_bytes()
    key_pem = (first.tls_dir / "key.pem").read_bytes()
    first.process.stop()

    second = https_server("--size", "320x240")
    assert second.cert_path.read_bytes() == cert_pem  # the browser's exception or trust stays valid
    assert (second.tls_dir / "key.pem").read_bytes() == key_pem
    mark = tls.fingerprint(tls.load_pair(second.cert_path, second.tls_dir / "key.pem"))
    for server in (first, second):
        log = server.process.log()
        assert f"SHA-256 fingerprint {mark}" in log
        assert "PRIVATE KEY" not in log and key_pem.decode().splitlines()[1] not in log
        assert f"page at https://localhost:{server.process.port}/" in log
    assert "made a new self-signed certificate" in first.process.log()
    assert "made a new self-signed certificate" not in second.process.log()


def test_a_key_that_does_not_fit_the_certificate_stops_the_start(tmp_path):
    (tmp_path / "cert.pem").write_bytes(tls.make_self_signed(["a.example"], [])[0])
    (tmp_path / "key.pem").write_bytes(tls.make_self_signed(["b.example"], [])[1])
    command = [sys.executable, "-m", "vergence", "serve", "--port", str(free_port())]
    result = subprocess.run(
        [*command, "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert str(tmp_path / "cert.pem") in result.stderr and str(tmp_path / "key.pem") in result.stderr
    assert "Traceback" not in result.stderr


def test_a_certificate_without_its_key_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vergence", "serve", "--tls-cert", str(tmp_path / "cert.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "give both tls_cert and tls_key" in result.stderr and "Traceback" not in result.stderr


def test_ctl_commands_an_https_server_whose_certificate_it_is_given(https_server):
    server = https_server("--size", "320x240")

    def ctl(*options: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "vergence", "ctl", "--url", server.url, *options, "status"]
        env = {k: v for k, v in os.environ.items() if k not in ("VERGENCE_CAFILE", "SSL_CERT_FILE")}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    unknown = ctl()
    assert unknown.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in unknown.stderr and "--cafile" in unknown.stderr
    trusted = ctl("--cafile", str(server.cert_path))
    # Through TLS to the app, which answers a client of the LAN address without a token: a viewer, refused a command.
    assert trusted.returncode == 2 and "operator role needed" in trusted.stderr, trusted.stderr
    missing = ctl("--cafile", str(server.tls_dir / "nothing.pem"))
    assert missing.returncode == 2 and "cannot trust" in missing.stderr and "Traceback" not in missing.stderr
