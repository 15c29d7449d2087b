"""nats-py's client holding KubeFabric's TLS decision (kubefabric.tls.nats.from_flags) on every connection
and reconnection (SECURITY.md, "Shard services and watch-hubs → NATS").

Invariants, checked on each (re)connect:
- TLS on: the connection is TLS, verified, or it is not made. nats-py on its own upgrades to
  TLS only when the server's INFO says tls_required, and otherwise carries on in plaintext, even
  for a tls:// URL; `Client` refuses such a server before CONNECT is sent.
- TLS off: a server that requires TLS is refused with a sentence naming the flags, instead of
  nats-py upgrading with the system's trust roots behind the operator's back.
- The SSL context comes from `NatsTLS.client_context()` as the connection is made, so changed
  files apply from the next reconnect.
- Each refusal is a `TLSMismatch` with a sentence saying what to check; nats-py treats it as
  any failed attempt (error callback, next server, retry): the service keeps trying.
"""
from __future__ import annotations

import asyncio
import ssl

import nats.aio.client
import nats.errors

from kubefabric.tls.nats import NatsTLS


class TLSMismatch(nats.errors.Error):
    """A connection attempt given up for TLS reasons; nats-py's connect loops treat it like any
    failed attempt (error callback, next server, retry), so the service keeps trying."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Client(nats.aio.client.Client):
    """nats-py's client with the module's invariants. It hooks internals of nats-py (pinned in
    uv.lock; tests/security/test_nats_tls.py fails if they stop being called):
    `_process_info(initial_connection=True)`, which runs on the server's first INFO before any
    TLS upgrade and before CONNECT; the `ssl_context` property, read at the TLS upgrade;
    `_process_connect_init`, the whole set-up of one connection; and `_close`, whose errors
    (closing a connection that already failed repeats that failure) are not reported, and which
    drops the buffer of a client still reconnecting (`_pending`, `_pending_data_size`)."""

    def __init__(self, tls: NatsTLS | None):
        super().__init__()
        self._kf_tls = tls
        self._kf_upgrading = False  # the TLS upgrade of the connection being set up has begun
        self._kf_closing = False

    async def connect(self, *args, error_cb=None, **kwargs) -> None:
        async def report(exc):
            if error_cb is not None and not self._kf_closing:
                await error_cb(exc)
        await super().connect(*args, error_cb=report, **kwargs)  # type: ignore[misc]

    async def _close(self, *args, **kwargs) -> None:
        self._kf_closing = True
        if not self.is_connected:
            # reconnecting: what was buffered meanwhile can never be sent, and nats-py would
            # write it to the dead connection (uvloop raises: "the handler is closed")
            self._pending, self._pending_data_size = [], 0
        try:
            await super()._close(*args, **kwargs)
        finally:
            self._kf_closing = False

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._kf_tls is None:  # unreachable: _process_info refused the server already
            raise TLSMismatch("TLS to NATS is off (nats:// URLs, no --nats-ca-file)")
        self._kf_upgrading = True
        return self._kf_tls.client_context()

    async def _process_info(self, info, initial_connection: bool = False) -> None:
        if initial_connection:
            self._kf_check(info)
        await super()._process_info(info, initial_connection)

    def _kf_check(self, info) -> None:
        where = self._kf_server()
        required = bool(info.get("tls_required"))
        if self._kf_tls is None and required:
            raise TLSMismatch(f"NATS server {where} requires TLS: use a tls:// URL in --nats-url "
                              "or give --nats-ca-file (and --nats-cert-file/--nats-key-file if "
                              "it verifies clients)")
        if self._kf_tls is not None and not required:
            raise TLSMismatch(f"NATS server {where} does not require TLS (no tls_required in its "
                              "INFO): refusing to continue in plaintext while TLS is on; give "
                              "the server a tls {} block, or use nats:// URLs without "
                              "--nats-ca-file")

    async def _process_connect_init(self) -> None:
        """A refused TLS handshake gets a sentence on what to check; other errors pass as they
        are. The server refuses a client certificate after the client's side of a TLS 1.3
        handshake is done, so the client sees only a reset or EOF then: anything failing once
        the upgrade has begun is reported as a TLS failure."""
        self._kf_upgrading = False
        try:
            await super()._process_connect_init()
        except TLSMismatch:
            raise
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as err:
            if not self._kf_upgrading:
                raise
            raise TLSMismatch(self._kf_explain(err)) from err

    def _kf_explain(self, err: BaseException) -> str:
        tls, where = self._kf_tls, self._kf_server()
        text = str(err) or type(err).__name__
        if isinstance(err, ssl.SSLCertVerificationError):
            trust = f"--nats-ca-file {tls.ca_file}" if tls.ca_file else "the system's trust roots"
            host = where.rsplit(":", 1)[0]
            return (f"TLS to NATS server {where} failed: its certificate is not trusted "
                    f"({err.verify_message}; checked against {trust} and the host name {host})")
        if not tls.cert_file:
            return (f"TLS to NATS server {where} failed ({text}): the server probably requires a "
                    "client certificate: give --nats-cert-file and --nats-key-file")
        return (f"TLS to NATS server {where} failed ({text}): the server probably refused the "
                f"client certificate --nats-cert-file {tls.cert_file} (not signed by a CA in its "
                "tls ca_file, expired, or without the clientAuth usage)")

    def _kf_server(self) -> str:
        server = self._current_server
        return server.uri.netloc.rsplit("@", 1)[-1] if server is not None else "?"
