"""Request metrics under kube-apiserver's names (apiserver_request_total,
apiserver_request_duration_seconds), so its dashboards and alerts read this server too; and the
server's own kubefabric_aggregation_* gauges. Served on --metrics-address by kubefabric.telemetry."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LABELS = ("verb", "group", "version", "resource", "subresource", "scope", "component", "code")
_DURATION_LABELS = ("verb", "group", "version", "resource", "subresource", "scope", "component")
# kube-apiserver's buckets for apiserver_request_duration_seconds
_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10,
            15, 20, 30, 45, 60)

requests = Counter("apiserver_request", "Counter of apiserver requests broken out for each verb, "
                   "dry run value, group, version, resource, scope, component, and HTTP response code.",
                   _LABELS)
durations = Histogram("apiserver_request_duration_seconds", "Response latency distribution in "
                      "seconds for each verb, group, version, resource, subresource, scope and component.",
                      _DURATION_LABELS, buckets=_BUCKETS)
watches = Gauge("kubefabric_aggregation_watches", "Watch requests being served, by resource.",
                ("group", "resource"))
store_errors = Counter("kubefabric_aggregation_store_errors", "Calls to the data layer that failed, "
                       "by operation.", ("operation",))
resources_served = Gauge("kubefabric_aggregation_resources", "Resources (CRDs) this server serves.")


def _scope(info) -> str:
    if not info.resource_request:
        return ""
    if info.name:
        return "resource"
    return "namespace" if info.namespace else "cluster"


def observe(method: str, info, code: int, seconds: float) -> None:
    verb = info.verb.upper() if info.resource_request else method.upper()
    if info.verb == "watch":
        verb = "WATCH"
    elif info.verb == "list":
        verb = "LIST"
    elif verb == "DELETECOLLECTION":
        verb = "DELETE"
    elif verb in ("GET", "CREATE", "UPDATE"):
        verb = {"GET": "GET", "CREATE": "POST", "UPDATE": "PUT"}[verb]
    labels = (verb, info.group, info.version, info.resource, info.subresource, _scope(info),
              "apiserver")
    requests.labels(*labels, str(code)).inc()
    if info.verb != "watch":
        durations.labels(*labels).observe(seconds)
