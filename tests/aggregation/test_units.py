"""The aggregation server's pure parts, against what Kubernetes (v1.37) does for the same input:
selectors, JSONPath, ages, continue tokens, field sets, schema and CEL validation, CRD loading."""
from __future__ import annotations

import base64
import json

import pytest

from aggregation import cel, fieldsets, objects, schema, selectors, status
from aggregation.crd import CRDError, load_directory, parse_crd, version_priority
from aggregation.jsonpath import compile_path, find, print_value
from aggregation.table import human_duration

from harness.aggregation import CRDS


@pytest.mark.parametrize("text,want", [
    ("", []),
    ("a=b", [("a", "Equals", ("b",))]),
    ("a==b,c!=d", [("a", "Equals", ("b",)), ("c", "NotEquals", ("d",))]),
    ("x in (b, a),!y", [("x", "In", ("a", "b")), ("y", "DoesNotExist", ())]),
    ("k notin ()", [("k", "NotIn", ("",))]),
    ("example.com/k, n>4", [("example.com/k", "Exists", ()), ("n", "GreaterThan", ("4",))]),
    ("a=", [("a", "Equals", ("",))]),
])
def test_label_selectors(text, want):
    got = [(r.key, r.op, r.values) for r in selectors.parse_labels(text)]
    assert got == sorted(want)


@pytest.mark.parametrize("text,message", [
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b,", "found '', expected: identifier after ','"),
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("n>x", 'unable to parse requirement: values[0]: Invalid value: "x": for \'Gt\', \'Lt\' operators, the value must be an integer'),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("=a", "found '=', expected: !, identifier, or 'end of string'"),
])
def test_label_selector_errors(text, message):
    with pytest.raises(selectors.SelectorError) as err:
        selectors.parse_labels(text)
    assert str(err.value) == message


def test_label_matching():
    labels = {"a": "1", "b": "x"}
    r = selectors.parse_labels("a>0,b notin (y),!c")
    assert selectors.matches_all(r, labels)
    assert not selectors.matches_all(selectors.parse_labels("a<1"), labels)
    assert selectors.matches_all(selectors.parse_labels("c!=z"), labels)


def test_field_selectors():
    got = selectors.parse_fields(r"metadata.name=a\,b,spec.color!=red")
    assert [(r.key, r.op, r.values) for r in got] == [("metadata.name", "Equals", ("a,b",)),
                                                       ("spec.color", "NotEquals", ("red",))]
    with pytest.raises(selectors.SelectorError, match="field label not supported: spec.x"):
        selectors.parse_fields("spec.x=1", ["metadata.name"])
    with pytest.raises(selectors.SelectorError, match="invalid selector"):
        selectors.parse_fields("nope")
    values = selectors.selectable_fields({"metadata": {"name": "n", "namespace": "d"},
                                         "spec": {"on": True, "n": 3}}, True, ["spec.on", "spec.n", "spec.x"])
    assert values == {"metadata.name": "n", "metadata.namespace": "d", "spec.on": "true",
                      "spec.n": "3", "spec.x": ""}


