"""The login throttle with a fake clock: free failures, doubling waits up to a cap, reset on success, one check at a
time past the free ones, a bounded table of clients, and a log of a few lines and counts."""

from __future__ import annotations

import logging
import re

import pytest
from starlette.datastructures import Headers

from tests.aio import run
from vergence.auth import Authenticator, Refused
from vergence.config import AuthSettings
from vergence.login_throttle import LoginThrottle, Throttled, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock, **overrides: float) -> LoginThrottle:
    settings = {"free_failures": 3, "delay_s": 1.0, "max_delay_s": 8.0, "log_interval_s": 60.0, **overrides}
    return LoginThrottle(**settings, clock=clock)  # type: ignore[arg-type]


def _fail(throttle: LoginThrottle, address: str = "192.0.2.7") -> None:
    with throttle.attempt(address) as attempt:
        attempt.failed("unknown token")


def _wait(throttle: LoginThrottle, address: str = "192.0.2.7") -> float:
    """How long `address` must wait now (0: it may try)."""
    try:
        with throttle.attempt(address):
            return 0.0  # leaving without an outcome counts nothing
    except Throttled as err:
        return err.retry_after_s


def test_waits_double_up_to_the_cap_and_a_success_resets_them() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    waits = []
    for _ in range(8):
        _fail(throttle)
        waits.append(_wait(throttle))
        clock.now += waits[-1]
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8]
    assert _wait(throttle, "192.0.2.8") == 0  # others are not held up
    with throttle.attempt("192.0.2.7") as attempt:
        attempt.succeeded()
    assert len(throttle) == 0  # forgotten: the next failures are free again
    for _ in range(2):
        _fail(throttle)
    assert _wait(throttle) == 0


def test_past_the_free_failures_one_check_at_a_time() -> None:
    clock = Clock()
    throttle = _throttle(clock, free_failures=2)
    _fail(throttle)
    with throttle.attempt("192.0.2.7"):  # a slow check in flight: the last free one
        with pytest.raises(Throttled):
            with throttle.attempt("192.0.2.7"):
                pass
        with throttle.attempt("192.0.2.8"):  # another client is not held up
            pass
    assert _wait(throttle) == 0  # the check ended without an outcome: nothing counted


def test_the_table_of_clients_is_bounded_and_forgets_quiet_ones() -> None:
    clock = Clock()
    throttle = _throttle(clock, max_clients=100)
    for n in range(1000):
        _fail(throttle, f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100
    clock.now += 10 * 8.0 + 1  # ten longest waits without an attempt
    _fail(throttle, "192.0.2.7")
    assert len(throttle) == 1


def test_clients_are_addresses_and_ipv6_networks() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("") == ""


def test_a_flood_logs_a_few_lines_then_a_count_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttle = _throttle(clock, free_failures=20_000, log_interval_s=60.0)
    caplog.set_level(logging.INFO, logger="vergence.login_throttle")
    for _ in range(10_000):  # 10,000 guesses in 200 s
        _fail(throttle)
        clock.now += 0.02
    with throttle.attempt("192.0.2.7") as attempt:
        attempt.succeeded()  # what is still counted is said at once
    messages = [record.getMessage() for record in caplog.records]
    assert len([message for message in messages if message.startswith("failed login from 192.0.2.7")]) == 5
    counts = [re.match(r"(\d+) more failed or throttled logins from 192.0.2.7 suppressed", m) for m in messages[6:]]
    assert len(counts) == 4 and all(counts)  # at 60, 120, 180 s, and at the sign-in
    assert sum(int(count[1]) for count in counts if count) == 10_000 - 5


def test_behind_a_trusted_proxy_the_client_it_names_is_held_up_not_the_proxy() -> None:
    token = "pilot-secret-0123456789abcdef"
    settings = {"tokens": [{"name": "pilot", "token": token, "role": "operator"}], "trusted_proxies": ["127.0.0.1"]}
    auth = Authenticator(AuthSettings.model_validate(settings), server_id=lambda: b"id")

    def identify(peer: str, forwarded_for: str, presented: str) -> int:
        scope = {"type": "http", "client": (peer, 5000), "query_string": b""}
        headers = Headers({"X-Forwarded-For": forwarded_for, "Authorization": f"Bearer {presented}"})
        try:
            run(auth.identify(scope, headers))
        except Refused as err:
            return err.status
        return 200

    assert [identify("127.0.0.1", "192.0.2.7", "wrong-guess-0123456789") for _ in range(5)] == [401] * 5
    assert identify("127.0.0.1", "192.0.2.7", token) == 429
    assert identify("127.0.0.1", "192.0.2.8", token) == 200  # another client through the same proxy
    assert identify("127.0.0.1", "192.0.2.7, 127.0.0.1", token) == 429  # through a second trusted hop: the same one
    # From an untrusted peer the header means nothing: the peer is the client, whatever it claims.
    assert [identify("10.0.0.9", f"192.0.2.{n}", "wrong-guess-0123456789") for n in range(5)] == [401] * 5
    assert identify("10.0.0.9", "192.0.2.99", token) == 429
