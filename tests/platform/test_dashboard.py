"""deploy/grafana/kubefabric.json names only metrics that exist: `kubefabric serve` in front of a
`kubefabric backend-sqlite` shard service publishing on NATS and a watch-hub, some traffic (puts, a
get, a watch through the hub), then every metric name in the dashboard's expressions must be in
one of their /metrics pages. Also checks the
etcd metric names KubeFabric promises (README "Observe") against the scrape."""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from harness.client import Client
from harness.servers import free_port, start_hub, start_router, start_shard

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "kubefabric.json"

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                "unless", "offset", "inf", "nan"}
ETCD_NAMES = {
    "router": {"grpc_server_started_total", "grpc_server_handled_total", "grpc_server_handling_seconds_bucket",
               "etcd_debugging_mvcc_current_revision", "etcd_debugging_mvcc_watcher_total",
               "etcd_debugging_mvcc_watch_stream_total", "kubefabric_router_shard_requests_total",
               "kubefabric_shard_committed_revision"},
    "shard": {"etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes",
              "etcd_server_proposals_committed_total", "etcd_debugging_mvcc_current_revision",
              "etcd_disk_backend_commit_duration_seconds_bucket", "etcd_server_is_leader",
              "grpc_server_handled_total", "kubefabric_shard_role", "kubefabric_writer_batch_size_bucket",
              "kubefabric_shard_committed_revision", "kubefabric_events_published_revision",
              "kubefabric_events_published_txns_total"},
    "hub": {"grpc_server_handled_total", "etcd_debugging_mvcc_watcher_total",
            "etcd_debugging_mvcc_watch_stream_total", "kubefabric_hub_feed_revision",
            "kubefabric_hub_feed_lag_revisions", "kubefabric_hub_messages_received_total",
            "kubefabric_hub_backfilled_txns_total"},
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, label
    names (inside {...} or by/without (...)), strings, durations or Grafana variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                       # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                      # ranges [5m], [$__rate_interval]
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)                     # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group(0)
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or a keyword
        if expr[max(0, m.start() - 1)].isdigit():
            continue  # 1e3, 0.99
        names.add(word)
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))
    walk(dash["panels"])
    return exprs


def scrape(address: str) -> set[str]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.99, sum by (le, grpc_method) (rate('
                        'grpc_server_handling_seconds_bucket{grpc_service=~"etcdserverpb.*"}'
                        '[$__rate_interval])))') == {"grpc_server_handling_seconds_bucket"}
    assert metric_names("sum(a_total) - sum(b_total{x!=\"y\"}) / 1e3") == {"a_total", "b_total"}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, nats_server):
    work = tmp_path_factory.mktemp("dashboard")
    shard_metrics, router_metrics, hub_metrics = (f"127.0.0.1:{free_port()}" for _ in range(3))
    name = f"dash{time.monotonic_ns() % 10**9}"
    shard = start_shard(work, "sqlite", f"sqlite:///{work / 'shard'}", name=name,
                        extra=["--metrics-address", shard_metrics, "--nats-url", nats_server.url])
    hub = start_hub(work, nats_server.url, [shard], shard_name=name,
                    extra=["--metrics-address", hub_metrics])
    router = start_router(work, [shard], extra=["--metrics-address", router_metrics,
                                                "--watch-hub", f"grpc://{hub.endpoint}"])
    try:
        c = Client(router.endpoint)
        for i in range(5):
            c.put(f"/registry/pods/default/p{i}".encode(), b"v")
        c.get(b"/registry/pods/default/p0")
        done = threading.Event()

        def requests():
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(
                key=b"/registry/pods/", range_end=b"/registry/pods0"))
            done.wait(30)
        watch = c.watch.Watch(requests(), timeout=30)
        assert next(watch).created
        c.put(b"/registry/pods/default/p9", b"v")
        assert next(watch).events
        time.sleep(2.5)  # one sampling round with the watch open (metrics.SAMPLE_INTERVAL_S)
        yield {"router": scrape(router_metrics), "shard": scrape(shard_metrics),
               "hub": scrape(hub_metrics)}
        done.set()
        watch.cancel()
        c.close()
    finally:
        router.stop()
        hub.stop()
        shard.stop()


def test_dashboard_names_only_exported_metrics(scraped):
    exported = scraped["router"] | scraped["shard"] | scraped["hub"]
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    used = set().union(*(metric_names(e) for e in exprs))
    missing = {name: [e for e in exprs if name in metric_names(e)] for name in used - exported}
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"


@pytest.mark.parametrize("service", ["router", "shard", "hub"])
def test_etcd_metric_names(scraped, service):
    assert ETCD_NAMES[service] <= scraped[service], ETCD_NAMES[service] - scraped[service]


def test_router_in_front_of_shard_services_reports_no_database(scraped):
    """A router without a local shard has no database: no size of 0 to mislead a sum."""
    assert "etcd_mvcc_db_total_size_in_bytes" not in scraped["router"]
    assert "etcd_debugging_mvcc_watcher_total" not in scraped["shard"]
