"""Password hashes (scrypt, the old sha256, plain), checked off the event loop and once per user while right; the
session cookie bound to its server; the server id kept under the state directory."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers

from tests.aio import run
from vergence import passwords
from vergence.auth import Authenticator, Refused
from vergence.config import AuthSettings, load_settings
from vergence.errors import ConfigError
from vergence.passwords import hash_password, parse_password
from vergence.sessions import Sessions, load_server_id

PASSPHRASE = "tin kettle orbit lantern 47"


def test_a_scrypt_hash_is_salted_and_checks_the_password_only() -> None:
    hashed = hash_password(PASSPHRASE, n=2**10)
    assert hashed.startswith("scrypt:1024:8:1:") and hashed != hash_password(PASSPHRASE, n=2**10)
    stored = parse_password(hashed)
    assert stored.slow and stored.matches(PASSPHRASE)
    assert not stored.matches(PASSPHRASE + " ") and not stored.matches(hashed)
    sha = parse_password("sha256:" + hashlib.sha256(PASSPHRASE.encode()).hexdigest().upper())
    assert not sha.slow and sha.matches(PASSPHRASE) and not sha.matches("x")
    assert parse_password(PASSPHRASE).matches(PASSPHRASE)


@pytest.mark.parametrize(
    "bad",
    [
        "scrypt:1024:8:1:c2FsdHNhbHQ=",  # no hash
        "scrypt:1000:8:1:c2FsdHNhbHQ=:" + "A" * 44,  # n not a power of two
        "scrypt:1048576:64:1:c2FsdHNhbHQ=:" + "A" * 44,  # 8 GiB per check
        "scrypt:1024:8:1:!!!:" + "A" * 44,
        "sha256:1234",
    ],
)
def test_a_malformed_hash_is_a_config_error_that_shows_no_secret(
    bad: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VERGENCE_AUTH__USERS", f'[{{"name": "alice", "password": "{bad}"}}]')
    with pytest.raises(ConfigError, match="auth.users") as error:
        load_settings()
    assert bad not in str(error.value)


def _basic(user: str, password: str) -> Headers:
    return Headers({"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})


def _auth(password: str, **settings: Any) -> Authenticator:
    users = [{"name": "alice", "password": password, "role": "viewer"}]
    return Authenticator(AuthSettings.model_validate({"users": users, **settings}), server_id=lambda: b"id")


def test_scrypt_runs_off_the_event_loop_and_once_per_user_while_right(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = _auth(hash_password(PASSPHRASE, n=2**10))
    threads: list[str] = []
    real = passwords._scrypt

    def counting(*args: Any) -> bytes:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(passwords, "_scrypt", counting)
    scope = {"type": "http", "client": ("192.0.2.7", 5000)}

    async def sign_in(times: int, password: str = PASSPHRASE) -> None:
        for _ in range(times):
            await auth.identify(scope, _basic("alice", password))

    run(sign_in(5))
    assert len(threads) == 1 and threads[0].startswith("vergence-password")
    with pytest.raises(Refused):
        run(sign_in(1, "wrong password"))
    assert len(threads) == 2  # a wrong password is computed, never remembered
    with pytest.raises(Refused):
        run(_unknown(auth, scope))
    assert len(threads) == 3  # an unknown name costs a check too: its refusal is as slow as a wrong password's


async def _unknown(auth: Authenticator, scope: dict[str, Any]) -> None:
    await auth.identify(scope, _basic("mallory", PASSPHRASE))


def test_the_event_loop_runs_on_while_a_password_is_checked() -> None:
    auth = _auth(hash_password(PASSPHRASE, n=2**16))  # ~0.25 s of a core
    scope = {"type": "http", "client": ("192.0.2.7", 5000)}

    async def scenario() -> int:
        ticks = 0
        check = asyncio.ensure_future(auth.identify(scope, _basic("alice", PASSPHRASE)))
        while not check.done():
            ticks += 1
            await asyncio.sleep(0)  # yields to the loop: it counts how often the loop came round
        await check
        return ticks

    assert run(scenario()) > 10


def test_a_cookie_is_taken_only_by_the_server_and_port_that_made_it() -> None:
    credentials = ["the same token on every robot"]
    robot_a, robot_b = Sessions(credentials, 30, lambda: b"a" * 32), Sessions(credentials, 30, lambda: b"b" * 32)
    set_cookie = robot_a.cookie("pilot", secure=False, name="vergence_session_8000")
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    assert robot_a.holder(value, "vergence_session_8000") == "pilot"
    assert Sessions(credentials, 30, lambda: b"a" * 32).holder(value, "vergence_session_8000") == "pilot"  # restart
    assert robot_a.holder(value, "vergence_session_8001") is None  # another port of the same machine
    assert robot_b.holder(value, "vergence_session_8000") is None  # another machine, same config and port


def test_the_server_id_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "server-id"
    first = load_server_id(path)
    assert len(first) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_server_id(path) == first
    assert load_server_id(tmp_path / "other" / "server-id") != first
    (tmp_path / "a-file").write_text("")
    assert len(load_server_id(tmp_path / "a-file" / "server-id")) == 32  # cannot keep one: a per-process id
