"""TLS settings of the services → NATS hop (SECURITY.md, "Shard services and watch-hubs →
NATS"); kubefabric.events.natsclient holds them on every connection.

- `FLAGS`: --nats-ca-file, --nats-cert-file, --nats-key-file, shared by the shard services and
  watch-hub (KUBEFABRIC_NATS_CA_FILE and so on come with them).
- `from_flags`: the flags and --nats-url as a `NatsTLS`, or None when TLS is off. TLS is on when
  --nats-ca-file is set or a URL is tls://; then it is on for every server of the URL.
- `NatsTLS`: those files as an ssl.SSLContext (TLS 1.2 or newer, the server's certificate and
  host name verified), re-read when they change: `client_context()` is asked at every (re)connect,
  so a rotated certificate or CA is used from the next reconnect on, while an open connection
  keeps the one it was made with (nats-py takes a context per connection).

No nats import here: every `kubefabric` command loads the flags.
"""
from __future__ import annotations

import logging
import ssl
from urllib.parse import urlparse

from kubefabric.config import Flag

from .files import TLSError, check_files, file_stamp

log = logging.getLogger("kubefabric.events")

FLAGS = [
    Flag("--nats-ca-file", "", "CA certificate(s) (PEM) that signed the NATS server's "
         "certificate: setting it (or a tls:// --nats-url) connects to NATS with TLS 1.2+, "
         "verifying the server's certificate and host name (tls:// without it: the system's "
         "trust roots). Re-read on each reconnect"),
    Flag("--nats-cert-file", "", "client certificate (PEM) for NATS servers that verify clients "
         "(tls { verify: true }); needs --nats-key-file and TLS. Re-read on each reconnect"),
    Flag("--nats-key-file", "", "unencrypted private key (PEM) of --nats-cert-file"),
]


def from_flags(url: str, ca_file: str, cert_file: str, key_file: str) -> "NatsTLS | None":
    """None when TLS is off (nats:// URLs, no --nats-ca-file). Raises TLSError (one line) for
    flags or files that cannot work: the services exit 2 with it at start-up."""
    check_files(cert_file, key_file, "", "--nats-")
    tls_url = any(urlparse(u.strip()).scheme == "tls" for u in url.split(","))
    if not (ca_file or tls_url):
        if cert_file:
            raise TLSError("--nats-cert-file needs TLS to NATS: use tls:// URLs in --nats-url "
                           "or give --nats-ca-file")
        return None
    return NatsTLS(ca_file, cert_file, key_file)


class NatsTLS:
    """ca_file ('' : the system's trust roots) verifies the server; cert_file and key_file
    (both or neither) are presented when the server asks for a client certificate."""

    def __init__(self, ca_file: str = "", cert_file: str = "", key_file: str = ""):
        check_files(cert_file, key_file, "", "--nats-")
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self._files = [(flag, path) for flag, path in (("--nats-ca-file", ca_file),
                       ("--nats-cert-file", cert_file), ("--nats-key-file", key_file)) if path]
        self._stamp = file_stamp(p for _, p in self._files)
        self._context = self._build()  # TLSError at start-up: nothing to fall back on

    def describe(self) -> str:
        trust = self.ca_file or "the system's trust roots"
        client = f"client certificate {self.cert_file}" if self.cert_file else "no client certificate"
        return f"TLS 1.2+, server certificate verified against {trust}, {client}"

    def client_context(self) -> ssl.SSLContext:
        """The context for the connection being made: rebuilt when a file changed since the last
        build. Files that do not load (say half-way through a rotation) are logged once per
        change and the previous context is kept; the next change is tried again."""
        stamp = file_stamp(p for _, p in self._files)  # before reading: a later write is not missed
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._context = self._build()
            except TLSError as err:
                log.warning("NATS TLS files changed but %s; keeping the previous ones", err)
            else:
                log.info("NATS TLS files changed: reloaded for the next connection (%s)",
                         self.describe())
        return self._context

    def _build(self) -> ssl.SSLContext:
        for flag, path in self._files:  # say which file is missing, which ssl does not
            try:
                with open(path, "rb"):
                    pass
            except OSError as err:
                raise TLSError(f"cannot read {flag} {path}: {err.strerror}") from None
        # create_default_context: CERT_REQUIRED and check_hostname; with a cafile only that CA
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file or None)
        except (ssl.SSLError, OSError) as err:
            raise TLSError(f"--nats-ca-file {self.ca_file} holds no PEM CA certificate "
                           f"({getattr(err, 'reason', None) or err})") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file:
            cert, key = self.cert_file, self.key_file

            def no_password():
                raise TLSError(f"--nats-key-file {key} is encrypted; give an unencrypted key")
            try:
                ctx.load_cert_chain(cert, key, password=no_password)
            except (ssl.SSLError, OSError) as err:
                raise TLSError(f"--nats-cert-file {cert} and --nats-key-file {key} are not a PEM "
                               f"certificate and its unencrypted private key "
                               f"({getattr(err, 'reason', None) or err})") from None
        return ctx
