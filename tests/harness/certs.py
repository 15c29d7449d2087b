"""Throw-away X.509 material for TLS tests, generated per run with `cryptography`.

    ca = CA.new("test CA", tmp_path)
    server = ca.issue("server", tmp_path, server=True)          # SANs 127.0.0.1 and localhost
    client = ca.issue("client", tmp_path, expired=True)         # not_after in the past
    peer = ca.issue("replica", tmp_path, peer=True)             # server and client certificate

Files are PEM: `<name>.pem` (certificate) and `<name>-key.pem` (key); `write_to` rewrites a
certificate pair at other paths (the rotation test reuses the server's paths).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path
    key_file: Path

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def write_to(self, cert_file: Path, key_file: Path) -> None:
        """Replace the files at these paths the way rotation tools do (write aside, rename)."""
        for path, data in ((key_file, self.key_pem), (cert_file, self.cert_pem)):
            tmp = path.with_name(path.name + ".new")
            tmp.write_bytes(data)
            tmp.replace(path)


@dataclass
class CA:
    pair: Pair

    @classmethod
    def new(cls, cn: str, directory: Path) -> "CA":
        key = _key()
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        pair = Pair(cert, key, directory / f"{_slug(cn)}.pem", directory / f"{_slug(cn)}-key.pem")
        pair.write_to(pair.cert_file, pair.key_file)
        return cls(pair)

    @property
    def cert_file(self) -> Path:
        return self.pair.cert_file

    def issue(self, name: str, directory: Path, server: bool = False, expired: bool = False,
              peer: bool = False, hosts: list[str] | None = None) -> Pair:
        """peer: a server certificate that is also a client certificate (shard replicas
        present theirs to the leader). hosts: a server certificate's SANs (IP addresses or DNS
        names; default 127.0.0.1 and localhost)."""
        key = _key()
        now = dt.datetime.now(dt.timezone.utc)
        if expired:
            before, after = now - dt.timedelta(days=2), now - dt.timedelta(days=1)
        else:
            before, after = now - dt.timedelta(hours=1), now + dt.timedelta(days=1)
        server = server or peer
        usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
        if peer:
            usage.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (x509.CertificateBuilder().subject_name(_name(name))
                   .issuer_name(self.pair.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(before).not_valid_after(after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.pair.key.public_key()), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [_san(h) for h in (hosts or ["127.0.0.1", "localhost"])]), critical=False)
        cert = builder.sign(self.pair.key, hashes.SHA256())
        pair = Pair(cert, key, directory / f"{_slug(name)}.pem", directory / f"{_slug(name)}-key.pem")
        pair.write_to(pair.cert_file, pair.key_file)
        return pair


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())
