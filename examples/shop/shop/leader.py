"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it:
one holder at a time, taken over only when the holder stopped renewing.

Invariants:
- Every write of the Lease is a replace conditional on the resourceVersion just read, so of two
  candidates racing for it exactly one succeeds (the other gets 409 and stays a candidate).
- Another holder's lease counts as expired only after its record (holder, renewTime,
  resourceVersion) has stayed unchanged for leaseDurationSeconds of *our* clock: clock skew
  between machines cannot make two holders.
- A leader that could not renew for `renew_deadline` (< lease duration) stops leading before any
  other candidate may take over; the caller must then stop acting as leader at once.

The Lease is an ordinary Kubernetes object: on KubeFabric it lives in whichever shard the
topology gives /registry/leases/<namespace>/ (the default shard in the example).
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from shop.model import UNANSWERED

log = logging.getLogger("shop.leader")


class LeaderElector:
    def __init__(self, client: AsyncClient, namespace: str, name: str, identity: str,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0):
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration")
        self.client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self._observed: tuple | None = None   # the other holder's record, as last seen
        self._observed_at = 0.0               # monotonic time it was first seen unchanged

    @property
    def lease_ref(self) -> str:
        return f"lease {self.namespace}/{self.name}"

    async def acquire(self) -> None:
        """Return once this candidate holds the lease."""
        announced = False
        while True:
            try:
                if await self._try_acquire_or_renew():
                    log.info("%s acquired by %s: leading", self.lease_ref, self.identity)
                    return
            except ApiError as err:
                log.warning("%s: %s", self.lease_ref, err.status.message)
            except UNANSWERED as err:
                log.warning("%s: kube-apiserver did not answer: %r", self.lease_ref, err)
            if not announced:
                log.info("%s is held by %s: waiting to take over", self.lease_ref, self._observed[0]
                         if self._observed else "another candidate")
                announced = True
            await asyncio.sleep(self.retry_period)

    async def hold(self) -> None:
        """Renew the lease every retry period; return when leadership is lost."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            try:
                if await self._try_acquire_or_renew():
                    last_renewed = time.monotonic()
                    continue
                log.error("%s was taken by %s: no longer leading", self.lease_ref,
                          self._observed[0] if self._observed else "another candidate")
                return
            except (ApiError, *UNANSWERED) as err:
                log.warning("%s: renewal failed: %r", self.lease_ref, err)
            if time.monotonic() - last_renewed > self.renew_deadline:
                log.error("%s not renewed for %.0fs: no longer leading", self.lease_ref, self.renew_deadline)
                return

    async def release(self) -> None:
        """Hand the lease back (clean shutdown) so a standby takes over at once, not after the
        lease duration. Only if still ours."""
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec.holderIdentity != self.identity:
                return
            lease.spec.holderIdentity = None
            lease.spec.leaseDurationSeconds = 1
            lease.spec.renewTime = now()
            await self.client.replace(lease)
            log.info("%s released", self.lease_ref)
        except (ApiError, *UNANSWERED) as err:
            log.warning("%s: could not release: %r", self.lease_ref, err)

    async def _try_acquire_or_renew(self) -> bool:
        t = now()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            fresh = Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                          spec=LeaseSpec(holderIdentity=self.identity, acquireTime=t, renewTime=t,
                                         leaseDurationSeconds=int(self.lease_duration), leaseTransitions=0))
            return await self._write(self.client.create(fresh))
        spec = lease.spec
        holder = spec.holderIdentity
        if holder != self.identity:
            if holder:
                record = (holder, spec.renewTime, lease.metadata.resourceVersion)
                if record != self._observed:
                    self._observed, self._observed_at = record, time.monotonic()
                duration = spec.leaseDurationSeconds or self.lease_duration
                if time.monotonic() - self._observed_at < duration:
                    return False
                log.info("%s: holder %s stopped renewing %.0fs ago: taking over", self.lease_ref, holder, duration)
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
            spec.acquireTime = t
        spec.holderIdentity = self.identity
        spec.renewTime = t
        spec.leaseDurationSeconds = int(self.lease_duration)
        return await self._write(self.client.replace(lease))

    @staticmethod
    async def _write(call) -> bool:
        try:
            await call
            return True
        except ApiError as err:
            if err.status.code == 409:   # someone else wrote it first
                return False
            raise


def now() -> datetime:
    return datetime.now(timezone.utc)
