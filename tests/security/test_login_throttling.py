"""Finding 8 (low): wrong credentials were checked as fast as they came (1,868 guesses/s) and each was logged at INFO;
users' passwords were unsalted SHA-256. Now a client that keeps failing waits longer and longer (429, Retry-After)
while everyone else signs in as before, the log keeps a few lines and a count, and passwords can be salted scrypt
hashes made by `vergence hash-password` (the old sha256: form still works, with a warning at start)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import httpx

TOKEN = "pilot-secret-0123456789abcdef"
PASSPHRASE = "tin kettle orbit lantern 47"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer wrong-guess-0123456789abcdef"}
WAIT_DEADLINE_S = 10.0


def scrypt_hash(password: str, n: int = 2**14) -> str:
    """The documented `scrypt:<n>:<r>:<p>:<salt>:<hash>` form, made here without vergence's code."""
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=8, p=1, dklen=32)
    return f"scrypt:{n}:8:1:{base64.b64encode(salt).decode()}:{base64.b64encode(key).decode()}"


def auth_env(password: str, **extra: str) -> dict[str, str]:
    return {
        "VERGENCE_AUTH__TOKENS": json.dumps([{"name": "pilot", "token": TOKEN, "role": "operator"}]),
        "VERGENCE_AUTH__USERS": json.dumps([{"name": "alice", "password": password, "role": "viewer"}]),
        **extra,
    }


def status(
    server, headers: dict[str, str], auth: tuple[str, str] | None = None, source: str = "127.0.0.1"
) -> httpx.Response:
    """GET /api/session from the client address `source` (any 127.x.y.z reaches a server on 127.0.0.1)."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as client:
        return client.get(f"{server.url}/api/session", headers=headers, auth=auth)


def wait_until_admitted(server, headers: dict[str, str], source: str) -> tuple[httpx.Response, int]:
    """Poll (with a deadline) until the client's credentials are checked again: that answer, and how many 429s before."""
    deadline, refused = time.monotonic() + WAIT_DEADLINE_S, 0
    while time.monotonic() < deadline:
        response = status(server, headers, source=source)
        if response.status_code != 429:
            return response, refused
        refused += 1
        time.sleep(0.05)  # poll interval of a deadline loop, not a wait for an event
    raise AssertionError(f"still 429 after {WAIT_DEADLINE_S} s")


def test_a_guessing_client_waits_longer_and_longer_while_others_sign_in(vergence_server):
    server = vergence_server("--size", "320x240", env=auth_env(scrypt_hash(PASSPHRASE)))
    guesser, other = "127.0.0.2", "127.0.0.3"
    for _ in range(5):
        assert status(server, WRONG, source=guesser).status_code == 401
    refused = status(server, RIGHT, source=guesser)  # even the right token: its answer would end the guessing
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "1"
    assert status(server, {}, auth=("alice", PASSPHRASE), source=guesser).status_code == 429
    assert status(server, RIGHT, source=other).json()["name"] == "pilot"  # everyone else signs in as before
    assert status(server, {}, auth=("alice", PASSPHRASE), source=other).json()["name"] == "alice"

    assert wait_until_admitted(server, WRONG, guesser)[0].status_code == 401  # the sixth failure …
    assert status(server, RIGHT, source=guesser).headers["retry-after"] == "2"  # … doubles the wait
    assert wait_until_admitted(server, RIGHT, guesser)[0].json()["name"] == "pilot"
    for _ in range(5):  # signed in: the count starts again
        assert status(server, WRONG, source=guesser).status_code == 401


def test_forwarded_headers_from_an_untrusted_client_do_not_make_it_a_new_one(vergence_server):
    server = vergence_server("--size", "320x240", env=auth_env(PASSPHRASE))  # no trusted proxies
    for n in range(5):
        assert status(server, {**WRONG, "X-Forwarded-For": f"198.51.100.{n}"}).status_code == 401
    assert status(server, {**RIGHT, "X-Forwarded-For": "198.51.100.99"}).status_code == 429
    assert status(server, {"Authorization": "Basic !!!"}).status_code == 429  # any credentials, also malformed ones


def test_a_flood_of_wrong_credentials_leaves_a_few_log_lines_and_a_count(vergence_server):
    server = vergence_server("--size", "320x240", env=auth_env(scrypt_hash(PASSPHRASE)))
    guesser = "127.0.0.2"
    codes = [
        status(server, WRONG, source=guesser).status_code
        if n % 2
        else status(server, {}, ("alice", "no"), source=guesser).status_code
        for n in range(40)
    ]
    assert codes.count(429) >= 30, codes
    signed_in, polls = wait_until_admitted(server, RIGHT, guesser)
    assert signed_in.status_code == 200  # signing in says what was held back
    deadline = time.monotonic() + WAIT_DEADLINE_S
    while not (
        summary := re.search(r"(\d+) more failed or throttled logins from 127\.0\.0\.2 suppressed", server.log())
    ):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)  # poll interval of a deadline loop: the server writes its log as it goes
    lines = [line for line in server.log().splitlines() if re.search("unknown token|wrong user name or password", line)]
    assert len(lines) <= 5, "\n".join(lines)  # before: one line per guess
    assert len(lines) + int(summary[1]) == 40 + polls  # every attempt is accounted for
    assert PASSPHRASE not in server.log() and TOKEN not in server.log()


def test_a_scrypt_password_signs_in_and_its_hash_does_not(vergence_server):
    hashed = scrypt_hash(PASSPHRASE)
    server = vergence_server("--size", "320x240", env=auth_env(hashed))
    for _ in range(3):  # a browser sends basic auth with every request
        assert status(server, {}, auth=("alice", PASSPHRASE)).json() == {
            "name": "alice",
            "role": "viewer",
            "commands": False,
        }
    assert status(server, {}, auth=("alice", hashed)).status_code == 401  # a leaked config is no password
    assert status(server, {}, auth=("alice", PASSPHRASE.upper())).status_code == 401


def test_hash_password_makes_a_salted_hash_the_server_takes(vergence_server):
    def hash_password(password: str) -> str:
        command = [sys.executable, "-m", "vergence", "hash-password"]
        made = subprocess.run(command, input=password + "\n", capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    first, second = hash_password(PASSPHRASE), hash_password(PASSPHRASE)
    assert first.startswith("scrypt:") and PASSPHRASE not in first
    assert first != second  # salted: the same password never gives the same hash
    server = vergence_server("--size", "320x240", env=auth_env(first))
    assert status(server, {}, auth=("alice", PASSPHRASE)).status_code == 200
    short = subprocess.run(
        [sys.executable, "-m", "vergence", "hash-password"], input="short\n", capture_output=True, text=True, timeout=60
    )
    assert short.returncode == 2 and "8 characters" in short.stderr


def test_an_unsalted_sha256_password_still_works_but_is_warned_about_at_start(vergence_server):
    server = vergence_server(
        "--size", "320x240", env=auth_env("sha256:" + hashlib.sha256(PASSPHRASE.encode()).hexdigest())
    )
    log = server.log()  # the server answers: its start is logged
    assert re.search(r"WARNING .*alice.*unsalted.*vergence hash-password", log), log
    assert status(server, {}, auth=("alice", PASSPHRASE)).status_code == 200
