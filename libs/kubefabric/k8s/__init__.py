"""The Kubernetes objects kube-apiserver stores in KubeFabric (DESIGN §8): keys and values.

One decoder for every consumer (the shard writer's label/field index, trigger, aggregation);
nothing here is specific to one of them.

Keys (kubefabric.k8s.keys; kube-apiserver v1.37's layout, default --etcd-prefix=/registry):

    parse_key(b"/registry/services/specs/default/kubernetes")
        -> ObjectKey(group="", resource="services", namespace="default", name="kubernetes")
    parse_key(b"/registry/example.com/widgets/ns/w1")
        -> ObjectKey(group="example.com", resource="widgets", namespace="ns", name="w1")
    parse_key(b"compact_rev_key") -> None              # not an object key
    resource_prefix("apps", "deployments")            -> b"/registry/deployments/"
    resource_prefix("", "nodes")                      -> b"/registry/minions/"
    resource_prefix("example.com", "widgets", "ns")   -> b"/registry/example.com/widgets/ns/"
    object_key("", "pods", "ns", "web")               -> b"/registry/pods/ns/web"
    ObjectKey(...).key                                -> the same

Values (kubefabric.k8s.decode):

    decode(key, value, mod_revision) -> dict
        The object as `kubectl get -o json --show-managed-fields` shows it (kubectl itself drops
        metadata.managedFields without that flag), with metadata.resourceVersion =
        str(mod_revision), which kube-apiserver sets on read:
        - JSON (custom resources; built-ins under --storage-media-type=application/json): as stored;
        - protobuf (built-ins: b"k8s\x00" + runtime.Unknown) rendered as Go's encoding/json renders
          the typed object (kubefabric.k8s.gojson, driven by a table generated from k8s.io/api's Go
          types): json names, omitempty/omitzero, RFC 3339 times, canonical quantities,
          IntOrString, embedded JSON, []byte as base64, int64 as numbers;
        - apiVersion is the stored version, which kube-apiserver serves unless asked for another,
          except CustomResourceDefinitions: stored as v1beta1, returned as v1 (convert.py).
        Not applied: what kube-apiserver adds on read beyond resourceVersion, which is nothing for
        built-ins and, for custom resources, the CRD schema's defaults (when a default was added
        after the object was written) and conversion to another stored version.
    summarize(key, value, fields=("spec.nodeName",)) -> Summary(namespace, name, labels, fields)
        The cheap path for an index: labels, name and namespace without rendering the object;
        fields maps each dotted JSON path to the value a field selector compares (str: strings
        as they are, integers in decimal, booleans "true"/"false"), None when the path is absent
        from decode()'s output or not a scalar (selectors treat that as "").

Every failure to decode a value raises DecodeError (a ValueError; one-line str naming the key):
log it once and go on. Decoding costs (bench/k8s_decode.py): see bench/README.md.

Generated code: kubefabric.proto.k8s (the .proto files of k8s.io/api, apimachinery,
apiextensions-apiserver, kube-aggregator v0.37.2) and kubefabric/proto/k8s/gojson.json, both
written by `uv run python scripts/gen_proto.py` (checked in CI with --check).
"""
from .decode import decode, summarize
from .errors import DecodeError
from .keys import ObjectKey, object_key, parse_key, resource_prefix, storage_path
from .summary import Summary

__all__ = ["decode", "summarize", "Summary", "DecodeError", "ObjectKey", "parse_key",
           "object_key", "resource_prefix", "storage_path"]
