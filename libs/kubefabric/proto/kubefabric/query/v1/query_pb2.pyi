from kubefabric.proto.etcdserverpb import rpc_pb2 as _rpc_pb2
from kubefabric.proto.mvccpb import kv_pb2 as _kv_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelRequirement(_message.Message):
    __slots__ = ("key", "operator", "values")
    class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPERATOR_UNSPECIFIED: _ClassVar[LabelRequirement.Operator]
        EQUALS: _ClassVar[LabelRequirement.Operator]
        NOT_EQUALS: _ClassVar[LabelRequirement.Operator]
        IN: _ClassVar[LabelRequirement.Operator]
        NOT_IN: _ClassVar[LabelRequirement.Operator]
        EXISTS: _ClassVar[LabelRequirement.Operator]
        DOES_NOT_EXIST: _ClassVar[LabelRequirement.Operator]
    OPERATOR_UNSPECIFIED: LabelRequirement.Operator
    EQUALS: LabelRequirement.Operator
    NOT_EQUALS: LabelRequirement.Operator
    IN: LabelRequirement.Operator
    NOT_IN: LabelRequirement.Operator
    EXISTS: LabelRequirement.Operator
    DOES_NOT_EXIST: LabelRequirement.Operator
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: LabelRequirement.Operator
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[_Union[LabelRequirement.Operator, str]] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class FieldRequirement(_message.Message):
    __slots__ = ("path", "operator", "value")
    class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPERATOR_UNSPECIFIED: _ClassVar[FieldRequirement.Operator]
        EQUALS: _ClassVar[FieldRequirement.Operator]
        NOT_EQUALS: _ClassVar[FieldRequirement.Operator]
    OPERATOR_UNSPECIFIED: FieldRequirement.Operator
    EQUALS: FieldRequirement.Operator
    NOT_EQUALS: FieldRequirement.Operator
    PATH_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    path: str
    operator: FieldRequirement.Operator
    value: str
    def __init__(self, path: _Optional[str] = ..., operator: _Optional[_Union[FieldRequirement.Operator, str]] = ..., value: _Optional[str] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("key", "range_end", "revision", "limit", "labels", "fields", "keys_only")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RANGE_END_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_ONLY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    range_end: bytes
    revision: int
    limit: int
    labels: _containers.RepeatedCompositeFieldContainer[LabelRequirement]
    fields: _containers.RepeatedCompositeFieldContainer[FieldRequirement]
    keys_only: bool
    def __init__(self, key: _Optional[bytes] = ..., range_end: _Optional[bytes] = ..., revision: _Optional[int] = ..., limit: _Optional[int] = ..., labels: _Optional[_Iterable[_Union[LabelRequirement, _Mapping]]] = ..., fields: _Optional[_Iterable[_Union[FieldRequirement, _Mapping]]] = ..., keys_only: _Optional[bool] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("header", "kvs", "more", "next_key", "indexed")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KVS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    NEXT_KEY_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    header: _rpc_pb2.ResponseHeader
    kvs: _containers.RepeatedCompositeFieldContainer[_kv_pb2.KeyValue]
    more: bool
    next_key: bytes
    indexed: bool
    def __init__(self, header: _Optional[_Union[_rpc_pb2.ResponseHeader, _Mapping]] = ..., kvs: _Optional[_Iterable[_Union[_kv_pb2.KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ..., next_key: _Optional[bytes] = ..., indexed: _Optional[bool] = ...) -> None: ...

class IndexesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IndexStatus(_message.Message):
    __slots__ = ("shard", "index", "ready", "since_revision", "backfilled", "cursor", "pending")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    SINCE_REVISION_FIELD_NUMBER: _ClassVar[int]
    BACKFILLED_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    shard: str
    index: str
    ready: bool
    since_revision: int
    backfilled: int
    cursor: bytes
    pending: bool
    def __init__(self, shard: _Optional[str] = ..., index: _Optional[str] = ..., ready: _Optional[bool] = ..., since_revision: _Optional[int] = ..., backfilled: _Optional[int] = ..., cursor: _Optional[bytes] = ..., pending: _Optional[bool] = ...) -> None: ...

class IndexesResponse(_message.Message):
    __slots__ = ("indexes",)
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    indexes: _containers.RepeatedCompositeFieldContainer[IndexStatus]
    def __init__(self, indexes: _Optional[_Iterable[_Union[IndexStatus, _Mapping]]] = ...) -> None: ...
