"""The process of `kubefabric migrate` (kv_router.migrate has its flags): open the snapshot
(kubefabric.snapshot.load), open every target shard as its only writer, refuse any that holds
data, then stream the history into them in revision order (kubefabric.shard.importer).

Each key goes to the shard the topology routes it to; leases go to every shard (kv-router grants
a lease on every shard, so that a key anywhere can carry it), the auth store to the default
shard. A failure part-way leaves the targets partly written: the message says so, and the
import is run again into fresh targets.
"""
from __future__ import annotations

import logging
import os
import time

from backend_sqlite.store import SqliteStore

from kubefabric.dsn import DSNError, parse_dsn
from kubefabric.rpc.startup import StartupError
from kubefabric.shard.core import Shard, ShardBusy
from kubefabric.shard.importer import Batch, NotEmpty, Tracker
from kubefabric.snapshot.load import EtcdSnapshot, SnapshotError, open_snapshot
from kubefabric.store.contract import Store
from kubefabric.topology.load import TopologyError, load_topology
from kubefabric.topology.model import Topology

log = logging.getLogger("kubefabric.migrate")

BATCH = 2_000  # changes per writer request: each commits well within the leader lease


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


async def _import(snap: EtcdSnapshot, shards: dict[str, Shard], topology: Topology | None) -> dict[str, int]:
    default = topology.default if topology else "default"
    route = topology.route if topology else (lambda key: default)
    trackers = {name: Tracker() for name in shards}
    pending: dict[str, list] = {name: [] for name in shards}
    counts = dict.fromkeys(shards, 0)
    for change in snap.changes():
        name = route(change.key)
        pending[name].append(change)
        counts[name] += 1
        if len(pending[name]) >= BATCH:
            await shards[name].import_batch(Batch(pending[name]), trackers[name])
            pending[name] = []
    for name, shard in shards.items():
        await shard.import_batch(Batch(pending[name], finish=True, revision=snap.revision,
                                       compact_rev=snap.compact_rev, leases=snap.leases,
                                       auth=snap.auth if name == default else None), trackers[name])
    return counts


async def main(args) -> int:
    try:
        snap = open_snapshot(args.snapshot)
    except SnapshotError as err:
        raise StartupError(str(err)) from None
    try:
        stores, topology = _targets(args)
        started = time.monotonic()
        shards = await _open(stores)
        try:
            log.info("importing %s: %d changes up to revision %d (compacted at %d), %d leases, "
                     "auth %s", snap.path, snap.changes_count, snap.revision, snap.compact_rev,
                     len(snap.leases), "enabled" if snap.auth.enabled else "disabled")
            try:
                counts = await _import(snap, shards, topology)
            except Exception as err:
                log.error("the import failed part-way (%s); the target shards hold part of the "
                          "history: import again into fresh ones", str(err).splitlines()[0])
                return 1
            for name, n in counts.items():
                log.info("shard %s: %d changes, clock at revision %d", name, n, shards[name].state.committed)
            log.info("imported in %.1fs", time.monotonic() - started)
            return 0
        finally:
            for shard in shards.values():
                await shard.close()
    finally:
        snap.close()
