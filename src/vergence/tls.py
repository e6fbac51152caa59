"""HTTPS: a given PEM certificate and key, or (tls = auto) a self-signed certificate made once and kept in tls_dir.

Browsers give WebCodecs only to secure contexts: https, or http from localhost. A page opened from another machine on
the LAN over plain http has no VideoDecoder, so `tls = auto` makes a certificate naming every address of this machine.

At every start the private key (and tls_dir) must be the service user's alone: permissions that let others in are taken
away, with a warning, where vergence owns the file; elsewhere the start is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vergence.config import ServerSettings
from vergence.errors import ConfigError
from vergence.files import write_atomically

log = logging.getLogger(__name__)

CERT_NAME, KEY_NAME = "cert.pem", "key.pem"
VALID_DAYS = 825  # the longest validity Apple devices accept for a server certificate of a user-trusted root
RENEW_BEFORE_DAYS = 30
BACKDATE = dt.timedelta(hours=1)  # a client whose clock is a little behind still accepts a fresh certificate
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
IP_COMMAND_TIMEOUT_S = 2.0
SIOCGIFADDR = 0x8915  # <linux/sockios.h>: the IPv4 address of one interface
# Permission bits the private key may not have. The self-signed key and tls_dir are vergence's own: nobody else may do
# anything with them. A given key may be read by its group (a shared group such as `ssl-cert` is how Let's Encrypt keys
# are handed to services), never changed by it, and others get nothing.
OWN_FORBIDDEN_BITS = 0o077
GIVEN_KEY_FORBIDDEN_BITS = stat.S_IWGRP | stat.S_IXGRP | stat.S_IRWXO
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def certificate_files(settings: ServerSettings) -> tuple[Path, Path] | None:
    """Return the (certificate, key) files to serve https with, or None when TLS is off; raise ConfigError."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        cert_path, key_path = settings.tls_cert.expanduser(), settings.tls_key.expanduser()
        keep_private(key_path, "server.tls_key", GIVEN_KEY_FORBIDDEN_BITS, root_may_own=True)
        certificate = load_pair(cert_path, key_path)
        if certificate.not_valid_after_utc < dt.datetime.now(dt.UTC):
            log.warning("TLS certificate %s expired on %s: browsers will refuse it", cert_path, _day(certificate))
        _log_certificate("given", cert_path, certificate)
        return cert_path, key_path
    if settings.tls != "auto":
        return None
    tls_dir = settings.tls_dir.expanduser()
    try:
        return _self_signed_files(tls_dir, settings.host)
    except OSError as err:
        raise ConfigError(f"server.tls_dir: cannot keep a certificate in {tls_dir}: {err}") from err


def load_pair(cert_path: Path, key_path: Path) -> x509.Certificate:
    """Load a PEM certificate (chain) and its private key; raise ConfigError naming the file unless the key is the
    certificate's."""
    certificate = _load_certificate(cert_path)
    key = _load_key(key_path)
    if _spki(certificate.public_key()) != _spki(key.public_key()):
        raise ConfigError(
            f"server.tls_key {key_path} does not belong to server.tls_cert {cert_path}: their public keys differ"
        )
    return certificate


def spki_sha256(certificate: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's SubjectPublicKeyInfo (what HPKP-style pins and Chromium's SPKI lists hold)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(_spki(certificate.public_key()))
    return digest.finalize()


