"""Kubernetes protobuf storage (b"k8s\\x00" + runtime.Unknown): not decoded yet."""
from __future__ import annotations

from .errors import DecodeError


def decode(key: bytes | str, value: bytes) -> dict:
    raise DecodeError(key, "Kubernetes protobuf is not decoded yet")


def summarize(key: bytes | str, value: bytes, fields: tuple[str, ...]):
    raise DecodeError(key, "Kubernetes protobuf is not decoded yet")