def test_jsonpath():
    obj = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
           "spec": {"m": {"b": 1, "a": [1, 2]}}}
    assert find(compile_path('.status.conditions[?(@.type=="Ready")].status'), obj) == ["True"]
    assert find(compile_path(".status.conditions[-1].type"), obj) == ["Ready"]
    assert find(compile_path(".spec.missing"), obj) == []
    assert print_value(find(compile_path(".spec.m"), obj)[0]) == '{"a":[1,2],"b":1}'
    assert print_value(2.0) == "2" and print_value(1e21) == "1e+21" and print_value(True) == "true"


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (119, "119s"), (125, "2m5s"), (600, "10m"),
                                          (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"),
                                          (3 * 86400 + 3600, "3d1h"), (400 * 86400, "400d"),
                                          (3 * 365 * 86400, "3y"), (-5, "<invalid>")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_continue_tokens_are_kube_apiservers():
    prefix = "/registry/example.kubefabric.io/widgets/"
    token = objects.encode_continue(prefix + "ns/w1\x00", prefix, 42)
    raw = json.loads(base64.urlsafe_b64decode(token + "=="))
    assert raw == {"v": "meta.k8s.io/v1", "rv": 42, "start": "ns/w1\x00"}
    assert objects.decode_continue(token, prefix) == (prefix + "ns/w1\x00", 42)
    bad = base64.urlsafe_b64encode(b'{"v":"meta.k8s.io/v1","rv":3,"start":"../x"}').decode()
    with pytest.raises(status.ApiError) as err:
        objects.decode_continue(bad.rstrip("="), prefix)
    assert err.value.code == 400


def test_field_sets_round_trip():
    s = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
                  "items": {"type": "object", "properties": {"port": {"type": "integer"}, "name": {"type": "string"}}}},
        "args": {"type": "array", "items": {"type": "string"}}}}}}
    obj = {"metadata": {"name": "x", "labels": {"a": "b"}},
           "spec": {"tags": ["t"], "ports": [{"port": 80, "name": "http"}], "args": ["-v"]}}
    fields = fieldsets.field_set(obj, fieldsets.root_schema(s))
    tree = fieldsets.to_fields_v1(fields)
    assert tree == {"f:metadata": {"f:labels": {".": {}, "f:a": {}}},
                    "f:spec": {".": {}, "f:args": {},
                               "f:ports": {".": {}, 'k:{"port":80}': {".": {}, "f:name": {}, "f:port": {}}},
                               "f:tags": {".": {}, 'v:"t"': {}}}}
    assert fieldsets.from_fields_v1(tree) == fields
    assert fieldsets.describe(("f:spec", "f:ports", 'k:{"port":80}', "f:name")) == ".spec.ports[port=80].name"


def test_schema_validation_wording():
    s = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "integer", "maximum": 3}, "b": {"type": "string", "pattern": "^x"},
        "c": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
        "d": {"type": "string", "maxLength": 1}}}
    errs = schema.validate({"a": 5, "b": "y", "c": ["1", "2"], "d": "long"}, s)
    assert [str(e) for e in errs] == [
        "a: Invalid value: 5: a in body should be less than or equal to 3",
        "b: Invalid value: \"y\": b in body should match '^x'",
        "c: Too many: 2: must have at most 1 item",
        "d: Too long: may not be more than 1 byte"]
    assert [str(e) for e in schema.validate({"a": "no"}, s)] == [
        'a: Invalid value: "no": a in body must be of type integer: "string"']
    assert [str(e) for e in schema.validate({}, s)] == ["a: Required value"]


def test_pruning_and_defaults():
    s = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "keep": {"type": "string", "default": "d"},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}
    obj = {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x", "bogus": 1},
           "spec": {"drop": 1, "free": {"any": {"thing": 1}}}, "extra": True}
    assert schema.prune(obj, s) == ["extra", "metadata.bogus", "spec.drop"]
    schema.default(obj, s)
    assert obj == {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"},
                   "spec": {"free": {"any": {"thing": 1}}, "keep": "d"}}


def test_cel_rules():
    s = {"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.min <= self.max", "message": "min must not exceed max"},
            {"rule": "self.name.lowerAscii() == self.name"},
            {"rule": "self.min >= oldSelf.min", "message": "min may only grow", "fieldPath": ".min"}],
        "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"}}}}}
    errs = cel.validate({"spec": {"min": 3, "max": 1, "name": "Ab"}}, cel._MISSING, s)
    assert [str(e) for e in errs] == [
        'spec: Invalid value: min must not exceed max',
        'spec: Invalid value: failed rule: self.name.lowerAscii() == self.name']
    errs = cel.validate({"spec": {"min": 1, "max": 5, "name": "a"}}, {"spec": {"min": 2, "max": 5, "name": "a"}}, s)
    assert [str(e) for e in errs] == ['spec.min: Invalid value: min may only grow']


def test_crd_loading(tmp_path):
    (r,) = load_directory(CRDS)
    assert r.name == "widgets.example.kubefabric.io" and r.namespaced
    assert r.key("ns", "w") == "/registry/example.kubefabric.io/widgets/ns/w"
    assert [v for v in sorted(["v1beta1", "v2", "v1", "v1alpha1", "foo"], key=version_priority)] == [
        "v2", "v1", "v1beta1", "v1alpha1", "foo"]
    bad = r.manifest | {"metadata": {"name": "wrong.example.kubefabric.io"}}
    with pytest.raises(CRDError, match="metadata.name must be spec.names.plural"):
        parse_crd(bad, "x.yaml")
    (tmp_path / "a.yaml").write_text("kind: [unclosed")
    with pytest.raises(CRDError, match="not valid YAML"):
        load_directory(tmp_path)
