"""`kubefabric migrate --from-etcd URL`: a live etcd as the source of an import. It reads what
a snapshot would hold, then keeps following until the user stops it (the switch-over: stop the
writers, wait for the log line saying it caught up, Ctrl-C, start KubeFabric).

- The history etcd still has: a watch from revision 1 tells etcd's compaction point C (it is
  refused with C when revision 1 is compacted). The keys at C (each key's newest version at or
  below it, read page by page at revision C) are what etcd's compaction kept; then a watch from
  C + 1 delivers every later change in revision order, and goes on delivering new ones. Sub
  revisions are each change's position among its revision's events (etcd sends a txn's events
  in order); at or below C, where a range does not tell a txn's order, key order.
- On stop, etcd's current revision is read and the watch drained up to it (a progress request
  confirms nothing below it is missing), so the import ends at exactly that revision.
- Leases are read at the end (their TTLs as granted); keys name their lease as they did in etcd.
  etcd's auth store cannot be read through its API (password hashes are not served): users
  and roles are not copied from a live etcd (a snapshot file carries them).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

from kubefabric.client import Compacted, EtcdClient
from kubefabric.etcd.keyrange import ALL
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.snapshot.load import Change

log = logging.getLogger("kubefabric.migrate")

PAGE = 1_000
LOG_EVERY_S = 10.0


def _change(kv, sub: int, deleted: bool) -> Change:
    if deleted:
        return Change(kv.mod_revision, sub, kv.key, 0, 0, 0, True, b"")
    return Change(kv.mod_revision, sub, kv.key, kv.create_revision, kv.version, kv.lease, False, kv.value)


class LiveSource:
    def __init__(self, url: str, stop: asyncio.Event, tls=None):
        """tls: a kubefabric.tls.ClientTLS for an https:// etcd (None: the system's roots)."""
        self.url = url
        self.stop = stop
        self.client = EtcdClient.connect(url, tls)
        self.revision = 1
        self.compact_rev = -1
        self.leases: list[tuple[int, int]] = []
        self.auth = None  # not readable from a live etcd (module docstring)
        self._kept_changes: list[Change] = []  # the keys at etcd's compaction point

    async def _kept(self, compact: int) -> list[Change]:
        kvs = []
        async for page in self.client.kv.pages(ALL, ALL, revision=compact, page_size=PAGE):
            kvs.extend(page.kvs)
        kvs.sort(key=lambda kv: (kv.mod_revision, kv.key))
        out, last, sub = [], 0, 0
        for kv in kvs:
            sub = sub + 1 if kv.mod_revision == last else 0
            last = kv.mod_revision
            out.append(_change(kv, sub, False))
        return out

    async def _watch(self):
        """(the watch from etcd's first retained revision, its first batch or None). etcd
        creates a watcher from a compacted revision, then cancels it with the compaction
        revision: the first read tells (a progress request makes an idle etcd answer)."""
        w = self.client.watch(ALL, ALL, start_revision=1, progress_notify=True)
        try:
            await w.start()
            await w.request_progress()
            return w, await w.__anext__()
        except Compacted as c:
            await w.close()
            self.compact_rev = c.compact_revision
        log.info("etcd at %s is compacted at revision %d: reading its keys there", self.url, self.compact_rev)
        self._kept_changes = await self._kept(self.compact_rev)
        self.revision = self.compact_rev
        w = self.client.watch(ALL, ALL, start_revision=self.compact_rev + 1, progress_notify=True)
        await w.start()
        return w, None

    def _changes_of(self, batch) -> list[Change]:
        out: list[Change] = []
        last, sub = 0, 0
        for ev in batch.events:  # a response never splits a revision (kubefabric.client.watch)
            sub = sub + 1 if ev.kv.mod_revision == last else 0
            last = ev.kv.mod_revision
            out.append(_change(ev.kv, sub, ev.type == Event.DELETE))
        # only a progress notification vouches for its header revision: an events response's
        # header may be ahead of events still to come (etcd's syncWatchers)
        self.revision = max(self.revision, batch.revision if batch.progress else last)
        return out

    async def changes(self) -> AsyncIterator[list[Change]]:
        """Lists of changes in revision order, until stopped and drained."""
        self._kept_changes = []
        head = (await self.client.kv.range(ALL, ALL, count_only=True)).revision
        watch, first = await self._watch()
        if self._kept_changes:
            yield self._kept_changes
        log.info("copying etcd's history up to revision %d, then following it; stop with "
                 "Ctrl-C (SIGINT or SIGTERM) once its writers are stopped", head)
        caught_up, logged, until = False, time.monotonic(), 0
        stopping = asyncio.ensure_future(self.stop.wait())
        step: asyncio.Future | None = None  # the pending read: never cancelled mid-stream
        try:
            while not (until and self.revision >= until):
                if first is not None:
                    batch, first = first, None
                else:
                    if step is None:
                        step = asyncio.ensure_future(watch.__anext__())
                    done, _ = await asyncio.wait({step} if until else {step, stopping},
                                                 timeout=1.0 if until else None,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if step not in done:
                        if not until:  # stopped: drain up to etcd's revision as of now
                            until = (await self.client.kv.range(ALL, ALL, count_only=True)).revision
                            log.info("stopping: importing etcd's changes up to revision %d", until)
                        await watch.request_progress()  # answered once all below is sent
                        continue
                    batch, step = step.result(), None
                out = self._changes_of(batch)
                if out:
                    yield out
                if not caught_up and self.revision >= head:
                    caught_up = True
                    log.info("caught up with etcd at revision %d; following", self.revision)
                if time.monotonic() - logged >= LOG_EVERY_S:
                    logged = time.monotonic()
                    log.info("following etcd at revision %d", self.revision)
        finally:
            stopping.cancel()
            if step is not None:
                step.cancel()
            await watch.close()

    async def finish(self) -> None:
        """Read the leases (after the changes)."""
        resp = await self.client.conn.call("Lease", "LeaseLeases", pb.LeaseLeasesRequest())
        for lease in resp.leases:
            ttl = await self.client.conn.call("Lease", "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=lease.ID))
            if ttl.TTL > 0:
                self.leases.append((lease.ID, ttl.grantedTTL))

    async def close(self) -> None:
        await self.client.close()
