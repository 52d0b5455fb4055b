"""TLS material for the test servers: a private CA, certificates it signs, and bad ones.

Every certificate is made fresh for a test session; nothing is checked in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPair:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class TestPKI:
    ca_file: Path          # trust this (PROBE_EXTRA_CA_FILE)
    good: CertPair         # signed by the CA, valid for localhost/127.0.0.1/::1
    self_signed: CertPair  # valid names and dates, but nobody trusts it
    expired: CertPair      # signed by the CA, expired yesterday
    wrong_host: CertPair   # signed by the CA, for mail.example.com only


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write(directory: Path, stem: str, cert: x509.Certificate, key) -> CertPair:
    cert_file = directory / f"{stem}.crt"
    key_file = directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return CertPair(cert_file, key_file)


def _leaf(
    subject_key,
    issuer_name: x509.Name,
    issuer_key,
    names: tuple[str, ...],
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer_name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def make_pki(directory: Path) -> TestPKI:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailconnect test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    good_key, self_key, expired_key, wrong_key = _key(), _key(), _key(), _key()
    valid = (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    good = _leaf(good_key, ca_name, ca_key, LOOPBACK_NAMES, *valid)
    self_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    self_signed = _leaf(self_key, self_name, self_key, LOOPBACK_NAMES, *valid)
    expired = _leaf(
        expired_key, ca_name, ca_key, LOOPBACK_NAMES,
        now - dt.timedelta(days=30), now - dt.timedelta(days=1),
    )
    wrong_host = _leaf(wrong_key, ca_name, ca_key, ("mail.example.com",), *valid)
    return TestPKI(
        ca_file=ca_file,
        good=_write(directory, "good", good, good_key),
        self_signed=_write(directory, "self-signed", self_signed, self_key),
        expired=_write(directory, "expired", expired, expired_key),
        wrong_host=_write(directory, "wrong-host", wrong_host, wrong_key),
    )
