"""Leases: grant, revoke, and a keep-alive that renews a lease until stopped and says when it
was lost.

Invariant: `KeepAlive.lost` is set as soon as the lease may have expired on the server (the
server answered TTL <= 0, or no renewal succeeded for a whole TTL since the last one), before or
at the moment the server could hand what it guards to someone else. Holders stop acting on a
lost lease; they never assume a lease they could not renew.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from .connection import Connection
from .errors import ClientError, LeaseLost

log = logging.getLogger("kubefabric.client.lease")


@dataclass(frozen=True)
class Lease:
    id: int
    ttl: int   # seconds, as granted


class Leases:
    def __init__(self, conn: Connection):
        self._conn = conn

    async def grant(self, ttl: int, lease_id: int = 0) -> Lease:
        r = await self._conn.call("Lease", "LeaseGrant", pb.LeaseGrantRequest(TTL=ttl, ID=lease_id),
                                  write=True, what=f"LeaseGrant ttl={ttl}")
        if r.error:
            raise ClientError(f"LeaseGrant: {r.error}")
        return Lease(r.ID, r.TTL)

    async def revoke(self, lease_id: int) -> None:
        await self._conn.call("Lease", "LeaseRevoke", pb.LeaseRevokeRequest(ID=lease_id),
                              write=True, what=f"LeaseRevoke {lease_id:x}")

    async def time_to_live(self, lease_id: int) -> int:
        """Seconds left (-1: the lease does not exist)."""
        r = await self._conn.call("Lease", "LeaseTimeToLive",
                                  pb.LeaseTimeToLiveRequest(ID=lease_id), what="LeaseTimeToLive")
        return r.TTL

    def keep_alive(self, lease: Lease, interval: float | None = None) -> "KeepAlive":
        ka = KeepAlive(self._conn, lease, interval)
        ka.start()
        return ka


class KeepAlive:
    """Renews `lease` every `interval` (default TTL/3) on a LeaseKeepAlive stream, re-opened on
    the next endpoint when it fails, until stop() or until the lease is lost."""

    def __init__(self, conn: Connection, lease: Lease, interval: float | None = None):
        self._conn = conn
        self.lease = lease
        self.interval = interval or max(lease.ttl / 3.0, 0.2)
        self.lost = asyncio.Event()
        self.renewed_at = time.monotonic()   # granted just now
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lease-{self.lease.id:x}")

    @property
    def expires_in(self) -> float:
        """Seconds until the lease expires if no renewal succeeds from now on (a lower bound)."""
        return self.lease.ttl - (time.monotonic() - self.renewed_at)

    async def _run(self) -> None:
        try:
            while self.expires_in > 0:
                index = self._conn.current
                call = self._conn.stub("Lease", index).LeaseKeepAlive()
                try:
                    while True:
                        sent = time.monotonic()
                        await call.write(pb.LeaseKeepAliveRequest(ID=self.lease.id))
                        resp = await asyncio.wait_for(call.read(), max(self.expires_in, 0.01))
                        if resp is grpc.aio.EOF:
                            raise ConnectionError("keep-alive stream ended")
                        if resp.TTL <= 0:
                            raise LeaseLost(f"lease {self.lease.id:x} expired or was revoked")
                        self.renewed_at = sent
                        await asyncio.sleep(self.interval)
                except (grpc.aio.AioRpcError, ConnectionError, asyncio.TimeoutError) as err:
                    log.info("lease %x: keep-alive failed on %s (%s); %.1fs left", self.lease.id,
                             self._conn.endpoints[index], _why(err), max(self.expires_in, 0))
                    self._conn.failover(index)
                    await asyncio.sleep(min(0.2, max(self.expires_in, 0)))
                finally:
                    call.cancel()
            log.warning("lease %x lost: not renewed for its whole TTL (%ds)", self.lease.id,
                        self.lease.ttl)
        except LeaseLost as err:
            log.warning("%s", err)
        finally:
            self.lost.set()

    async def stop(self, revoke: bool = False) -> None:
        """Stop renewing; revoke: also revoke the lease (what it guards is released at once)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if revoke and not self.lost.is_set():
            try:
                await Leases(self._conn).revoke(self.lease.id)
            except ClientError as err:
                log.info("lease %x: revoke failed (%s); it expires within %ds", self.lease.id,
                         err, self.lease.ttl)
        self.lost.set()


def _why(err: BaseException) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return err.details() or err.code().name
    if isinstance(err, asyncio.TimeoutError):
        return "no answer"
    return str(err)