def fingerprint(certificate: x509.Certificate) -> str:
    """The certificate's SHA-256 fingerprint as browsers show it: 32 hex bytes separated by colons."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def _self_signed_files(tls_dir: Path, host: str) -> tuple[Path, Path]:
    cert_path, key_path = tls_dir / CERT_NAME, tls_dir / KEY_NAME
    bind_name = _general_name(host) if host not in WILDCARD_HOSTS else None
    if not tls_dir.is_dir():
        tls_dir.mkdir(parents=True, exist_ok=True)
        tls_dir.chmod(0o700)
    # Whoever can enter or write the directory could read the key or swap in a pair of their own.
    keep_private(tls_dir, "server.tls_dir", OWN_FORBIDDEN_BITS)
    with _locked(tls_dir / ".lock"):  # two servers starting at once must not each write half of a pair
        keep_private(key_path, "server.tls_dir", OWN_FORBIDDEN_BITS)
        reason = _why_renew(cert_path, key_path, bind_name)
        if reason is None:
            certificate = load_pair(cert_path, key_path)
            _log_certificate("self-signed", cert_path, certificate)
            return cert_path, key_path
        names, addresses = _host_names(), interface_addresses()
        if isinstance(bind_name, x509.IPAddress):
            addresses.add(ipaddress.ip_address(str(bind_name.value)))
        elif isinstance(bind_name, x509.DNSName) and bind_name.value not in names:
            names.append(bind_name.value)
        cert_pem, key_pem = make_self_signed(names, sorted(addresses, key=_address_order))
        # The key first: a crash between the two renames leaves a pair that does not match, made anew next start.
        write_atomically(key_path, key_pem, 0o600)
        write_atomically(cert_path, cert_pem, 0o644)
    certificate = x509.load_pem_x509_certificate(cert_pem)
    log.info("TLS: made a new self-signed certificate (%s)", reason)
    _log_certificate("self-signed", cert_path, certificate)
    return cert_path, key_path


def keep_private(path: Path, key: str, forbidden: int, root_may_own: bool = False) -> None:
    """Make sure `path` (when it exists) has none of the `forbidden` permission bits: take them away, with a warning,
    when the service user owns it; raise ConfigError naming `key` when it cannot (another owner), or when another
    account than the service user (or root, if `root_may_own`) owns it and so could open it up again."""
    try:
        info = path.stat()  # a symbolic link is followed, as reading it will (Let's Encrypt's live/ holds links)
    except FileNotFoundError:
        return  # made next, or reported missing by the loading
    except OSError as err:
        raise ConfigError(f"{key}: cannot check {path}: {err.strerror}") from err
    mode, user = stat.S_IMODE(info.st_mode), os.geteuid()
    kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
    if info.st_uid != user and not (root_may_own and info.st_uid == 0):
        owners = "the service user or root" if root_may_own else "the service user"
        raise ConfigError(
            f"{key}: the {kind} {path} is owned by uid {info.st_uid}, not by {owners} (uid {user}): that account can "
            f"read the private key or change it; give it to uid {user} (chown) or make a new one"
        )
    if not mode & forbidden:
        return
    if info.st_uid != user:
        raise ConfigError(
            f"{key}: the {kind} {path} lets others in (mode {mode:04o}) and vergence cannot change that (uid "
            f"{info.st_uid} owns it): as its owner, run chmod {mode & ~forbidden:04o} {path}"
        )
    try:
        os.chmod(path, mode & ~forbidden)
    except OSError as err:
        raise ConfigError(f"{key}: the {kind} {path} lets others in (mode {mode:04o}): {err.strerror}") from err
    log.warning(
        "TLS: the %s %s let others in (mode %04o); made it %04o. The private key may have been read meanwhile: if that "
        "matters, delete it (and its certificate) to have a new pair made, or get a new one",
        kind,
        path,
        mode,
        mode & ~forbidden,
    )


def make_self_signed(
    names: list[str], addresses: list[IPAddress], now: dt.datetime | None = None
) -> tuple[bytes, bytes]:
    """Make an ECDSA P-256 key and a self-signed server certificate for these names and addresses; return both PEM."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = next((name for name in names if name != "localhost"), names[0])
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vergence self-signed"),
        ]
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alt_names += [x509.IPAddress(address) for address in addresses]
    usage = x509.KeyUsage(
        digital_signature=True,  # ECDHE key exchange signed by this key: the only use a server's EC key has
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now - BACKDATE + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        # Not a CA: Firefox refuses a CA certificate as a server's own (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY).
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def interface_addresses() -> set[IPAddress]:
    """Every address of this machine: loopback, its interfaces' and its host name's; IPv6 link-local ones are left out
    (a browser cannot open a URL with a zone index)."""
    found: set[str] = {"127.0.0.1", "::1"}
    from_ip = _ip_command_addresses()
    found |= from_ip if from_ip is not None else _ioctl_ipv4_addresses()
    found |= _proc_ipv6_addresses()
    with contextlib.suppress(OSError):
        found |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    addresses: set[IPAddress] = set()
    for text in found:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if not (address.version == 6 and address.is_link_local):
                addresses.add(address)
    return addresses


def _ip_command_addresses() -> set[str] | None:
    """Addresses from `ip -j addr` (iproute2), or None when it is missing or cannot say (busybox has no -j)."""
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if Path(p).exists()), None)
    if ip is None:
        return None
    try:
        result = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, timeout=IP_COMMAND_TIMEOUT_S)
        links = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not isinstance(links, list):
        return None
    return {str(info["local"]) for link in links for info in link.get("addr_info", []) if "local" in info}


