"""Server side of TLS for every KubeFabric service that serves gRPC (kv-router's client port,
the shard services' Shard API) or an asyncio listener (a shard service's batch lane): a
certificate, its key and optionally the CA of client certificates as grpc server credentials or
an ssl.SSLContext, re-read when the files change, so a rotated certificate reaches new
connections without a restart (connections already open keep theirs). With a CA, client
certificates are required and verified on every connection (mTLS).
"""
from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass

from .files import RECHECK_S, TLSError, fingerprint

log = logging.getLogger("kubefabric.tls")


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str
    key_file: str
    trusted_ca_file: str      # '' when client certificates are not requested
    listeners: tuple[str, ...]  # what is served with it (URLs or host:port), for the logs

    @property
    def verify_clients(self) -> bool:
        return bool(self.trusted_ca_file)


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
        # what is served (set by _install): the files' stamps and contents, when last checked
        self._stamp: tuple | None = None
        self._material: tuple[bytes, ...] = ()
        self._checked = 0.0
        self._config = None
        self._context: ssl.SSLContext | None = None  # the same files, for asyncio listeners
        for _ in range(3):  # the files may be in the middle of a rotation
            stamp, material = self._read()
            context = self._check(material)
            if context is not None:
                break
        else:
            raise TLSError(f"{' / '.join(p for _, p in self._flags)} keep changing while read")
        self._install(stamp, material, context)
        clients = (f"required, verified against {settings.trusted_ca_file}"
                   if settings.verify_clients else "not requested")
        log.info("TLS on %s: certificate %s (sha256 %s), client certificates %s",
                 ", ".join(settings.listeners), settings.cert_file, fingerprint(material[0]), clients)

    def credentials(self):
        """Server credentials for one listener: each has its own view of what it has served."""
        import grpc  # not at module level (kubefabric.cli)

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
                context = self._check(material)
            except TLSError as err:
                log.warning("TLS files changed but %s; keeping the previous certificate", err)
                self._rejected, self._stamp = material, stamp
                return
            if context is not None:
                self._install(stamp, material, context)
                log.info("TLS certificate reloaded from %s (sha256 %s): new connections get it",
                         self.settings.cert_file, fingerprint(material[0]))

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

    def _check(self, material: tuple[bytes, ...]) -> ssl.SSLContext | None:
        """A server SSLContext of `material` (just read) when it is a matching certificate and
        key (and a CA file). The check reads the paths again, so None means they changed
        meanwhile: try again."""
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
            ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            return ctx if self._read()[1] == material else None
        except TLSError:
            return None

    def asyncio_context(self) -> ssl.SSLContext:
        """An SSLContext for an asyncio listener (asyncio.start_server's `ssl`): every handshake
        is served with the files' current certificate (and CA), checked as for gRPC's."""
        def current(connection, _server_name, _listener) -> None:
            try:
                self.refresh()
            except Exception:  # a handshake must never fail because of the reload check
                log.exception("checking the TLS files failed; keeping the current certificate")
            with self._lock:
                if connection.context is not self._context:
                    connection.context = self._context

        with self._lock:
            listener = self._context
        assert listener is not None
        # called for every ClientHello, with or without a server name; the connection's
        # verify mode stays the listener's: client certificates required iff a CA was given
        listener.sni_callback = current
        return listener

    def _install(self, stamp: tuple, material: tuple[bytes, ...], context: ssl.SSLContext) -> None:
        import grpc

        cert, key = material[0], material[1]
        ca = material[2] if len(material) > 2 else None
        self._config = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        self._stamp, self._material, self._checked = stamp, material, time.monotonic()
        self._context = context
        self._generation += 1
