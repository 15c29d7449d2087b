"""Prometheus metrics of every KubeFabric service, and the /metrics HTTP endpoint.

Names follow etcd where etcd has the metric (same name, type and labels, so etcd dashboards and
alerts keep working): the mvcc/server gauges, the go-grpc-prometheus server metrics. KubeFabric's
own metrics are `kubefabric_*`. Everything lives in prometheus-client's default registry.

Gauges of state (revisions, sizes, roles, watchers) are sampled on the event loop every
SAMPLE_INTERVAL_S by the sources registered with `add_source`, never on a request's path.

Metrics of a database (STORAGE) are exported only by a process that holds one (a shard service,
or `kubefabric serve` with an embedded shard), watch gauges (WATCH) only by kv-router: a router
in front of shard services does not report a database size of 0.
"""
from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left

import prometheus_client
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

prometheus_client.disable_created_metrics()  # no *_created series (etcd has none)

log = logging.getLogger("kubefabric.telemetry")

SAMPLE_INTERVAL_S = 2.0

# ---- gRPC server (go-grpc-prometheus names, as etcd exports them) ----

# etcd's buckets for grpc_server_handling_seconds (go-grpc-prometheus defaults)
_GRPC_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")



class MethodCounts:
    """One method's calls: plain numbers, updated on the event loop without a lock (the only
    writer) and read by the /metrics thread at a scrape (which may see a call started and not
    yet handled, as with prometheus-client's own metrics)."""

    __slots__ = ("labels", "started", "handled", "buckets", "sum")

    def __init__(self, labels: tuple[str, str, str]):
        self.labels = labels
        self.started = 0
        self.handled: dict[str, int] = {}  # grpc_code -> calls
        self.buckets = [0] * (len(_GRPC_BUCKETS) + 1)  # per bucket (not cumulative); last: +Inf
        self.sum = 0.0

    def done(self, code: str, seconds: float) -> None:
        self.handled[code] = self.handled.get(code, 0) + 1
        self.buckets[bisect_left(_GRPC_BUCKETS, seconds)] += 1  # le: a value on a bound is in it
        self.sum += seconds


class GrpcServerMetrics:
    """grpc_server_started_total, grpc_server_handled_total and grpc_server_handling_seconds
    (go-grpc-prometheus), counted per method in MethodCounts and made into samples only when
    /metrics is scraped: a prometheus-client child takes a lock on each of its three updates
    per call, the counts here are additions."""

    def __init__(self):
        self.methods: list[MethodCounts] = []

    def method(self, grpc_type: str, service: str, method: str) -> MethodCounts:
        counts = MethodCounts((grpc_type, service, method))
        self.methods.append(counts)
        return counts

    def collect(self):
        started = CounterMetricFamily("grpc_server_started", "Total number of RPCs started on the server.",
                                      labels=GRPC_LABELS)
        handled = CounterMetricFamily(
            "grpc_server_handled", "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=(*GRPC_LABELS, "grpc_code"))
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            labels=GRPC_LABELS)
        for m in list(self.methods):
            started.add_metric(m.labels, m.started)
            for code, n in list(m.handled.items()):
                handled.add_metric((*m.labels, code), n)
            cumulative, total = [], 0
            for bound, n in zip((*_GRPC_BUCKETS, float("inf")), list(m.buckets)):
                total += n
                cumulative.append((floatToGoString(bound), total))
            seconds.add_metric(m.labels, cumulative, m.sum)
        yield from (started, handled, seconds)


grpc_server = GrpcServerMetrics()
REGISTRY.register(grpc_server)

# ---- etcd's mvcc and server metrics ----

db_total_size = Gauge("etcd_mvcc_db_total_size_in_bytes",
                      "Total size of the underlying database physically allocated in bytes.", registry=None)
db_total_size_in_use = Gauge("etcd_mvcc_db_total_size_in_use_in_bytes",
                             "Total size of the underlying database logically in use in bytes.", registry=None)
current_revision = Gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.")
compact_revision = Gauge("etcd_debugging_mvcc_compact_revision",
                         "The revision of the last compaction in store.")
# etcd declares these two as gauges named *_total; kept as they are
proposals_committed = Gauge("etcd_server_proposals_committed_total",
                            "The total number of consensus proposals committed.", registry=None)
proposals_applied = Gauge("etcd_server_proposals_applied_total",
                          "The total number of consensus proposals applied.", registry=None)
proposals_failed = Counter("etcd_server_proposals_failed",
                           "The total number of failed proposals seen.", registry=None)
has_leader = Gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", registry=None)
is_leader = Gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", registry=None)
quota_backend_bytes = Gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.", registry=None)
backend_commit_seconds = Histogram(
    "etcd_disk_backend_commit_duration_seconds", "The latency distributions of commit called by backend.",
    buckets=tuple(0.001 * 2 ** i for i in range(14)), registry=None)
watch_streams = Gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", registry=None)
watchers = Gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", registry=None)

# ---- KubeFabric ----

ROLES = ("starting", "leader", "replica")
shard_committed_revision = Gauge("kubefabric_shard_committed_revision",
                                 "The shard's committed (closed) revision, as this process sees it.", ("shard",))
shard_compact_revision = Gauge("kubefabric_shard_compact_revision",
                               "The shard's compaction revision, as this process sees it.", ("shard",))
