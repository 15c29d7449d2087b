"""The trigger service's Prometheus metrics (kubefabric_trigger_*), labelled by trigger
(namespace/name). Exported on --metrics-address with the shared /metrics endpoint."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_L = ("trigger",)
delivered = Counter("kubefabric_trigger_events_delivered", "Events a function accepted (2xx).", _L)
attempts = Counter("kubefabric_trigger_delivery_attempts",
                   "HTTP attempts, by result: the status code, or 'error' without an answer.",
                   ("trigger", "result"))
failed = Counter("kubefabric_trigger_delivery_failures",
                 "Failed attempts (non-2xx, refused, timed out, request not buildable).", _L)
dead_lettered = Counter("kubefabric_trigger_events_dead_lettered",
                        "Events stored in the dead-letter queue after their last attempt.", _L)
discarded = Counter("kubefabric_trigger_events_discarded",
                    "Events dropped after their last attempt (deadLetter.policy: discard).", _L)
filter_errors = Counter("kubefabric_trigger_filter_errors",
                        "Events skipped because eventFilter/celFilter failed or the object did "
                        "not decode.", _L)
relists = Counter("kubefabric_trigger_relists",
                  "Re-lists after a compaction gap (the watch's start revision was compacted).", _L)
replayed = Counter("kubefabric_trigger_events_replayed", "Dead letters delivered by a replay.", _L)
lag = Gauge("kubefabric_trigger_lag_revisions",
            "How far the trigger's watermark trails the newest revision its feed reported.", _L)
watermark = Gauge("kubefabric_trigger_watermark_revision",
                  "Every event at or below it was delivered or dead-lettered (this replica).", _L)
pending = Gauge("kubefabric_trigger_pending_events", "Events read and not yet done.", _L)
request_seconds = Histogram("kubefabric_trigger_request_seconds", "Duration of one HTTP attempt.",
                            _L, buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
delivery_seconds = Histogram(
    "kubefabric_trigger_delivery_seconds",
    "From reading an event off the feed to its function accepting it (retries included).", _L,
    buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300))
triggers = Gauge("kubefabric_trigger_triggers", "Triggers known, by state (running, invalid).",
                 ("state",))
members = Gauge("kubefabric_trigger_members", "Replicas sharing the triggers (this one included).")