def _ioctl_ipv4_addresses() -> set[str]:
    """The IPv4 address of each interface through SIOCGIFADDR (one per interface; without iproute2)."""
    found = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # this interface has no IPv4 address
                continue
            found.add(socket.inet_ntoa(reply[20:24]))  # struct ifreq: 16 bytes of name, then a sockaddr_in
    return found


def _proc_ipv6_addresses() -> set[str]:
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:  # no IPv6 in this kernel
        return set()
    return {str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))) for line in lines if line.strip()}


def _host_names() -> list[str]:
    """localhost, the host name and its mDNS name (`name.local`), as far as they are valid DNS names."""
    hostname = socket.gethostname().lower().rstrip(".")
    short = hostname.split(".", 1)[0]
    names = []
    for name in ("localhost", hostname, short, f"{short}.local"):
        if _DNS_NAME.match(name) and name not in names:
            names.append(name)
    return names


def _general_name(host: str) -> x509.GeneralName | None:
    """The subject alternative name a certificate needs for clients that use the bind address `host`."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        name = host.lower().rstrip(".")
        return x509.DNSName(name) if _DNS_NAME.match(name) else None


def _why_renew(cert_path: Path, key_path: Path, bind_name: x509.GeneralName | None) -> str | None:
    """Why the kept certificate must be made anew, or None to keep it."""
    if not cert_path.exists() and not key_path.exists():
        return "there was none yet"
    try:
        certificate = load_pair(cert_path, key_path)
    except ConfigError as err:
        return f"the kept one cannot be used: {err}"
    left = certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if left < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return f"the kept one expires on {_day(certificate)}"
    if bind_name is not None and bind_name not in _alt_names(certificate):
        return f"the kept one does not name the bind address {bind_name.value}"
    return None


def _alt_names(certificate: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _load_certificate(path: Path) -> x509.Certificate:
    data = _read(path, "server.tls_cert")
    try:
        return x509.load_pem_x509_certificates(data)[0]  # the server's own first, then its chain
    except ValueError as err:
        raise ConfigError(f"server.tls_cert: {path} holds no PEM certificate ({err})") from err


def _load_key(path: Path) -> PrivateKeyTypes:
    data = _read(path, "server.tls_key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:  # TypeError: the key is encrypted, and the server could not ask for it
        raise ConfigError(f"server.tls_key: {path} is not an unencrypted PEM private key ({err})") from err


def _read(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(f"{key}: {path} does not exist") from err
    except OSError as err:
        raise ConfigError(f"{key}: cannot read {path}: {err.strerror}") from err


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        yield  # the lock goes with the file's closing


def _log_certificate(kind: str, path: Path, certificate: x509.Certificate) -> None:
    names = [str(name.value) for name in _alt_names(certificate)]
    log.info(
        "TLS: %s certificate %s, SHA-256 fingerprint %s, valid until %s, for %s",
        kind,
        path,
        fingerprint(certificate),
        _day(certificate),
        ", ".join(names) or "no alternative names",
    )


def _day(certificate: x509.Certificate) -> str:
    return certificate.not_valid_after_utc.date().isoformat()


def _address_order(address: IPAddress) -> tuple[int, bytes]:
    return address.version, address.packed
