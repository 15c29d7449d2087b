"""Byte-key intervals and the Kubernetes key layout, for the topology matchers.

Intervals are half-open `(start, end)` pairs of bytes; `end == b""` means unbounded above
(every key >= start). An interval is empty when end is bounded and `start >= end`.
Every function here is pure and works on any bytes, not only UTF-8.

Kubernetes layout (kube-apiserver with the default `--etcd-prefix=/registry`):

    /registry/<resource>/<namespace>/<name>           namespaced built-in kinds
    /registry/<resource>/<name>                       cluster-scoped built-in kinds
    /registry/<group>/<plural>/<namespace>/<name>     namespaced custom resources
    /registry/<group>/<plural>/<name>                 cluster-scoped custom resources

The layout itself (which groups keep their segment, kube-apiserver's special storage paths)
is kubefabric.k8s's.
"""
from __future__ import annotations

import re

from kubefabric.k8s.keys import storage_path as k8s_storage_path
from kubefabric.k8s.resources import BUILTIN_GROUPS

Interval = tuple[bytes, bytes]

REGISTRY = b"/registry/"

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
RESOURCE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")


# ---------------------------------------------------------------------------------------------
# intervals

def prefix_end(prefix: bytes) -> bytes:
    """End of the interval of keys starting with `prefix` (b"" = unbounded)."""
    b = bytearray(prefix)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b""
    b[-1] += 1
    return bytes(b)


def prefix_interval(prefix: bytes) -> Interval:
    return (prefix, prefix_end(prefix))


def nonempty(start: bytes, end: bytes) -> bool:
    return end == b"" or start < end


def end_le(a: bytes, b: bytes) -> bool:
    """a <= b for interval ends, where b"" is +infinity."""
    if b == b"":
        return True
    return a != b"" and a <= b


def intersect(a: Interval, b: Interval) -> Interval | None:
    start = max(a[0], b[0])
    end = a[1] if end_le(a[1], b[1]) else b[1]
    return (start, end) if nonempty(start, end) else None


def subtract(intervals: list[Interval], cut: Interval) -> list[Interval]:
    """intervals minus cut (each result interval nonempty)."""
    out: list[Interval] = []
    for s, e in intervals:
        if intersect((s, e), cut) is None:
            out.append((s, e))
            continue
        if s < cut[0]:
            out.append((s, cut[0]))
        if cut[1] != b"" and nonempty(cut[1], e) and cut[1] > s:
            out.append((cut[1], e))
    return out


def merge(intervals: list[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-adjacent union of the nonempty intervals."""
    out: list[Interval] = []
    for s, e in sorted(i for i in intervals if nonempty(*i)):
        if out and (out[-1][1] == b"" or s <= out[-1][1]):
            if not end_le(e, out[-1][1]):
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def covered(intervals: list[Interval], by: list[Interval]) -> bool:
    """True when every key of `intervals` lies in the union of `by`."""
    rest = [i for i in intervals if nonempty(*i)]
    for cut in by:
        rest = subtract(rest, cut)
    return not rest


def common_prefix(start: bytes, end: bytes) -> bytes:
    """The longest p such that every key of the nonempty interval [start, end) starts with p."""
    # p must be a prefix of start, and [start, end) must stay inside p's prefix interval.
    for k in range(len(start), -1, -1):
        if end_le(end, prefix_end(start[:k])):
            return start[:k]
    return b""


# ---------------------------------------------------------------------------------------------
# Kubernetes keys

def namespaced_parts(key: bytes) -> tuple[bytes, bytes] | None:
    """(resource storage path, namespace) of a namespaced object key, else None.

    The key must be REGISTRY + R + "/" + NS + "/" + rest, where R is `services/specs` or
    `services/endpoints`, or `<group>/<plural>` when the first segment contains a dot, or else
    the first segment; R's segments and NS are nonempty; rest is anything (the object name).
    Invariant: the answer depends only on the part of the key up to the "/" after NS, so every
    key that starts with such a prefix gets the same answer (range analysis relies on it).
    """
    if not key.startswith(REGISTRY):
        return None
    body = key[len(REGISTRY):]
    parts = body.split(b"/", 3)
    if len(parts) < 3:
        return None
    if b"." in parts[0] or (parts[0] == b"services" and parts[1] in (b"specs", b"endpoints")):
        if len(parts) < 4:
            return None
        resource, ns = parts[0] + b"/" + parts[1], parts[2]
        if not parts[1]:
            return None
    else:
        resource, ns = parts[0], parts[1]
    if not parts[0] or not ns:
        return None
    return resource, ns


def storage_path(resource: str) -> tuple[str, str | None]:
    """Storage path under /registry/ of a resource written in a namespace rule, or an error.

    `pods` -> pods; `services` -> services/specs (kube-apiserver's special paths); `deployments.apps` ->
    deployments (built-in group); `widgets.example.com` -> example.com/widgets (custom resource).
    """
    if not RESOURCE_NAME.match(resource):
        return "", (f"bad resource {resource!r}: use a lowercase plural like 'pods' or "
                    f"'widgets.example.com'")
    plural, _, group = resource.partition(".")
    if group in BUILTIN_GROUPS or "." in group:
        return k8s_storage_path(group, plural), None
    return "", (f"bad resource {resource!r}: a custom resource is 'plural.group' with a "
                f"group containing a dot (like widgets.example.com)")
