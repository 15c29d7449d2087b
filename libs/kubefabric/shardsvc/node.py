"""One replica of a shard service: its store connection, its role, and the election loop.

Invariants:
- A replica writes only while its term holds the shard's lease (kubefabric.shard.leadership):
  every write batch renews it in its own transaction, and a batch whose term lost it is rolled
  back. A leader that could not renew in time stops on its own; this loop then reconnects it
  as a replica.
- A replica looks at the lease row when the lease should have run out (SQLite: every
  SQLITE_POLL_S, and whether the holder still runs) and takes it over once it is free.
- `ready` is true only when the database is reachable and the role (leader or replica) is known.
- A replica that cannot write forwards writes to the leader named in the database; if none is
  known, the call fails with UNAVAILABLE before anything is applied (clients retry). With TLS
  (`peer_tls`) it dials the leader with TLS, presenting the service's own certificate; changed
  certificate files make a new channel (calls on the old one finish first).
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable

import grpc

from kubefabric.etcd import errors
from kubefabric.lifecycle import cancel_and_wait
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.shard import holder as holders
from kubefabric.shard.core import Shard
from kubefabric.shard.leadership import LEASE_S, RENEW_EVERY, Campaign, LeaderRow
from kubefabric.telemetry import instrument_shard_stub
from kubefabric.tls import ClientTLS, TLSError

log = logging.getLogger("kubefabric.shard.node")

BACKOFF_MAX = 10.0        # seconds, when the database is unreachable
FORWARD_GRACE_S = 60.0    # calls forwarded on a replaced leader channel get this long to finish


class ShardNode:
    def __init__(self, make_store, shard_options: dict, address: str, name: str = "shard",
                 lease_s: float = LEASE_S):
        self.make_store = make_store  # () -> a new, unopened store
        self.shard_options = shard_options
        self.address = address        # where other replicas reach this one (Shard API)
        self.name = name
        self.lease_s = lease_s
        self.shard: Shard | None = None
        self.ready = asyncio.Event()
        self.role = "starting"
        self.leader_address = ""
        self._leader_channel: grpc.aio.Channel | None = None
        self._leader_stub = None
        self.peer_tls: ClientTLS | None = None  # dial the leader with TLS
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.on_role_change: Callable[[str], object] = lambda role: None
        self.index_rules: tuple = ()  # kubefabric.index.rules.IndexRule of this shard

    # ---- lifecycle ----

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shard-election")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            await cancel_and_wait(self._task)
            if not self._task.cancelled() and self._task.exception() is not None:
                log.debug("the election loop ended: %s", self._task.exception())
        await self._close_shard()
        if self._leader_channel is not None:
            await self._leader_channel.close()

    async def _close_shard(self) -> None:
        shard, self.shard = self.shard, None
        self.ready.clear()
        if shard is not None:
            try:
                await shard.close()
            except Exception:
                log.exception("closing the shard store failed")

    # ---- the loop: connect, elect, watch the connection ----

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                await self._connect()
                backoff = 0.2
                await self._elect_and_serve()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("database unavailable: %s; retrying in %.1fs", _reason(exc), backoff)
            self._set_role("starting")
            await self._close_shard()
            await asyncio.sleep(backoff * (1 + random.random() / 2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _connect(self) -> None:
        shard = Shard(self.make_store(), lease_s=self.lease_s, **self.shard_options)
        shard.index.shard_name = self.name
        shard.index.configure(self.index_rules)  # before it may lead (see ShardIndex)
        await shard.store.open()
        self.shard = shard
        await shard.store.limit_writer_silence(self.lease_s)

    async def _elect_and_serve(self) -> None:
        campaign = Campaign(self.shard.store, self.address, self.lease_s)
        while not self._stopping:
            if self.role == "leader":
                if not self.shard.is_leader:
                    raise ConnectionError("stepped down: this replica's lease ran out or was taken")
                await asyncio.sleep(self.lease_s * RENEW_EVERY)
                continue
            row = await campaign.read()
            why = campaign.vacancy(row)
            if why is not None:
                lease = await campaign.take(row)
                if lease is not None:
                    log.info("%s: took the lease (%s): term %d", self.name, why, lease.term)
                    await self.shard.lead(lease)
                    self.leader_address = self.address
                    self._set_role("leader")
                    continue
            await self._follow(row)
            await asyncio.sleep(campaign.poll_after(row))

    async def _follow(self, row: LeaderRow) -> None:
        """A replica: know the current leader's address (for forwarding), while its lease runs."""
        address = row.address if not row.expired else ""
        if address != self.leader_address:
            self.leader_address = address
            await self._reset_leader_channel()
            log.info("following the leader at %s (term %d, %s)", address or "(none yet)", row.term,
                     holders.describe(row.holder))
        self._set_role("replica")

    def _set_role(self, role: str) -> None:
        if role == self.role:
            return
        log.info("%s: role %s -> %s", self.name, self.role, role)
        self.role = role
        if role in ("leader", "replica"):
            self.ready.set()
        else:
            self.ready.clear()
        self.on_role_change(role)

    def set_index_rules(self, rules: tuple) -> None:
        """New index settings (a reloaded topology): applied now when leading."""
        self.index_rules = tuple(rules)
        if self.shard is not None:
            self.shard.index.configure(self.index_rules)

    # ---- forwarding ----

    async def _reset_leader_channel(self) -> None:
        if self._leader_channel is not None:
            await self._leader_channel.close()
        self._leader_channel = self._leader_stub = None

    def leader_stub(self) -> shard_pb2_grpc.ShardStub:
        """The leader's Shard API, or NOT_LEADER when no leader is known (or it is us, stepping
        down)."""
        if not self.leader_address or self.leader_address == self.address:
            raise errors.NOT_LEADER
        if self._leader_stub is not None and self.peer_tls is not None and self.peer_tls.changed():
            old, self._leader_channel, self._leader_stub = self._leader_channel, None, None
            asyncio.get_running_loop().create_task(old.close(grace=FORWARD_GRACE_S))
            log.info("TLS files changed: new connection to the leader at %s", self.leader_address)
        if self._leader_stub is None:
            if self.peer_tls is None:
                self._leader_channel = grpc.aio.insecure_channel(self.leader_address)
            else:
                try:
                    creds = self.peer_tls.credentials()
                except TLSError as err:  # mid-rotation, say: nothing forwarded, the caller retries
                    log.warning("cannot dial the leader with TLS: %s", err)
                    raise errors.NOT_LEADER from None
                self._leader_channel = grpc.aio.secure_channel(
                    self.leader_address, creds, options=self.peer_tls.options())
            self._leader_stub = instrument_shard_stub(shard_pb2_grpc.ShardStub(self._leader_channel),
                                                      self.name)  # traced and counted
        return self._leader_stub

    def local(self) -> Shard:
        """The shard, when this replica can serve reads."""
        if self.shard is None or not self.ready.is_set():
            raise errors.SHARD_NOT_READY
        return self.shard


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
