"""kube-apiserver's own account of a measured window of bench/aggregation.py: its /metrics
scraped before and after, the difference of the resource's series summarised as where its lists
were served (watch cache or etcd), how long consistent lists waited for the cache to catch up
with etcd, whether the cache re-initialised, and the etcd requests it made.

    before = scrape(api, group)
    ...                                   # the window
    summary(delta(before, scrape(api, group)))
"""
from __future__ import annotations

import re

from agg_bulk import request

SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')
KEPT = ("apiserver_storage_list_", "apiserver_watch_cache_", "apiserver_request_total",
        "apiserver_request_terminations_total", "etcd_request_duration_seconds_sum",
        "etcd_request_duration_seconds_count", "etcd_request_errors_total")


def scrape(api, group: str) -> dict[str, float]:
    """The resource's counters (series naming its group), histograms without their buckets."""
    code, body = request(api, "/metrics", accept="text/plain", timeout=60)
    if code != 200:
        return {}
    out = {}
    for line in body.decode().splitlines():
        if group not in line or "_bucket{" in line:
            continue
        m = SERIES.match(line)
        if m and m.group(1).startswith(KEPT):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def _sum(d: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for series, v in d.items():
        if series.split("{")[0] != name:
            continue
        have = dict(LABEL.findall(series))
        if all(have.get(k) == want for k, want in labels.items()):
            total += v
    return total


def summary(d: dict[str, float]) -> dict:
    """The few numbers that say how kube-apiserver served the window's lists."""
    cache_lists = _sum(d, "apiserver_storage_list_total", storage="watchcache")
    waits = _sum(d, "apiserver_watch_cache_read_wait_seconds_count")
    out = {
        "lists_from_watch_cache": int(cache_lists),
        "lists_from_etcd": int(_sum(d, "apiserver_storage_list_total", storage="etcd")),
        "objects_scanned_per_cached_list": round(_sum(d, "apiserver_storage_list_fetched_objects_total",
                                                      storage="watchcache") / cache_lists) if cache_lists else 0,
        "consistent_reads_fallback_to_etcd": int(_sum(d, "apiserver_watch_cache_consistent_read_total",
                                                      fallback="true")),
        "consistent_reads_failed": int(_sum(d, "apiserver_watch_cache_consistent_read_total", success="false")),
        "cache_read_wait_avg_ms": round(1000 * _sum(d, "apiserver_watch_cache_read_wait_seconds_sum") / waits)
        if waits else 0,
        "watch_cache_initializations": int(_sum(d, "apiserver_watch_cache_initializations_total")),
        "responses_5xx": int(sum(v for k, v in d.items() if k.startswith("apiserver_request_total{")
                                 and re.search(r'code="5', k))),
        "etcd_ms_avg": {},
    }
    for series, n in d.items():
        if series.startswith("etcd_request_duration_seconds_count{") and n:
            op = dict(LABEL.findall(series))["operation"]
            s = d.get(series.replace("_count{", "_sum{"), 0.0)
            out["etcd_ms_avg"][f"{op} x{int(n)}"] = round(1000 * s / n, 1)
    return out
