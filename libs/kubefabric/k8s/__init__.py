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
        The object as `kubectl get -o json --show-managed-fields` shows it: custom resources
        (JSON) as stored, built-in kinds (protobuf, b"k8s\\x00" + runtime.Unknown) rendered as
        Go's encoding/json renders the typed object, and metadata.resourceVersion =
        str(mod_revision), which kube-apiserver sets on read. apiVersion is the storage version
        (what kube-apiserver serves unless a client asks for another version).
    summarize(key, value, fields=("spec.nodeName",)) -> Summary(namespace, name, labels, fields)
        The cheap path for an index: no full rendering. fields map each dotted path to its
        value as a field selector compares it (str), or None.

Every failure to decode a value raises DecodeError (a ValueError; one-line str naming the key):
log it once and go on.
"""
from .decode import Summary, decode, summarize
from .errors import DecodeError
from .keys import ObjectKey, object_key, parse_key, resource_prefix, storage_path

__all__ = ["decode", "summarize", "Summary", "DecodeError", "ObjectKey", "parse_key",
           "object_key", "resource_prefix", "storage_path"]
