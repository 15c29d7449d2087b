"""What kv-router asks before serving a call while etcd auth is enabled: who is calling (a token
in the call's metadata, else, with --client-cert-auth, the CN of the verified client
certificate: etcd's rule) and whether etcd would let them (kubefabric.auth.perms), with etcd's
errors, call by call as etcd's servers check them.

The auth store lives in the default shard; this replica holds a copy, polled every POLL_S and
replaced at once after a change made through it, so a change applies on every replica within a
second. Tokens and passwords are never logged.
"""
from __future__ import annotations

import asyncio
import logging

from grpc import StatusCode

from kubefabric.etcd import errors
from kubefabric.auth.perms import READ, WRITE, Checker
from kubefabric.auth.state import AuthState
from kubefabric.auth.tokens import Identity
from kubefabric.etcd.errors import EtcdError
from kubefabric.lifecycle import start_every
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

log = logging.getLogger("kubefabric.router.auth")

POLL_S = 0.5


class AuthGuard:
    def __init__(self, shard, tokens, client_cert_auth: bool = False):
        self.shard = shard
        self.tokens = tokens
        self.client_cert_auth = client_cert_auth
        self._state = AuthState()
        self.checker = Checker(self._state)
        self.generation = -1
        # shard.auth_now(generation): the committed store when it moved past `generation`, read
        # without waiting (the embedded shard's memory; a --workers worker's database), so a
        # change made through another process applies from the next call on; shards without it
        # (shard services, topologies) are polled every POLL_S
        self.fresh = getattr(shard, "auth_now", None)
        self._task: asyncio.Task | None = None
        self._failing = False

    # ---- the copy of the store ----

    @property
    def state(self) -> AuthState:
        """The auth store every check of a call reads (see `fresh`)."""
        if self.fresh is not None:
            current = self.fresh(self.generation)
            if current is not None:
                self.take(*current)
        return self._state

    def take(self, state: AuthState, generation: int) -> None:
        if generation < self.generation:
            return
        if state.enabled != self._state.enabled:
            log.info("etcd authentication is now %s", "enabled" if state.enabled else "disabled")
        self._state, self.generation = state, generation
        self.checker = Checker(state)

    async def refresh(self) -> None:
        current = await self.shard.auth_read(self.generation)
        if current is not None:
            self.take(*current)

    def start(self) -> None:
        self._task = start_every(POLL_S, self._refresh_polled, self._refresh_failed, "auth-refresh")

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _refresh_polled(self) -> None:
        await self.refresh()
        if self._failing:
            log.info("auth store reachable again")
        self._failing = False

    def _refresh_failed(self, exc: Exception) -> None:  # keep the last copy; say so once
        if not self._failing:
            log.warning("cannot read the auth store from the default shard (keeping the "
                        "last copy): %s", exc)
        self._failing = True

    # ---- identity ----

    def identity(self, context) -> Identity | None:
        """etcd's AuthInfoFromCtx: None with auth disabled or no credential; a bad token is
        refused (invalid auth token)."""
        state = self.state
        if not state.enabled:
            return None
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "token" or (key == "authorization" and token is None):
                token = value.removeprefix("Bearer ") if isinstance(value, str) else None
        if token is not None:
            ident = self.tokens.info(state, token)
            if ident is None:
                log.warning("invalid auth token")  # never the token itself
                raise errors.INVALID_AUTH_TOKEN
            return ident
        if self.client_cert_auth:
            names = (context.auth_context() or {}).get("x509_common_name") or []
            if names:
                cn = names[0].decode() if isinstance(names[0], bytes) else names[0]
                return Identity(cn, state.revision)
        return None

    def require(self, context) -> Identity | None:
        """etcd's requireAuthInfo: with auth enabled, some identity."""
        ident = self.identity(context)
        if self.state.enabled and ident is None:
            raise errors.USER_EMPTY
        return ident

    def admin(self, context) -> None:
        """etcd's AuthAdmin.isPermitted: a user with the root role."""
        if not self.state.enabled:
            return
        ident = self.identity(context)
        self.state.check_admin(ident.user if ident else None)

    def caller(self, context) -> str | None:
        ident = self.identity(context)
        return ident.user if ident else None

    # ---- KV ----

    def _check(self, ident: Identity | None, key: bytes, end: bytes, kind: int) -> None:
        ident = ident or Identity("", 0)
        self.checker.check(ident.user, ident.revision, key, end, kind)

    def _is_admin(self, ident: Identity | None) -> bool:
        return self.state.admin_error(ident.user if ident else None) is None

    def check_range(self, context, req: pb.RangeRequest) -> None:
        if self.state.enabled:
            self._check(self.identity(context), req.key, req.range_end, READ)

    async def check_put(self, context, req: pb.PutRequest) -> None:
        if self.state.enabled:
            await self._put(self.identity(context), req)

    async def _put(self, ident, req: pb.PutRequest) -> None:
        self._check(ident, req.key, b"", WRITE)
        if req.lease:
            await self._lease_keys(ident, req.lease, WRITE)
        if req.prev_kv:
            self._check(ident, req.key, b"", READ)

    def check_delete(self, context, req: pb.DeleteRangeRequest) -> None:
        if self.state.enabled:
            self._delete(self.identity(context), req)

    def _delete(self, ident, req: pb.DeleteRangeRequest) -> None:
        self._check(ident, req.key, req.range_end, WRITE)
        if req.prev_kv:
            self._check(ident, req.key, req.range_end, READ)

    async def check_txn(self, context, req: pb.TxnRequest) -> None:
        if self.state.enabled:
            await self._txn(self.identity(context), req)

    async def _txn(self, ident, req: pb.TxnRequest) -> None:
        """etcd's checkTxnPermission: every compare and both branches, nested txns included."""
        for cmp in req.compare:
            self._check(ident, cmp.key, cmp.range_end, READ)
        for op in (*req.success, *req.failure):
            kind = op.WhichOneof("request")
            if kind == "request_range":
                self._check(ident, op.request_range.key, op.request_range.range_end, READ)
            elif kind == "request_put":
                await self._put(ident, op.request_put)
            elif kind == "request_delete_range":
                d = op.request_delete_range
                if d.prev_kv:
                    self._check(ident, d.key, d.range_end, READ)
                self._check(ident, d.key, d.range_end, WRITE)
            elif kind == "request_txn":
                await self._txn(ident, op.request_txn)

    # ---- leases ----

    async def _lease_keys(self, ident, lease_id: int, kind: int) -> None:
        """Admin, or the permission on every key of the lease (etcd's checkLeasePuts)."""
        if self._is_admin(ident):
            return
        ttl, _, keys = await self.shard.lease_time_to_live(lease_id, True)
        if ttl < 0:
            return
        for key in keys:
            self._check(ident, key, b"", kind)

    async def check_lease_revoke(self, context, lease_id: int) -> None:
        if self.state.enabled:
            await self._lease_keys(self.identity(context), lease_id, WRITE)

    async def check_lease_renew(self, context, lease_id: int) -> None:
        if self.state.enabled:
            ident = self.require(context)
            await self._lease_keys(ident, lease_id, WRITE)

    async def check_lease_ttl(self, context, req: pb.LeaseTimeToLiveRequest) -> None:
        if self.state.enabled:
            ident = self.require(context)
            if req.keys:
                await self._lease_keys(ident, req.ID, READ)

    async def check_lease_list(self, context, ids: list[int]) -> None:
        if not self.state.enabled:
            return
        ident = self.require(context)
        if self._is_admin(ident):
            return
        for lease_id in ids:
            await self._lease_keys(ident, lease_id, READ)

    # ---- watch ----

    def watch_refusal(self, context, creq: pb.WatchCreateRequest) -> str | None:
        """The cancel reason etcd gives a watch the caller may not create (the text of its
        gRPC error, as Go prints it), or None."""
        if not self.state.enabled:
            return None
        try:
            self._check(self.identity(context), creq.key, creq.range_end, READ)
        except EtcdError as err:
            if err not in (errors.INVALID_AUTH_TOKEN, errors.AUTH_OLD_REVISION, errors.USER_EMPTY):
                err = errors.PERMISSION_DENIED
            return f"rpc error: code = {_GO_CODES[err.code]} desc = {err.message}"
        return None


_GO_CODES = {StatusCode.INVALID_ARGUMENT: "InvalidArgument", StatusCode.UNAUTHENTICATED: "Unauthenticated",
             StatusCode.PERMISSION_DENIED: "PermissionDenied"}
