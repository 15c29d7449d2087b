"""What an index needs of a stored object (Summary), and how a field selector reads a value:
shared by the JSON path (kubefabric.k8s.decode) and the protobuf one (kubefabric.k8s.pb)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Summary:
    """What an index needs of an object. fields: each requested path (dotted JSON field names
    from the object's root, e.g. "spec.nodeName", "status.phase") -> its value as a field
    selector compares it (strings as they are, integers in decimal, booleans "true"/"false"),
    None when absent or not a scalar."""
    namespace: str
    name: str
    labels: dict[str, str]
    fields: dict[str, str | None] = field(default_factory=dict)


def field_value(obj: dict, path: str) -> str | None:
    """The value at a dotted path of a JSON object, as a field selector compares it."""
    node: object = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return scalar_string(node)


def scalar_string(v: object) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))   # Go renders an integral float64 without a fraction
    return None
