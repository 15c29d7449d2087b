"""kubefabric.k8s decode/summarize on hand-made values: JSON objects and every kind of value
that must fail with one DecodeError (the real objects of a kube-apiserver are checked in
test_apiserver_objects.py)."""
from __future__ import annotations

import json

import pytest

from kubefabric.k8s import DecodeError, decode, summarize

KEY = b"/registry/example.com/widgets/ns/w1"
WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget",
          "metadata": {"name": "w1", "namespace": "ns", "uid": "u-1", "generation": 3,
                       "creationTimestamp": "2026-01-02T03:04:05Z",
                       "labels": {"tier": "a", "app": "x"}},
          "spec": {"size": 3, "color": "red", "on": True, "ratio": 0.5, "big": 2.0,
                   "nested": {"deep": {"k": "v"}}, "list": [1]},
          "status": {"phase": "Ready"}}


def test_json_object_gets_resource_version():
    got = decode(KEY, json.dumps(WIDGET).encode(), 42)
    want = json.loads(json.dumps(WIDGET))
    want["metadata"]["resourceVersion"] = "42"
    assert got == want


def test_summary():
    s = summarize(KEY, json.dumps(WIDGET).encode(),
                  ("spec.color", "spec.size", "spec.on", "spec.ratio", "spec.big", "spec.nested",
                   "spec.list", "spec.missing", "status.phase", "metadata.name",
                   "spec.color.deeper"))
    assert (s.namespace, s.name, s.labels) == ("ns", "w1", {"tier": "a", "app": "x"})
    assert s.fields == {"spec.color": "red", "spec.size": "3", "spec.on": "true", "spec.ratio": None,
                        "spec.big": "2", "spec.nested": None, "spec.list": None,
                        "spec.missing": None, "status.phase": "Ready", "metadata.name": "w1",
                        "spec.color.deeper": None}


def test_summary_of_cluster_scoped_object_without_labels():
    obj = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    s = summarize(b"/registry/example.com/gadgets/g", json.dumps(obj).encode())
    assert (s.namespace, s.name, s.labels, s.fields) == ("", "g", {}, {})


@pytest.mark.parametrize("value,reason", [
    (b"", "empty value"),
    (b"not json", "neither Kubernetes protobuf nor JSON"),
    (b'{"apiVersion": "v1", "kind": "X", "metadata"', "neither Kubernetes protobuf nor JSON"),
    (b"[1, 2]", "JSON list, not an object"),
    (b'"text"', "JSON str, not an object"),
    (b'{"apiVersion": "v1", "kind": "X"}', "JSON object without metadata"),
    (b'{"apiVersion": "v1", "kind": "X", "metadata": []}', "JSON object without metadata"),
    (b'{"metadata": {"name": "x"}}', "JSON object without apiVersion and kind"),
    (b'{"apiVersion": 1, "kind": "X", "metadata": {}}', "JSON object without apiVersion and kind"),
    (b"\xff\xfe{}", "neither Kubernetes protobuf nor JSON"),
    (b"k8s:enc:aescbc:v1:key1:\x01\x02\x03", "encrypted at rest (aescbc:v1)"),
    (b"k8s:enc:kms:v2:my-kms:\x00\x01", "encrypted at rest (kms:v2)"),
    (b"\xd9\xd9\xf7\xa1\x61a\x01", "CBOR"),
])
def test_undecodable_values(value, reason):
    for call in (lambda: decode(KEY, value, 5), lambda: summarize(KEY, value, ("spec.x",))):
        with pytest.raises(DecodeError) as err:
            call()
        assert reason in str(err.value)
        assert str(err.value).startswith(f"cannot decode the object at {KEY.decode()}: ")
        assert "\n" not in str(err.value)
        assert err.value.key == KEY.decode()
        assert isinstance(err.value, ValueError)
