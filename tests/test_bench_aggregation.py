"""bench/aggregation.py's helpers without servers: bulk objects are the template's bytes with
only their identity replaced, and kube-apiserver's metrics are summarised from their text."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import agg_bulk  # noqa: E402
import agg_metrics  # noqa: E402

# What kube-apiserver v1.37 stored for a client-go create of the bench's CRD (read from etcd).
STORED = (b'{"apiVersion":"g.example/v1","kind":"Widget","metadata":{"creationTimestamp":"2026-12-06T17:18:57Z",'
          b'"generation":1,"labels":{"bench-client":"b-template","bench-seq":"0"},"managedFields":[{"apiVersion":'
          b'"g.example/v1","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:bench-client":{},'
          b'"f:bench-seq":{}}},"f:spec":{".":{},"f:color":{},"f:replicas":{}}},"manager":"k8sload","operation":'
          b'"Update","time":"2026-12-06T17:18:57Z"}],"name":"b-template","namespace":"bench","uid":'
          b'"10f9a010-eb81-44be-b67f-b343ffa25a6b"},"spec":{"color":"red","replicas":0}}\n')


def test_bulk_objects_are_the_stored_template_with_a_new_identity():
    agg_bulk.check_faithful(STORED)
    name, value = agg_bulk.render(json.loads(STORED), STORED, 245)
    assert name == "b5-2" and value.endswith(b"}\n")
    got, want = json.loads(value), json.loads(STORED)
    assert got["metadata"].pop("labels") == {"bench-client": "b5", "bench-seq": "2"}
    assert got["metadata"].pop("name") == "b5-2"
    assert got["metadata"].pop("uid") != want["metadata"]["uid"]
    assert got["spec"].pop("replicas") == 2
    for key in ("labels", "name", "uid"):
        del want["metadata"][key]
    del want["spec"]["replicas"]
    assert got == want
    assert agg_bulk.key("g.example", name) == b"/registry/g.example/widgets/bench/b5-2"


def test_a_template_encode_cannot_reproduce_is_refused():
    with pytest.raises(RuntimeError, match="not JSON encode"):
        agg_bulk.check_faithful(b'{"kind": "Widget"}')


def test_metrics_summary_of_a_window():
    def scrape(text):
        out = {}
        for line in text.splitlines():
            m = agg_metrics.SERIES.match(line)
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out
    g = 'group="g.example",resource="widgets"'
    before = scrape(f'apiserver_storage_list_total{{{g},index="",storage="watchcache"}} 10\n'
                    f'etcd_request_duration_seconds_sum{{{g},operation="create"}} 1\n'
                    f'etcd_request_duration_seconds_count{{{g},operation="create"}} 10')
    after = scrape(f'apiserver_storage_list_total{{{g},index="",storage="watchcache"}} 110\n'
                   f'apiserver_storage_list_total{{{g},index="",storage="etcd"}} 5\n'
                   f'apiserver_storage_list_fetched_objects_total{{{g},index="",storage="watchcache"}} 1000\n'
                   f'apiserver_watch_cache_consistent_read_total{{fallback="true",{g},success="true"}} 3\n'
                   f'apiserver_request_total{{code="504",{g},verb="LIST"}} 2\n'
                   f'etcd_request_duration_seconds_sum{{{g},operation="create"}} 3\n'
                   f'etcd_request_duration_seconds_count{{{g},operation="create"}} 30')
    s = agg_metrics.summary(agg_metrics.delta(before, after))
    assert (s["lists_from_watch_cache"], s["lists_from_etcd"], s["objects_scanned_per_cached_list"]) == (100, 5, 10)
    assert s["consistent_reads_fallback_to_etcd"] == 3 and s["responses_5xx"] == 2
    assert s["etcd_ms_avg"] == {"create x20": 100.0}
