"""Finding 12 (medium): the TLS private key and its directory were made private only when vergence created them; a key
(or tls_dir) opened to other accounts later was served on silently. Every start now checks them: permissions that let
others in are taken away, with a warning, where vergence owns the file; a key or directory another account owns stops
the start with a message naming it. A given key (`--tls-key`) may stay readable by its group (how Let's Encrypt keys
are shared with services), never by others."""

from __future__ import annotations

import ipaddress
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.accounts import NOBODY
from tests.conftest import STARTUP_TIMEOUT_S, free_port
from vergence import tls
from vergence.config import ServerSettings


@dataclass
class Start:
    """A `vergence serve` that either answers over https or exited."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Start]]:
    """Start `vergence serve` on 127.0.0.1; return once it answers over https (trusting only `cafile`) or has exited."""
    started: list[Start] = []

    def start(cafile: Path, *args: str, env: dict[str, str] | None = None) -> Start:
        port = free_port()
        log_path = tmp_path / f"serve-{len(started)}.log"
        command = [sys.executable, "-m", "vergence", "serve", "--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, "VERGENCE_STATE__PATH": str(log_path.with_suffix(".state.json")), **(env or {})}
        with log_path.open("wb") as log_file:
            process = subprocess.Popen([*command, *args], stdout=log_file, stderr=subprocess.STDOUT, env=env)
        run = Start(process, port, log_path)
        started.append(run)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not run.exited:
            assert time.monotonic() < deadline, f"neither served nor exited:\n{run.log()}"
            if cafile.exists():
                try:
                    context = ssl.create_default_context(cafile=cafile)
                    httpx.get(f"https://127.0.0.1:{port}/api/streams", verify=context, timeout=1)
                    return run
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)  # poll interval of a deadline loop, not a wait for an event
        return run

    yield start
    for run in started:
        if not run.exited:
            run.process.send_signal(signal.SIGINT)
            try:
                run.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()


def mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def kept_pair(tls_dir: Path) -> tuple[Path, Path]:
    """The pair `--tls auto` makes at its first start, made by the function that start calls."""
    return tls.certificate_files(ServerSettings(tls="auto", tls_dir=tls_dir, host="127.0.0.1"))  # type: ignore[return-value]


def auto_env(tls_dir: Path) -> dict[str, str]:
    return {"VERGENCE_SERVER__TLS": "auto", "VERGENCE_SERVER__TLS_DIR": str(tls_dir)}


def test_a_self_signed_key_and_directory_opened_to_others_are_made_private_again(serve, tmp_path):
    tls_dir = tmp_path / "tls"
    cert_path, key_path = kept_pair(tls_dir)
    certificate = cert_path.read_bytes()
    key_path.chmod(0o644)  # a backup tool, a careless chmod -R: every account may now read the key
    tls_dir.chmod(0o755)

    run = serve(cert_path, env=auto_env(tls_dir))
    assert not run.exited, run.log()
    assert (mode(key_path), mode(tls_dir)) == ("0600", "0700")
    log = run.log()
    assert f"the file {key_path} let others in (mode 0644); made it 0600" in log, log
    assert f"the directory {tls_dir} let others in (mode 0755); made it 0700" in log, log
    assert cert_path.read_bytes() == certificate  # the same pair is served, as before


@pytest.mark.parametrize("foreign", ["key", "directory"])
def test_a_self_signed_key_or_directory_another_account_owns_stops_the_start(serve, tmp_path, foreign):
    tls_dir = tmp_path / "tls"
    cert_path, key_path = kept_pair(tls_dir)
    place = key_path if foreign == "key" else tls_dir
    os.chown(place, NOBODY, NOBODY)  # that account can read the key, or put a pair of its own in

    run = serve(cert_path, env=auto_env(tls_dir))
    assert run.exited, f"served with a key another account owns:\n{run.log()}"
    assert run.process.returncode == 2
    log = run.log()
    assert f"{place} is owned by uid {NOBODY}, not by the service user" in log and "Traceback" not in log, log


def test_a_given_key_readable_by_others_is_made_private_or_refused(serve, tmp_path):
    given = tmp_path / "given"
    given.mkdir()
    cert_pem, key_pem = tls.make_self_signed(["localhost"], [ipaddress.ip_address("127.0.0.1")])
    cert_path, key_path = given / "fullchain.pem", given / "privkey.pem"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o664)
    args = ("--tls-cert", str(cert_path), "--tls-key", str(key_path))

    run = serve(cert_path, *args)
    assert not run.exited, run.log()
    assert mode(key_path) == "0640"  # its group may still read it; it may not change it, others get nothing
    assert f"the file {key_path} let others in (mode 0664); made it 0640" in run.log()

    os.chown(key_path, NOBODY, NOBODY)
    run = serve(cert_path, *args)
    assert run.exited and run.process.returncode == 2, run.log()
    assert f"server.tls_key: the file {key_path} is owned by uid {NOBODY}" in run.log()
