"""Message size limits of KubeFabric's gRPC servers, in etcd's terms. No grpc import: the
command modules check --max-request-bytes with them before grpc may load (kubefabric.cli)."""
from __future__ import annotations

from kubefabric.config import Count

DEFAULT_MAX_REQUEST_BYTES = 1572864  # etcd's --max-request-bytes, 1.5 MiB
GRPC_OVERHEAD_BYTES = 512 * 1024     # etcd's allowance for gRPC framing on top of the request limit
# the largest --max-request-bytes: with the allowance it must fit gRPC's int32 message length
LARGEST_REQUEST_BYTES = 2 ** 31 - 1 - GRPC_OVERHEAD_BYTES
REQUEST_BYTES = Count(1, LARGEST_REQUEST_BYTES)  # the flag's type


def max_message_bytes(max_request_bytes: int) -> int:
    """The largest gRPC message for a request limit: also where etcd splits fragmented watch
    responses."""
    return max_request_bytes + GRPC_OVERHEAD_BYTES
