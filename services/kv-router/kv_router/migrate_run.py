"""The process of `kubefabric migrate` (kv_router.migrate has its flags): open the source (a
snapshot file, kubefabric.snapshot.load, or a live etcd, kv_router.migrate_live), open every
target shard as its only writer, refuse any that holds data, then stream the history into them
in revision order (kubefabric.shard.importer).

Each key goes to the shard the topology routes it to; leases go to every shard (kv-router grants
a lease on every shard, so that a key anywhere can carry it), the auth store to the default
shard. A failure part-way leaves the targets partly written: the message says so, and the
import is run again into fresh targets.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import AsyncIterator

from backend_sqlite.store import SqliteStore

from kubefabric.client import ClientError
from kubefabric.dsn import DSNError, parse_dsn
from kubefabric.rpc.startup import StartupError
from kubefabric.shard.core import Shard, ShardBusy
from kubefabric.shard.importer import Batch, NotEmpty, Tracker
from kubefabric.snapshot.load import Change, EtcdSnapshot, SnapshotError, open_snapshot
from kubefabric.store.contract import Store
from kubefabric.tls import ClientTLS, TLSError
from kubefabric.topology.load import TopologyError, load_topology
from kubefabric.topology.model import Topology

from .migrate_live import LiveSource

log = logging.getLogger("kubefabric.migrate")

BATCH = 2_000  # changes per writer request from a file: each commits well within the leader lease


def _dsns(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, dsn = part.partition("=")
        if not sep or not name or not dsn:
            raise StartupError(f"--shard-dsn: {part.split('://')[0]!r}... is not NAME=DSN")
        out[name] = dsn
    return out


def _store_of(dsn_text: str, name: str) -> Store:
    try:
        dsn = parse_dsn(dsn_text)
    except DSNError as err:
        raise StartupError(f"--shard-dsn {name}: {err}") from None
    if dsn.kind == "sqlite":
        return SqliteStore(dsn.database)
    # the server backends are service packages kv-router does not depend on: installed with
    # them (the image, the workspace), else one line saying which is missing
    try:
        if dsn.kind == "postgres":
            from backend_pg.store import PostgresStore
            return PostgresStore(dsn, read_pool_size=1)
        from backend_mysql.store import MysqlStore
        return MysqlStore(dsn, read_pool_size=1)
    except ImportError as err:
        raise StartupError(f"--shard-dsn {name}: {dsn.kind} shards need the {err.name} package "
                           f"(installed with its backend service)") from None


def _targets(args) -> tuple[dict[str, Store], Topology | None]:
    """(shard name -> store, topology or None)."""
    stores: dict[str, Store] = {}
    if not args.topology:
        if args.shard_dsn:
            raise StartupError("--shard-dsn needs --topology (without it the target is --data-dir)")
        stores["default"] = SqliteStore(os.path.abspath(args.data_dir))
        return stores, None
    try:
        topology = load_topology(args.topology)
    except TopologyError as err:
        raise StartupError(f"--topology: {err}".replace("\n", "; ")) from None
    dsns = _dsns(args.shard_dsn)
    unknown = sorted(set(dsns) - set(topology.shards))
    if unknown:
        raise StartupError(f"--shard-dsn names {', '.join(unknown)}, not shards of {args.topology}")
    for name, spec in topology.shards.items():
        if spec.embedded:
            stores[name] = SqliteStore(os.path.join(os.path.abspath(args.data_dir), name))
        elif name in dsns:
            stores[name] = _store_of(dsns[name], name)
        else:
            raise StartupError(f"shard {name} of {args.topology} is a service: give its database "
                               f"with --shard-dsn {name}=DSN")
    return stores, topology


async def _open(stores: dict[str, Store]) -> dict[str, Shard]:
    shards: dict[str, Shard] = {}
    try:
        for name, store in stores.items():
            shard = Shard(store)
            try:
                await shard.open()
            except ShardBusy as err:
                raise StartupError(f"shard {name}: {err} (stop its server first)") from None
            shards[name] = shard
            try:
                await shard.check_empty()
            except NotEmpty as err:
                raise StartupError(f"shard {name}: {err}") from None
    except BaseException:
        for shard in shards.values():
            await shard.close()
        raise
    return shards


class FileSource:
    """An etcd snapshot file (kubefabric.snapshot.load) as a source of changes."""

    def __init__(self, snap: EtcdSnapshot):
        self.snap = snap
        self.revision, self.compact_rev = snap.revision, snap.compact_rev
        self.leases, self.auth = snap.leases, snap.auth

    async def changes(self) -> AsyncIterator[list[Change]]:
        chunk: list[Change] = []
        for change in self.snap.changes():
            chunk.append(change)
            if len(chunk) >= BATCH:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    async def finish(self) -> None:
        pass

    async def close(self) -> None:
        self.snap.close()


async def _import(source, shards: dict[str, Shard], topology: Topology | None,
                  counts: dict[str, int]) -> None:
    """Every change of `source` onto its shard, in order (counted into `counts`); then each
    shard's clock, compaction point and leases (and the default shard's auth store)."""
    default = topology.default if topology else "default"
    route = topology.route if topology else (lambda key: default)
    trackers = {name: Tracker() for name in shards}
    async for changes in source.changes():
        routed: dict[str, list[Change]] = {}
        for change in changes:
            routed.setdefault(route(change.key), []).append(change)
        for name, part in routed.items():
            await shards[name].import_batch(Batch(part), trackers[name])
            counts[name] += len(part)
    await source.finish()
    for name, shard in shards.items():
        await shard.import_batch(Batch([], finish=True, revision=source.revision,
                                       compact_rev=source.compact_rev, leases=source.leases,
                                       auth=source.auth if name == default else None), trackers[name])


def _source(args, stop: asyncio.Event):
    if bool(args.snapshot) == bool(args.from_etcd):
        raise StartupError("give either an etcd snapshot file or --from-etcd URL")
    if args.from_etcd:
        files = (args.from_etcd_ca_file, args.from_etcd_cert_file, args.from_etcd_key_file)
        if any(files) and not args.from_etcd.startswith("https://"):
            raise StartupError("--from-etcd-* certificate files need an https:// --from-etcd URL")
        try:
            tls = ClientTLS(*files, flag_prefix="--from-etcd-") if any(files) else None
        except TLSError as err:
            raise StartupError(str(err)) from None
        return LiveSource(args.from_etcd, stop, tls)
    try:
        snap = open_snapshot(args.snapshot)
    except SnapshotError as err:
        raise StartupError(str(err)) from None
    log.info("importing %s: %d changes up to revision %d (compacted at %d), %d leases, auth %s",
             snap.path, snap.changes_count, snap.revision, snap.compact_rev, len(snap.leases),
             "enabled" if snap.auth.enabled else "disabled")
    return FileSource(snap)


async def main(args) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    source = _source(args, stop)
    try:
        stores, topology = _targets(args)
        started = time.monotonic()
        shards = await _open(stores)
        try:
            counts = dict.fromkeys(shards, 0)
            try:
                await _import(source, shards, topology, counts)
            except (ClientError, OSError) as err:
                why = str(err).splitlines()[0]
                if not any(counts.values()):
                    log.error("cannot copy from %s: %s (nothing imported)", args.from_etcd or args.snapshot, why)
                else:
                    log.error("the import failed part-way (%s); the target shards hold part of "
                              "the history: import again into fresh ones", why)
                return 1
            for name, n in counts.items():
                log.info("shard %s: %d changes, clock at revision %d", name, n, shards[name].state.committed)
            log.info("imported up to revision %d in %.1fs", source.revision, time.monotonic() - started)
            return 0
        finally:
            for shard in shards.values():
                await shard.close()
    finally:
        await source.close()
