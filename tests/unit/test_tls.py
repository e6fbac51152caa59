"""TLS certificates: tls = auto makes one naming this machine and keeps it; a given pair is checked before serving."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.netns import private_address
from vergence import tls
from vergence.config import ServerSettings, load_settings
from vergence.errors import ConfigError


def auto(tls_dir: Path, host: str = "0.0.0.0") -> ServerSettings:
    return ServerSettings(tls="auto", tls_dir=tls_dir, host=host)


def read_pair(tls_dir: Path) -> tuple[bytes, bytes]:
    return (tls_dir / "cert.pem").read_bytes(), (tls_dir / "key.pem").read_bytes()


def alt_names(certificate: x509.Certificate) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), set(names.get_values_for_type(x509.IPAddress))


def write_pair(tls_dir: Path, now: dt.datetime, addresses: tuple[str, ...] = ("127.0.0.1",)) -> None:
    """Put a pair made at `now` where tls = auto keeps its own."""
    cert_pem, key_pem = tls.make_self_signed(["localhost"], [ipaddress.ip_address(a) for a in addresses], now)
    tls_dir.mkdir(parents=True, exist_ok=True)
    (tls_dir / "cert.pem").write_bytes(cert_pem)
    (tls_dir / "key.pem").write_bytes(key_pem)


def test_tls_off_needs_no_files(tmp_path):
    assert tls.certificate_files(ServerSettings(tls_dir=tmp_path / "tls")) is None
    assert not (tmp_path / "tls").exists()


def test_auto_makes_a_self_signed_certificate_naming_this_machine(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vergence.tls")
    cert_path, key_path = tls.certificate_files(auto(tmp_path / "tls"))

    assert (cert_path, key_path) == (tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names, addresses = alt_names(certificate)
    short = socket.gethostname().lower().split(".")[0]
    assert {"localhost", short, f"{short}.local"} <= names
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= addresses
    if private_address() is not None:  # the session's own veth pair: interface addresses, not loopback
        assert {ipaddress.ip_address("10.203.0.1"), ipaddress.ip_address("10.203.0.2")} <= addresses
    assert not any(address.version == 6 and address.is_link_local for address in addresses)

    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    certificate.verify_directly_issued_by(certificate)  # self-signed by that key
    assert certificate.issuer == certificate.subject
    days = (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days
    assert days == tls.VALID_DAYS
    assert certificate.not_valid_before_utc <= dt.datetime.now(dt.UTC)
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]

    # The fingerprint is logged for comparison with the browser's warning; the key never is.
    assert tls.fingerprint(certificate) in caplog.text
    key_body = key_path.read_text().splitlines()[1]
    assert key_body not in caplog.text and "PRIVATE KEY" not in caplog.text


def test_auto_keeps_its_certificate_across_starts(tmp_path):
    settings = auto(tmp_path / "tls")
    tls.certificate_files(settings)
    first = read_pair(tmp_path / "tls")

    tls.certificate_files(settings)
    assert read_pair(tmp_path / "tls") == first
    # A bind address the certificate names already keeps it too.
    tls.certificate_files(auto(tmp_path / "tls", host="127.0.0.1"))
    assert read_pair(tmp_path / "tls") == first


def test_key_is_0600_and_directory_0700_whatever_the_umask(tmp_path):
    old_umask = os.umask(0)
    try:
        cert_path, key_path = tls.certificate_files(auto(tmp_path / "state" / "tls"))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert not [p.name for p in key_path.parent.iterdir() if p.name.endswith(".tmp")], "temporary files left"


def test_remade_when_it_expires_within_30_days(tmp_path):
    tls_dir = tmp_path / "tls"
    write_pair(tls_dir, dt.datetime.now(dt.UTC) - dt.timedelta(days=tls.VALID_DAYS - 29))
    old = read_pair(tls_dir)

    tls.certificate_files(auto(tls_dir))
    new = read_pair(tls_dir)
    assert new[0] != old[0] and new[1] != old[1]
    certificate = x509.load_pem_x509_certificate(new[0])
    assert certificate.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=tls.VALID_DAYS - 1)


def test_kept_while_more_than_30_days_are_left(tmp_path):
    tls_dir = tmp_path / "tls"
    write_pair(tls_dir, dt.datetime.now(dt.UTC) - dt.timedelta(days=tls.VALID_DAYS - 31))
    old = read_pair(tls_dir)
    tls.certificate_files(auto(tls_dir))
    assert read_pair(tls_dir) == old


def test_remade_when_the_bind_address_is_not_named(tmp_path):
    tls_dir = tmp_path / "tls"
    tls.certificate_files(auto(tls_dir))
    old = read_pair(tls_dir)

    tls.certificate_files(auto(tls_dir, host="192.0.2.7"))  # TEST-NET-1: on no interface here
    assert read_pair(tls_dir) != old
    _, addresses = alt_names(x509.load_pem_x509_certificate(read_pair(tls_dir)[0]))
    assert ipaddress.ip_address("192.0.2.7") in addresses
    assert ipaddress.ip_address("127.0.0.1") in addresses  # and still the machine's own


@pytest.mark.parametrize("damage", ["garbage certificate", "key of another pair", "key missing"])
def test_remade_when_the_kept_pair_cannot_be_used(tmp_path, damage):
    tls_dir = tmp_path / "tls"
    tls.certificate_files(auto(tls_dir))
    old = read_pair(tls_dir)
    if damage == "garbage certificate":
        (tls_dir / "cert.pem").write_text("not a certificate\n")
    elif damage == "key of another pair":
        (tls_dir / "key.pem").write_bytes(tls.make_self_signed(["localhost"], [])[1])
    else:
        (tls_dir / "key.pem").unlink()

    cert_path, key_path = tls.certificate_files(auto(tls_dir))
    new = read_pair(tls_dir)
    assert new[0] != old[0]
    assert tls.load_pair(cert_path, key_path)  # a matching pair again


def test_an_unwritable_directory_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="tls_dir"):
        tls.certificate_files(auto(blocker / "tls"))


def test_given_pair_is_served_and_wins_over_auto(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="vergence.tls")
    cert_pem, key_pem = tls.make_self_signed(["camera.example"], [])
    (tmp_path / "fullchain.pem").write_bytes(cert_pem)
    (tmp_path / "privkey.pem").write_bytes(key_pem)
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = ServerSettings(
        tls="auto", tls_cert=Path("~/fullchain.pem"), tls_key=Path("~/privkey.pem"), tls_dir=tmp_path / "tls"
    )

    assert tls.certificate_files(settings) == (tmp_path / "fullchain.pem", tmp_path / "privkey.pem")
    assert not (tmp_path / "tls").exists()
    assert tls.fingerprint(x509.load_pem_x509_certificate(cert_pem)) in caplog.text


def test_given_pair_that_does_not_match_names_both_files(tmp_path):
    (tmp_path / "cert.pem").write_bytes(tls.make_self_signed(["a.example"], [])[0])
    (tmp_path / "other-key.pem").write_bytes(tls.make_self_signed(["b.example"], [])[1])
    settings = ServerSettings(tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "other-key.pem")
    with pytest.raises(ConfigError) as caught:
        tls.certificate_files(settings)
    message = str(caught.value)
    assert str(tmp_path / "cert.pem") in message and str(tmp_path / "other-key.pem") in message
    assert "does not belong" in message


def test_given_files_that_are_missing_or_not_pem_are_named(tmp_path):
    cert_pem, key_pem = tls.make_self_signed(["a.example"], [])
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    (tmp_path / "junk.pem").write_text("hello\n")
    encrypted = serialization.load_pem_private_key(key_pem, None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "encrypted.pem").write_bytes(encrypted)
    cases = [
        ("missing.pem", "key.pem", "server.tls_cert: .*missing.pem does not exist"),
        ("cert.pem", "missing.pem", "server.tls_key: .*missing.pem does not exist"),
        ("junk.pem", "key.pem", "server.tls_cert: .*junk.pem holds no PEM certificate"),
        ("cert.pem", "junk.pem", "server.tls_key: .*junk.pem is not an unencrypted PEM private key"),
        ("cert.pem", "encrypted.pem", "server.tls_key: .*encrypted.pem is not an unencrypted PEM private key"),
    ]
    for cert_name, key_name, message in cases:
        settings = ServerSettings(tls_cert=tmp_path / cert_name, tls_key=tmp_path / key_name)
        with pytest.raises(ConfigError, match=message):
            tls.certificate_files(settings)


@pytest.mark.parametrize("given", ["tls_cert", "tls_key"])
def test_only_one_of_cert_and_key_is_a_config_error(tmp_path, given):
    with pytest.raises(ConfigError, match="give both tls_cert and tls_key"):
        load_settings(server_flags={given: str(tmp_path / "x.pem")})


def test_addresses_are_found_without_iproute2(monkeypatch):
    with_ip = tls.interface_addresses()
    monkeypatch.setattr(tls, "_ip_command_addresses", lambda: None)  # as on a system without `ip -j`
    without_ip = tls.interface_addresses()
    # SIOCGIFADDR sees one IPv4 address per interface (iproute2 sees secondary ones too); IPv6 comes from /proc.
    assert without_ip <= with_ip
    assert {a for a in with_ip if a.version == 6} == {a for a in without_ip if a.version == 6}
    if private_address() is not None:
        assert ipaddress.ip_address(private_address()) in without_ip
