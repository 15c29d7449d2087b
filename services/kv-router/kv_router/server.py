"""Wiring of the etcd v3 gRPC server: services, health, gRPC settings (DESIGN §6)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlparse

from kubefabric.auth.tokens import SimpleTokens
from kubefabric.query.service import add_to_server as add_query_service
from kubefabric.rpc.handlers import DEADLINE, DEFAULT_REQUEST_TIMEOUT_S, GATE
from kubefabric.rpc.limits import DEFAULT_MAX_REQUEST_BYTES, max_message_bytes
from kubefabric.rpc.server import Keepalive, listen, make_server
from kubefabric.rpc.startup import StartupError
from kubefabric.rpc.wire import register
from kubefabric.shard.surface import ShardSurface
from kubefabric.tls import CertificateReloader
from kubefabric.watch.registry import WatcherRegistry
from kubefabric.watch.service import DEFAULT_MAX_STREAMS_PER_CONNECTION, WatchService
from kubefabric.watch.stream import DEFAULT_MAX_WATCHERS

from kubefabric.proto.v3electionpb import v3election_pb2
from kubefabric.proto.v3lockpb import v3lock_pb2

from .auth import DEFAULT_BCRYPT_COST, AuthService
from .authguard import AuthGuard
from .concurrency import Recipe
from .election import ElectionService
from .health import HealthService
from .keywatch import HubWatch, RegistryWatch
from .kv import KVService
from .lease import LeaseService
from .lock import LockService
from .maintenance import ClusterService, MaintenanceService
from .tls import is_tls_url
from .watchproxy import WatchProxy

log = logging.getLogger("kubefabric.router")


@dataclass
class ServerConfig:
    listen_client_urls: list[str]
    advertise_client_urls: list[str]
    name: str = "default"
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    keepalive: Keepalive = field(default_factory=Keepalive)
    progress_interval_s: float = 600.0
    watch_buffer_bytes: int = 64 * 1024 * 1024
    max_watchers_per_stream: int = DEFAULT_MAX_WATCHERS
    max_watch_streams_per_connection: int = DEFAULT_MAX_STREAMS_PER_CONNECTION
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S  # 0: no server-side limit
    watch_hub: str = ""  # grpc://host:port[,...]: watches are proxied to watch-hubs
    peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    tls: CertificateReloader | None = None  # credentials for the https:// URLs
    auth_tokens: object = None  # kubefabric.auth.tokens provider (default: simple tokens)
    client_cert_auth: bool = False  # the client certificate's CN is the etcd user (etcd's rule)
    bcrypt_cost: int = DEFAULT_BCRYPT_COST
    reuse_port: bool = False  # the client ports are shared with other processes (--workers)


def listen_address(url: str) -> str:
    """host:port for grpc from an etcd-style client URL (http(s)://host:port or host:port)."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme in {url!r}: use http:// or https://")
    host = parsed.hostname or "127.0.0.1"
    if parsed.port is None:
        raise ValueError(f"{url!r} has no port")
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parsed.port}"


class RouterServer:
    def __init__(self, shard: ShardSurface, cfg: ServerConfig) -> None:
        self.shard = shard
        self.cfg = cfg
        # watches: relayed to watch-hubs (proxy), or served here from a registry of watchers
        self.proxy: WatchProxy | None = None
        self.registry: WatcherRegistry | None = None
        self.watch: WatchProxy | WatchService
        if cfg.watch_hub:
            self.watch = self.proxy = WatchProxy(cfg.watch_hub, shard.state,
                                                 max_message_bytes(cfg.max_request_bytes),
                                                 cfg.max_watch_streams_per_connection)
        else:
            self.registry = WatcherRegistry(shard, cfg.progress_interval_s)
            # etcd splits fragmented watch responses at its gRPC receive limit, not the request limit
            self.watch = WatchService(self.registry, shard.state.fill,
                                      max_message_bytes(cfg.max_request_bytes),
                                      cfg.watch_buffer_bytes, cfg.max_watchers_per_stream,
                                      cfg.max_watch_streams_per_connection)
        self.auth = AuthGuard(shard, cfg.auth_tokens or SimpleTokens(), cfg.client_cert_auth)
        self.watch.authorize = self.auth.watch_refusal
        DEADLINE.seconds = cfg.request_timeout_s or None
        self.server, self.health = make_server(cfg.max_request_bytes, keepalive=cfg.keepalive,
                                               health_service=HealthService(),
                                               reuse_port=cfg.reuse_port)
        kv = KVService(shard, cfg.max_request_bytes, self.auth)
        register(self.server, "KV", kv)
        register(self.server, "Watch", self.watch)
        self.lease = LeaseService(shard, self.auth)
        register(self.server, "Lease", self.lease)
        register(self.server, "Maintenance", MaintenanceService(shard, self.auth))
        register(self.server, "Cluster",
                 ClusterService(shard, cfg.name, cfg.advertise_client_urls, cfg.peer_urls))
        register(self.server, "Auth", AuthService(shard, self.auth, cfg.bcrypt_cost))
        # etcd's server-side concurrency API (v3lock, v3election): its recipe on this KV
        keywatch = HubWatch(self.proxy) if self.proxy is not None else RegistryWatch(self.registry)
        self.recipe = Recipe(shard, self.auth, keywatch, cfg.max_request_bytes)
        self.election = ElectionService(self.recipe)
        register(self.server, "Lock", LockService(self.recipe), v3lock_pb2)
        register(self.server, "Election", self.election, v3election_pb2)
        add_query_service(self.server, shard)  # KubeFabric's own Query API (not etcd's)
        self.addresses = [listen_address(u) for u in cfg.listen_client_urls]

    async def start(self) -> None:
        """Listen on every URL (StartupError when one cannot be served) and answer SERVING."""
        ports = []
        for url, addr in zip(self.cfg.listen_client_urls, self.addresses):
            if not is_tls_url(url):
                ports.append((addr, None))
            elif self.cfg.tls is None:
                raise StartupError(f"--listen-client-urls: {url} is https:// and needs --cert-file "
                                   "and --key-file")
            else:
                ports.append((addr, self.cfg.tls.credentials()))
        await self.auth.refresh()  # enforce the stored auth rules from the first call on
        self.auth.start()
        if self.registry is not None:
            self.registry.start()
        try:
            await listen(self.server, ports, "--listen-client-urls")
        except StartupError:
            if self.registry is not None:
                await self.registry.stop()
            raise
        await self.health.mark([""], serving=True)
        log.info("serving the etcd v3 API on %s", ", ".join(self.addresses))
        if self.proxy is not None:
            log.info("watch streams are relayed to watch-hub %s", ", ".join(self.proxy.endpoints))

    async def stop(self, grace: float = 10.0) -> None:
        """Refuse new calls (UNAVAILABLE), let in-flight ones finish, end streams cleanly."""
        await self.health.enter_graceful_shutdown()
        # waits for a lock or a leadership end now (etcd's 'server stopped'): the drain would
        # otherwise sit out its whole grace for them
        self.recipe.close_all()
        self.election.close_all()
        await GATE.drain(grace)
        self.watch.close_all()
        self.lease.close_all()
        self.auth.stop()
        if self.registry is not None:
            await self.registry.stop()
        await self.server.stop(grace)
        if self.proxy is not None:
            await self.proxy.close()