shard_role = Gauge("kubefabric_shard_role",
                   "1 for this replica's current role in its shard (starting, leader, replica), 0 for the others.",
                   ("shard", "role"), registry=None)
shard_db_size = Gauge("kubefabric_shard_db_size_bytes",
                      "Bytes allocated by the shard's database (this process's shards).", ("shard",), registry=None)
writer_batch_size = Histogram("kubefabric_writer_batch_size",
                              "Write requests committed together in one database transaction (group commit).",
                              buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=None)
router_shard_requests = Counter("kubefabric_router_shard_requests",
                                "Calls from this process to shard services, by shard, method and gRPC code.",
                                ("shard", "method", "code"))
router_shard_request_seconds = Histogram(
    "kubefabric_router_shard_request_seconds", "Latency of calls from this process to shard services.",
    ("shard", "method"), buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))
# the event bus (DESIGN §5): sampled from the publisher (shard leaders) and the hub's subscriptions
events_published_revision = Gauge(
    "kubefabric_events_published_revision",
    "The shard's revision up to which every committed txn is on its NATS stream (this leader).",
    ("shard",), registry=None)
events_published_txns = Gauge(
    "kubefabric_events_published_txns_total", "Txns this process published on NATS.", ("shard",),
    registry=None)
hub_feed_revision = Gauge(
    "kubefabric_hub_feed_revision",
    "The revision up to which this hub delivered the shard's txns to its watchers.", ("shard",),
    registry=None)
hub_feed_lag = Gauge(
    "kubefabric_hub_feed_lag_revisions",
    "How far this hub's feed of the shard trails the newest revision the shard reported.",
    ("shard",), registry=None)
hub_messages = Gauge(
    "kubefabric_hub_messages_received_total", "NATS messages (events and heartbeats) this hub "
    "received from the shard.", ("shard",), registry=None)
hub_backfilled_txns = Gauge(
    "kubefabric_hub_backfilled_txns_total", "Txns this hub read from the shard's History RPC "
    "because the stream missed them (gaps, lost messages, NATS down).", ("shard",), registry=None)


misplaced_keys = Gauge(
    "kubefabric_topology_misplaced_keys", "Keys this shard holds that the topology routes to "
    "another shard, as the last scan (or a read) found them: reads skip them; move them "
    "(docs/topology.md).", ("shard",))

# every process: a count that only grows under a steady load is a leak (a task that outlived
# the stream or request it served)
asyncio_tasks = Gauge("kubefabric_asyncio_tasks", "Asyncio tasks not yet done in this process "
                      "(requests, streams, background loops).")


STORAGE = (db_total_size, db_total_size_in_use, proposals_committed, proposals_applied,
           proposals_failed, has_leader, is_leader, quota_backend_bytes, backend_commit_seconds,
           shard_role, shard_db_size, writer_batch_size)
WATCH = (watch_streams, watchers)
EVENTS = (events_published_revision, events_published_txns)
HUB = (hub_feed_revision, hub_feed_lag, hub_messages, hub_backfilled_txns)
_registered: set[int] = set()


def export(group) -> None:
    """Export a group of metrics (STORAGE, WATCH) from this process; idempotent."""
    for metric in group:
        if id(metric) not in _registered:
            REGISTRY.register(metric)
            _registered.add(id(metric))


def batch_committed(size: int, commit_seconds: float) -> None:
    """The writer committed `size` requests in one transaction; COMMIT took `commit_seconds`."""
    writer_batch_size.observe(size)
    backend_commit_seconds.observe(commit_seconds)
    proposals_committed.inc(size)
    proposals_applied.inc(size)


def batch_failed() -> None:
    proposals_failed.inc()


# ---- the endpoint and the sampler ----

_sources: list = []
_sampler: asyncio.Task | None = None


def add_source(sample) -> None:
    """`sample()` sets gauges from live state; called on the event loop, at start and then every
    SAMPLE_INTERVAL_S. It must be quick and must not block."""
    _sources.append(sample)
    _run_source(sample)


def _run_source(sample) -> None:
    try:
        sample()
    except Exception:  # a half-started service: try again next time
        log.debug("metrics source %r failed", sample, exc_info=True)


async def _sample_forever() -> None:
    while True:
        await asyncio.sleep(SAMPLE_INTERVAL_S)
        asyncio_tasks.set(len(asyncio.all_tasks()))
        for sample in list(_sources):
            _run_source(sample)


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(address: str) -> bool:
    """Serve /metrics on host:port (prometheus-client's HTTP server, in its own thread) and start
    sampling; '' disables. A port that cannot be bound is logged, not fatal: the service keeps
    serving without /metrics. True if the endpoint is up."""
    global _sampler
    if not address:
        return False
    host, port = parse_address(address)
    try:
        start_http_server(port, addr=host)
    except OSError as err:
        log.error("cannot serve /metrics on %s: %s; serving without metrics (set --metrics-address)",
                  address, err.strerror or err)
        return False
    if _sampler is None:
        _sampler = asyncio.get_running_loop().create_task(_sample_forever(), name="metrics-sampler")
    log.info("serving Prometheus /metrics on http://%s/metrics", address)
    return True
