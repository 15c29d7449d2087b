"""What kv-router serves: the embedded SQLite shard (default), one shard service (--shard), or
several shards routed by a topology file (--topology), all behind the same shard surface.

With a topology the file is re-read on SIGHUP and when it changes (checked every 2 s). A new
topology is applied only if it keeps every existing key where it is: rules may be appended,
shards added; anything else is refused with the reason logged, and the old topology keeps serving.
"""
from __future__ import annotations

import asyncio
import logging
import os

from backend_sqlite.store import SqliteStore

from kubefabric.index.rules import index_rules
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.rpc.startup import StartupError
from kubefabric.shard.core import Shard, ShardBusy
from kubefabric.shard.leadership import EMBEDDED_LEASE_S
from kubefabric.shard.surface import ShardSurface
from kubefabric.shardsvc.client import connect_shard
from kubefabric.tls import ClientTLS, TLSError
from kubefabric.topology.filewatch import TopologyFileWatch
from kubefabric.topology.load import TopologyError, load_topology
from kubefabric.topology.reload import check_reload, find_moved_key

from .routed import RoutedShards
from .workers import worker_count

log = logging.getLogger("kubefabric.router.shards")


async def open_embedded(data_dir: str, args, name: str = "default",
                        index_rules: tuple = ()) -> ShardSurface:
    """index_rules: the label and field indexes the shard keeps (kubefabric.index.rules), set
    before it leads so that an unchanged topology finds its indexes as it left them."""
    data_dir = os.path.abspath(data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise StartupError(f"--data-dir {data_dir} exists and is not a directory")
    store = SqliteStore(data_dir, synchronous=args.sqlite_synchronous)
    shard = Shard(store, max_txn_ops=args.max_txn_ops, quota_bytes=args.quota_backend_bytes,
                  lease_s=EMBEDDED_LEASE_S)
    shard.index.shard_name = name
    shard.index.configure(index_rules)
    try:
        await shard.open()
    except ShardBusy as err:
        raise StartupError(f"{data_dir}: {err}") from None
    except Exception as err:  # OSError, sqlite3 errors: say which directory and why
        raise StartupError(f"cannot open the data directory {data_dir}: {err}") from None
    log.info("data directory %s", data_dir)
    return shard


async def open_remote(endpoints: str, name: str = "default", tls=None,
                      follow: bool = True) -> ShardSurface:
    try:
        return await connect_shard(endpoints, name, tls, follow)
    except ValueError as err:
        raise StartupError(f"shard {name}: {err}") from None
    except ConnectionError as err:
        raise StartupError(str(err)) from None


def _shard_tls(args):
    """TLS for the --shard endpoints, from the --shard-* flags; None: plaintext."""
    files = [getattr(args, f"shard_{n}", "") for n in ("ca_file", "cert_file", "key_file", "server_name")]
    if not any(files):
        return None
    try:
        return ClientTLS(*files, flag_prefix="--shard-")
    except TLSError as err:
        raise StartupError(str(err)) from None


async def open_spec(spec, args, topology) -> ShardSurface:
    if spec.endpoint == "embedded":
        if worker_count(args) > 1:  # every process would open it: one SQLite file, N writers
            raise StartupError(f"shard {spec.name} is embedded, and --workers {args.workers} "
                               "processes share shard services only: give it a grpc:// endpoint, "
                               "or serve the embedded shard alone (no --topology)")
        if args.watch_hub:
            raise StartupError(f"shard {spec.name} is embedded, and --watch-hub serves watches "
                               "from shard services only: give it a grpc:// endpoint or drop "
                               "--watch-hub")
        return await open_embedded(os.path.join(args.data_dir, spec.name), args, spec.name,
                                   index_rules(topology, spec.name))
    # with a watch-hub, watches are proxied there: no Feed RPC to follow here
    return await open_remote(spec.endpoint, spec.name, spec.tls, follow=not args.watch_hub)


async def open_shards(args) -> ShardSurface:
    """The shard surface kv-router serves, per the flags."""
    if args.topology and args.shard:
        raise StartupError("--topology and --shard exclude each other (name the shard in the topology)")
    shard_tls = _shard_tls(args)
    if shard_tls is not None and not args.shard:
        raise StartupError("--shard-ca-file, --shard-cert-file, --shard-key-file and "
                           "--shard-server-name apply to --shard endpoints only (a topology sets "
                           "TLS per shard with tls:)")
    if args.shard:
        return await open_remote(args.shard, tls=shard_tls, follow=not args.watch_hub)
    if not args.topology:
        if args.watch_hub:
            raise StartupError("--watch-hub needs shard services (--shard or --topology): the "
                               "embedded mode serves watches in-process")
        return await open_embedded(args.data_dir, args)
    try:
        topology = load_topology(args.topology)
    except (TopologyError, OSError) as err:
        raise StartupError(f"--topology: {err}") from None
    for warning in topology.warnings:
        log.warning("topology: %s", warning)
    shards = {}
    try:
        for spec in topology.shards.values():
            shards[spec.name] = await open_spec(spec, args, topology)
    except BaseException:
        for shard in shards.values():
            await shard.close()
        raise
    log.info("topology %s: %d shards, %d rules, default %s", args.topology, len(shards),
             len(topology.rules), topology.default)
    return RoutedShards(topology, shards, args.max_txn_ops, merge=not args.watch_hub)


class TopologyReloader(TopologyFileWatch):
    """Applies appended rules and added shards at runtime; refuses anything that moves keys."""

    task_name = "topology-reload"

    def __init__(self, routed, path: str, args):
        super().__init__(path)
        self.routed = routed
        self.args = args
        self._lock = asyncio.Lock()

    async def reload(self, why: str) -> bool:
        async with self._lock:
            old = self.routed.topology
            try:
                new = load_topology(self.path)
                check_reload(old, new)
                moved = await find_moved_key(old, new, self._list_keys)
                if moved:
                    key, before, after = moved
                    raise TopologyError(f"{self.path}: the new rules would move existing key "
                                        f"{key!r} from shard {before} to shard {after}")
                added = {}
                for name, spec in new.shards.items():
                    if name not in self.routed.shards:
                        added[name] = await open_spec(spec, self.args, new)
            except (TopologyError, OSError, StartupError) as err:
                log.error("topology reload (%s) refused, the old topology keeps serving: %s", why, err)
                return False
            for name, shard in added.items():
                self.routed.add_shard(name, shard)
            self.routed.topology = new
            _configure_indexes(self.routed.shards, new)
            log.info("topology reloaded (%s): %d shards, %d rules", why, len(new.shards), len(new.rules))
            self.routed.misplacement.check("topology reload")
            return True

    async def _list_keys(self, shard_name: str, start: bytes, end: bytes):
        """Existing keys of one shard in [start, end), in pages."""
        shard = self.routed.shards.get(shard_name)
        if shard is None:
            return
        key = start
        while True:
            resp = await shard.range(pb.RangeRequest(key=key, range_end=end or b"\x00", keys_only=True,
                                                     limit=1000))
            for kv in resp.kvs:
                yield kv.key
            if not resp.more:
                return
            key = resp.kvs[-1].key + b"\x00"


def _configure_indexes(shards: dict, topology) -> None:
    """The embedded shard keeps the indexes its rules declare (shard services read the
    topology file themselves: their --topology)."""
    for name, shard in shards.items():
        if isinstance(shard, Shard):
            shard.index.configure(index_rules(topology, name))
