"""The one error of kubefabric.k8s: a stored value that is not an object this module can read."""
from __future__ import annotations


class DecodeError(ValueError):
    """A value under a Kubernetes key that does not decode (not JSON nor Kubernetes protobuf,
    truncated, encrypted at rest, of an unknown kind ...). str() is one line naming the key;
    callers log it once and go on."""

    def __init__(self, key: bytes | str, reason: str):
        self.key = key.decode(errors="replace") if isinstance(key, bytes) else key
        self.reason = reason
        super().__init__(f"cannot decode the object at {self.key}: {reason}")
