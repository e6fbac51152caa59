"""The passwords of `[[auth.users]]`: a salted scrypt hash (`vergence hash-password` makes one), the old unsalted
SHA-256, or the password itself; each checked in constant time.

The scrypt form keeps everything needed to check it in one string, `scrypt:<n>:<r>:<p>:<salt>:<hash>`: the cost
parameters (CPU/memory cost n, a power of two; block size r; parallelism p), then the 16-byte salt and the 32-byte
derived key in standard base64. n = 2^15, r = 8 takes 32 MiB and ~0.1 s of a laptop core (several times that on a
Raspberry Pi), so a stolen config costs a guesser that much per guess and per user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from typing import Literal

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_SCRYPT_MEMORY_BYTES = 256 * 2**20  # a config cannot make each check take more than this
MIN_PASSWORD_CHARS = 8


@dataclass(frozen=True)
class StoredPassword:
    """A configured password, parsed: how to check what a user types against it."""

    kind: Literal["scrypt", "sha256", "plain"]
    secret: bytes  # scrypt's derived key, the SHA-256 digest, or the password's UTF-8
    salt: bytes = b""
    n: int = 0
    r: int = 0
    p: int = 0

    @property
    def slow(self) -> bool:
        """True for scrypt: check it off the event loop."""
        return self.kind == "scrypt"

    def matches(self, given: str) -> bool:
        """Whether `given` is this password (constant time in what is compared)."""
        if self.kind == "scrypt":
            key = _scrypt(given, self.salt, self.n, self.r, self.p, len(self.secret))
            return hmac.compare_digest(key, self.secret)
        if self.kind == "sha256":
            return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self.secret)
        return hmac.compare_digest(given.encode(), self.secret)


def parse_password(configured: str) -> StoredPassword:
    """The stored form of a configured password; ValueError (without the value) for a malformed hash."""
    if configured.startswith("scrypt:"):
        return _parse_scrypt(configured)
    if configured.startswith("sha256:"):
        try:
            digest = bytes.fromhex(configured[7:])
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise ValueError("a sha256: password must be sha256:<64 hex digits>")
        return StoredPassword("sha256", digest)
    return StoredPassword("plain", configured.encode())


def _parse_scrypt(configured: str) -> StoredPassword:
    parts = configured.split(":")
    try:
        if len(parts) != 6:
            raise ValueError
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("a scrypt: password must be scrypt:<n>:<r>:<p>:<salt base64>:<hash base64>") from None
    if n < 2**10 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise ValueError(f"scrypt: n = {n} must be a power of two ≥ 1024, r = {r} within 1 … 64, p = {p} within 1 … 16")
    if _scrypt_memory(n, r, p) > MAX_SCRYPT_MEMORY_BYTES:
        raise ValueError(f"scrypt: n × r = {n * r} needs more than {MAX_SCRYPT_MEMORY_BYTES >> 20} MiB per check")
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        raise ValueError("scrypt: the salt must have 8 or more bytes and the hash 16 … 64")
    return StoredPassword("scrypt", key, salt, n, r, p)


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """`scrypt:<n>:<r>:<p>:<salt>:<hash>` of `password` with a new random salt, for `[[auth.users]] password`."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, n, r, p, KEY_BYTES)
    return f"scrypt:{n}:{r}:{p}:{base64.b64encode(salt).decode()}:{base64.b64encode(key).decode()}"


def unguessable_like(stored: StoredPassword) -> StoredPassword:
    """A password of the same kind and cost that nobody knows: checked for an unknown user name, so that the time a
    refusal takes does not tell which names exist."""
    return replace(stored, secret=secrets.token_bytes(len(stored.secret)), salt=secrets.token_bytes(len(stored.salt)))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_scrypt_memory(n, r, p), dklen=length)


def _scrypt_memory(n: int, r: int, p: int) -> int:
    # OpenSSL needs 128·r·(n + p) bytes and a little more; hashlib refuses above its 32 MiB default unless told.
    return 128 * r * (n + p + 2) + 2**20
