"""Client side of a TLS hop between KubeFabric services (kv-router → shard services, a replica →
its leader): the CA that verifies the server, optionally a client certificate, as grpc channel
credentials or an ssl.SSLContext (a shard service's batch lane), with a cheap check whether the
files changed since they were read (callers make new channels then). grpc is imported only when
credentials are built (kubefabric.cli)."""
from __future__ import annotations

import ssl
import time

from .files import RECHECK_S, TLSError, check_files, file_stamp


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
        self._stamp = file_stamp(self._paths)
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
        stamp = file_stamp(self._paths)
        creds = grpc.ssl_channel_credentials(read("CA file", self.ca_file),
                                             read("key file", self.key_file),
                                             read("certificate file", self.cert_file))
        self._stamp, self._checked = stamp, time.monotonic()
        return creds

    def ssl_context(self) -> ssl.SSLContext:
        """The same trust and client certificate, from the files as they are now, for an asyncio
        connection (the server's name is checked against `server_hostname`: see server_name)."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)  # no CA file: the system's roots
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as err:
            raise TLSError(f"the shard TLS files cannot be used: {err}") from None
        return ctx

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def changed(self) -> bool:
        """Whether the files changed since credentials() read them (checked at most every
        RECHECK_S / 5 seconds, so it can sit on a hot path)."""
        now = time.monotonic()
        if now - self._checked < RECHECK_S / 5:
            return False
        self._checked = now
        return file_stamp(self._paths) != self._stamp
