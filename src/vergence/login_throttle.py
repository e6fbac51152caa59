"""Backoff for clients whose credentials fail, and a log of failed logins that a flood of guesses cannot fill.

A client (an address; an IPv6 client by its /64, which one machine usually holds whole) has `free_failures` wrong
credentials for nothing; then each further one makes it wait `delay_s`, doubling up to `max_delay_s`, before its next
attempt is even checked. Credentials that pass reset it. No I/O and no asyncio: the clock is given.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_CLIENTS = 10_000  # clients remembered at once; beyond that the longest quiet is forgotten
FORGET_AFTER_DELAYS = 10  # a client quiet for 10 × max_delay_s is forgotten
LOGGED_FAILURES = 5  # failures logged one by one per client; after that, a count every log_interval_s


class Throttled(Exception):
    """This client must wait before its credentials are checked again."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins from this address: try again in {math.ceil(retry_after_s)} s")
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class _Client:
    address: str
    seen: float  # the last attempt
    failures: int = 0
    checking: int = 0  # attempts being checked now (a slow password hash)
    blocked_until: float = 0.0
    logged: int = 0  # failures logged one by one
    unlogged: int = 0  # failed and throttled attempts since the last line about this client
    logged_at: float = 0.0


class Attempt:
    """One credential check of one client: say how it ended, `failed(reason)` or `succeeded()`."""

    def __init__(self, throttle: LoginThrottle, client: _Client) -> None:
        self._throttle = throttle
        self._client: _Client | None = client

    def failed(self, reason: str) -> None:
        if self._client is not None:
            self._throttle._failed(self._client, reason)
            self._client = None

    def succeeded(self) -> None:
        if self._client is not None:
            self._throttle._succeeded(self._client)
            self._client = None

    def _abandon(self) -> None:
        if self._client is not None:
            self._client.checking -= 1
            self._throttle._forget_if_clean(self._client)
            self._client = None


class LoginThrottle:
    """Per-client failed-login backoff and log; memory bounded by `MAX_CLIENTS`."""

    def __init__(
        self,
        free_failures: int,
        delay_s: float,
        max_delay_s: float,
        log_interval_s: float,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.delay_s = delay_s
        self.max_delay_s = max_delay_s
        self.log_interval_s = log_interval_s
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # least recently seen first

    def __len__(self) -> int:
        return len(self._clients)

    @contextmanager
    def attempt(self, address: str) -> Iterator[Attempt]:
        """Check credentials of `address` inside this block; raises Throttled when it must wait first.

        Past its free failures a client has one check at a time: concurrent guesses (while a slow hash is computed)
        would otherwise all pass before the first failure counts.
        """
        now = self._clock()
        client = self._touch(address, now)
        wait = client.blocked_until - now
        if wait <= 0 and client.checking and client.failures + client.checking >= self.free_failures:
            wait = max(self.delay_s, self._delay(client.failures + client.checking))
        if wait > 0:
            self._note(client, now, None)
            raise Throttled(wait)
        client.checking += 1
        attempt = Attempt(self, client)
        try:
            yield attempt
        finally:
            attempt._abandon()

    def _failed(self, client: _Client, reason: str) -> None:
        now = self._clock()
        client.checking -= 1
        client.failures += 1
        delay = self._delay(client.failures)
        client.blocked_until = max(client.blocked_until, now + delay)
        self._note(client, now, f"{reason}" + (f"; its next attempt waits {delay:g} s" if delay else ""))

    def _succeeded(self, client: _Client) -> None:
        client.checking -= 1
        client.failures, client.blocked_until, client.logged = 0, 0.0, 0
        self._summarize(client, self._clock())
        self._forget_if_clean(client)

    def _forget_if_clean(self, client: _Client) -> None:
        """Drop a client with nothing against it: one that signs in costs no memory after its request."""
        if not (client.failures or client.checking or client.unlogged) and self._clients.get(client.address) is client:
            del self._clients[client.address]

    def _delay(self, failures: int) -> float:
        """The wait after `failures` failures in a row."""
        if failures < self.free_failures:
            return 0.0
        return min(self.max_delay_s, self.delay_s * 2.0 ** min(failures - self.free_failures, 64))

    def _touch(self, address: str, now: float) -> _Client:
        key = client_key(address)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _Client(key, now)
        else:
            client.seen = now
            self._clients.move_to_end(key)
        forget_before = now - FORGET_AFTER_DELAYS * self.max_delay_s
        while self._clients:
            oldest = next(iter(self._clients.values()))
            if oldest is client or (len(self._clients) <= self.max_clients and oldest.seen >= forget_before):
                break
            del self._clients[oldest.address]
            self._summarize(oldest, now)
        return client

    def _note(self, client: _Client, now: float, failure: str | None) -> None:
        """Log a failure while few have been, else count it (and a throttled attempt) for a line every interval."""
        if failure is not None and client.logged < LOGGED_FAILURES:
            client.logged += 1
            log.info("failed login from %s: %s", client.address, failure)
            if client.logged == LOGGED_FAILURES:
                log.info(
                    "failed logins from %s: further ones are counted, one line every %g s",
                    client.address,
                    self.log_interval_s,
                )
            client.logged_at = now
            return
        client.unlogged += 1
        if now - client.logged_at >= self.log_interval_s:
            self._summarize(client, now)

    def _summarize(self, client: _Client, now: float) -> None:
        if client.unlogged:
            log.warning(
                "%d more failed or throttled logins from %s suppressed (%d failed in a row)",
                client.unlogged,
                client.address,
                client.failures,
            )
            client.unlogged = 0
        client.logged_at = now


def client_key(address: str) -> str:
    """Who the throttle counts: an IPv4 address, an IPv6 /64 network, or the text given (no address: one client)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
