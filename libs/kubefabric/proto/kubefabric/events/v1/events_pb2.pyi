from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as _shard_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShardEvents(_message.Message):
    __slots__ = ("shard", "prev_rev", "commits", "committed_rev", "compact_rev", "truncated", "term", "cluster_id")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    PREV_REV_FIELD_NUMBER: _ClassVar[int]
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REV_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    shard: str
    prev_rev: int
    commits: _containers.RepeatedCompositeFieldContainer[_shard_pb2.HistoryResponse]
    committed_rev: int
    compact_rev: int
    truncated: bool
    term: int
    cluster_id: int
    def __init__(self, shard: _Optional[str] = ..., prev_rev: _Optional[int] = ..., commits: _Optional[_Iterable[_Union[_shard_pb2.HistoryResponse, _Mapping]]] = ..., committed_rev: _Optional[int] = ..., compact_rev: _Optional[int] = ..., truncated: _Optional[bool] = ..., term: _Optional[int] = ..., cluster_id: _Optional[int] = ...) -> None: ...
