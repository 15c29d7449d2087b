"""TLS server certificates shared by every KubeFabric service that serves gRPC (kv-router's
client port, the shard services' Shard API), and client credentials for the hops between them.

- `CertificateReloader`: a certificate, its key and (optionally) the CA of client certificates
  as grpc server credentials, re-read when the files change, so a rotated certificate reaches
  new connections without a restart (connections already open keep theirs). With a CA, client
  certificates are required and verified on every connection (mTLS).
- `ClientTLS`: the CA (to verify the server), and optionally a client certificate and key, as
  grpc channel credentials, with a cheap check whether the files changed since they were read
  (callers make new channels then).

grpc is imported only inside the functions that build credentials: kv-router's --cipher-suites
sets GRPC_SSL_CIPHER_SUITES, which grpc's core reads once, when grpc is first loaded.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass

from kubefabric.rpc.startup import StartupError

log = logging.getLogger("kubefabric.tls")

RECHECK_S = 5.0  # re-read the files this often even when their mtime/size/inode look the same


class TLSError(StartupError, ValueError):
    """A TLS flag, flag combination or file that cannot work; the message is one line."""


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str
    key_file: str
    trusted_ca_file: str      # '' when client certificates are not requested
    listeners: tuple[str, ...]  # what is served with it (URLs or host:port), for the logs

    @property
    def verify_clients(self) -> bool:
        return bool(self.trusted_ca_file)


def check_files(cert_file: str, key_file: str, trusted_ca_file: str, prefix: str = "--") -> None:
    """Flag combinations that cannot work (flag names `{prefix}cert-file` and so on)."""
    if bool(cert_file) != bool(key_file):
        given, missing = (("cert-file", "key-file") if cert_file else ("key-file", "cert-file"))
        raise TLSError(f"{prefix}{given} is set but {prefix}{missing} is not: give both")
    if trusted_ca_file and not cert_file:
        raise TLSError(f"{prefix}trusted-ca-file needs {prefix}cert-file and {prefix}key-file "
                       "(client certificates are checked during a TLS handshake)")


def _fingerprint(cert_pem: bytes) -> str:
    m = re.search(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", cert_pem, re.S)
    der = ssl.PEM_cert_to_DER_cert(m[0].decode()) if m else cert_pem
    return hashlib.sha256(der).hexdigest()[:16]


def _no_password(key_file: str) -> bytes:
    raise TLSError(f"--key-file {key_file} is encrypted; give an unencrypted key")


class CertificateReloader:
    """The certificate, key and CA files as grpc server credentials. Every TLS handshake asks
    (through grpc's certificate configuration fetcher) whether the files changed; changed files
    are read, checked as a pair with Python's ssl module and served from then on. Files that do
    not check out (say a rotation tool has written the new certificate but not yet its key) are
    logged and the previous certificate is kept."""

    def __init__(self, settings: TLSSettings):
        self.settings = settings
        self._flags = [("--cert-file", settings.cert_file), ("--key-file", settings.key_file)]
        if settings.trusted_ca_file:
            self._flags.append(("--trusted-ca-file", settings.trusted_ca_file))
        self._lock = threading.Lock()
        self._generation = 0
        self._rejected: tuple[bytes, ...] | None = None
        for _ in range(3):  # the files may be in the middle of a rotation
            stamp, material = self._read()
            if self._check(material):
                break
        else:
            raise TLSError(f"{' / '.join(p for _, p in self._flags)} keep changing while read")
        self._install(stamp, material)
        clients = (f"required, verified against {settings.trusted_ca_file}"
                   if settings.verify_clients else "not requested")
        log.info("TLS on %s: certificate %s (sha256 %s), client certificates %s",
                 ", ".join(settings.listeners), settings.cert_file, _fingerprint(material[0]), clients)

    def credentials(self):
        """Server credentials for one listener: each has its own view of what it has served."""
        import grpc  # only now: see the module docstring (GRPC_SSL_CIPHER_SUITES)

        with self._lock:
            served = {"generation": self._generation}
            initial = self._config

        def fetch():
            try:
                self.refresh()
            except Exception:  # a handshake must never fail because of the reload check
                log.exception("checking the TLS files failed; keeping the current certificate")
            with self._lock:
                if served["generation"] == self._generation:
                    return None
                served["generation"] = self._generation
                return self._config

        return grpc.dynamic_ssl_server_credentials(
            initial, fetch, require_client_authentication=self.settings.verify_clients)

    def refresh(self) -> None:
        """Serve the files' current contents if they changed and check out."""
        with self._lock:
            try:
                stamp = self._stat()
            except OSError:
                stamp = None  # gone (perhaps for a moment, mid-rotation)
            if stamp == self._stamp and time.monotonic() - self._checked < RECHECK_S:
                return
            try:
                stamp, material = self._read()
            except TLSError as err:  # warned about at most every RECHECK_S while it lasts
                log.warning("%s; keeping the previous TLS certificate", err)
                self._stamp, self._checked = None, time.monotonic()
                return
            self._checked = time.monotonic()
            if material == self._material or material == self._rejected:
                self._stamp = stamp
                return
            try:
                ok = self._check(material)
            except TLSError as err:
                log.warning("TLS files changed but %s; keeping the previous certificate", err)
                self._rejected, self._stamp = material, stamp
                return
            if ok:
                self._install(stamp, material)
                log.info("TLS certificate reloaded from %s (sha256 %s): new connections get it",
                         self.settings.cert_file, _fingerprint(material[0]))

    def _stat(self) -> tuple:
        return tuple((st.st_mtime_ns, st.st_size, st.st_ino)
                     for st in (os.stat(path) for _, path in self._flags))

    def _read(self) -> tuple[tuple, tuple[bytes, ...]]:
        stamp, material = [], []
        for flag, path in self._flags:
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    material.append(f.read())
            except OSError as err:
                raise TLSError(f"cannot read {flag} {path}: {err.strerror}") from None
            stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamp), tuple(material)

    def _check(self, material: tuple[bytes, ...]) -> bool:
        """True when `material` (just read) is a matching certificate and key (and a CA file).
        The check reads the paths again, so False means they changed meanwhile: try again."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = self.settings.cert_file, self.settings.key_file
        try:
            ctx.load_cert_chain(cert, key, password=lambda: _no_password(key))
        except ssl.SSLError as err:
            raise TLSError(f"--cert-file {cert} and --key-file {key} are not a PEM certificate and "
                           f"its unencrypted private key ({err.reason or err})") from None
        except OSError as err:
            raise TLSError(f"cannot read --cert-file {cert} or --key-file {key}: "
                           f"{err.strerror}") from None
        if self.settings.trusted_ca_file:
            ca = self.settings.trusted_ca_file
            try:
                ctx.load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as err:
                raise TLSError(f"--trusted-ca-file {ca} holds no PEM CA certificate "
                               f"({getattr(err, 'reason', None) or err})") from None
        try:
            return self._read()[1] == material
        except TLSError:
            return False

    def _install(self, stamp: tuple, material: tuple[bytes, ...]) -> None:
        import grpc

        cert, key = material[0], material[1]
        ca = material[2] if len(material) > 2 else None
        self._config = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        self._stamp, self._material, self._checked = stamp, material, time.monotonic()
        self._generation += 1


def _stamp(paths) -> tuple:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


class ClientTLS:
    """Client side of a TLS hop: ca_file verifies the server ('' or None: the system's trust
    roots, or $GRPC_DEFAULT_SSL_ROOTS_FILE_PATH); cert_file/key_file are the client certificate
    presented when the server asks for one; server_name overrides the name checked against the
    server's certificate (default: the host of the address dialled)."""

    def __init__(self, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, server_name: str | None = None,
                 flag_prefix: str = "--"):
        check_files(cert_file or "", key_file or "", "", flag_prefix)
        self.ca_file, self.cert_file, self.key_file = ca_file or None, cert_file or None, key_file or None
        self.server_name = server_name or None
        self._paths = [p for p in (self.ca_file, self.cert_file, self.key_file) if p]
        self._stamp = _stamp(self._paths)
        self._checked = time.monotonic()

    def credentials(self):
        """grpc channel credentials from the files as they are now."""
        import grpc

        def read(flag, path):
            if not path:
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as err:
                raise TLSError(f"cannot read {flag} {path}: {err.strerror}") from None
        stamp = _stamp(self._paths)
        creds = grpc.ssl_channel_credentials(read("CA file", self.ca_file),
                                             read("key file", self.key_file),
                                             read("certificate file", self.cert_file))
        self._stamp, self._checked = stamp, time.monotonic()
        return creds

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def changed(self) -> bool:
        """Whether the files changed since credentials() read them (checked at most every
        RECHECK_S / 5 seconds, so it can sit on a hot path)."""
        now = time.monotonic()
        if now - self._checked < RECHECK_S / 5:
            return False
        self._checked = now
        return _stamp(self._paths) != self._stamp
