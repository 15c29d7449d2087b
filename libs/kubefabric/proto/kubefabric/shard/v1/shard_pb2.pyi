from kubefabric.proto.etcdserverpb import rpc_pb2 as _rpc_pb2
from kubefabric.proto.mvccpb import kv_pb2 as _kv_pb2
from kubefabric.proto.authpb import auth_pb2 as _auth_pb2
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as _query_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Clock(_message.Message):
    __slots__ = ("sync_rev",)
    SYNC_REV_FIELD_NUMBER: _ClassVar[int]
    sync_rev: int
    def __init__(self, sync_rev: _Optional[int] = ...) -> None: ...

class RangeRequest(_message.Message):
    __slots__ = ("clock", "range")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    range: _rpc_pb2.RangeRequest
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., range: _Optional[_Union[_rpc_pb2.RangeRequest, _Mapping]] = ...) -> None: ...

class RangeResponse(_message.Message):
    __slots__ = ("range", "committed_rev")
    RANGE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    range: _rpc_pb2.RangeResponse
    committed_rev: int
    def __init__(self, range: _Optional[_Union[_rpc_pb2.RangeResponse, _Mapping]] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("clock", "put")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    put: _rpc_pb2.PutRequest
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., put: _Optional[_Union[_rpc_pb2.PutRequest, _Mapping]] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("put", "committed_rev")
    PUT_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    put: _rpc_pb2.PutResponse
    committed_rev: int
    def __init__(self, put: _Optional[_Union[_rpc_pb2.PutResponse, _Mapping]] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("id", "put", "delete_range", "txn")
    ID_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_RANGE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    id: int
    put: PutRequest
    delete_range: DeleteRangeRequest
    txn: TxnRequest
    def __init__(self, id: _Optional[int] = ..., put: _Optional[_Union[PutRequest, _Mapping]] = ..., delete_range: _Optional[_Union[DeleteRangeRequest, _Mapping]] = ..., txn: _Optional[_Union[TxnRequest, _Mapping]] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("id", "put", "delete_range", "txn", "code", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_RANGE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: int
    put: PutResponse
    delete_range: DeleteRangeResponse
    txn: TxnResponse
    code: int
    message: str
    def __init__(self, id: _Optional[int] = ..., put: _Optional[_Union[PutResponse, _Mapping]] = ..., delete_range: _Optional[_Union[DeleteRangeResponse, _Mapping]] = ..., txn: _Optional[_Union[TxnResponse, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class WriteRequests(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[WriteRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[WriteRequest, _Mapping]]] = ...) -> None: ...

class WriteResponses(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[WriteResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[WriteResponse, _Mapping]]] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("id", "range", "query")
    ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    id: int
    range: RangeRequest
    query: QueryRequest
    def __init__(self, id: _Optional[int] = ..., range: _Optional[_Union[RangeRequest, _Mapping]] = ..., query: _Optional[_Union[QueryRequest, _Mapping]] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("id", "range", "query", "code", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: int
    range: RangeResponse
    query: QueryResponse
    code: int
    message: str
    def __init__(self, id: _Optional[int] = ..., range: _Optional[_Union[RangeResponse, _Mapping]] = ..., query: _Optional[_Union[QueryResponse, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ReadRequests(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ReadRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[ReadRequest, _Mapping]]] = ...) -> None: ...

class ReadResponses(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[ReadResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[ReadResponse, _Mapping]]] = ...) -> None: ...

class DeleteRangeRequest(_message.Message):
    __slots__ = ("clock", "delete_range")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    DELETE_RANGE_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    delete_range: _rpc_pb2.DeleteRangeRequest
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., delete_range: _Optional[_Union[_rpc_pb2.DeleteRangeRequest, _Mapping]] = ...) -> None: ...

class DeleteRangeResponse(_message.Message):
    __slots__ = ("delete_range", "committed_rev")
    DELETE_RANGE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    delete_range: _rpc_pb2.DeleteRangeResponse
    committed_rev: int
    def __init__(self, delete_range: _Optional[_Union[_rpc_pb2.DeleteRangeResponse, _Mapping]] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class TxnRequest(_message.Message):
    __slots__ = ("clock", "txn")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    txn: _rpc_pb2.TxnRequest
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., txn: _Optional[_Union[_rpc_pb2.TxnRequest, _Mapping]] = ...) -> None: ...

class TxnResponse(_message.Message):
    __slots__ = ("txn", "committed_rev")
    TXN_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    txn: _rpc_pb2.TxnResponse
    committed_rev: int
    def __init__(self, txn: _Optional[_Union[_rpc_pb2.TxnResponse, _Mapping]] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("clock", "revision", "physical")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    revision: int
    physical: bool
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., revision: _Optional[int] = ..., physical: _Optional[bool] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("committed_rev", "compact_rev")
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REV_FIELD_NUMBER: _ClassVar[int]
    committed_rev: int
    compact_rev: int
    def __init__(self, committed_rev: _Optional[int] = ..., compact_rev: _Optional[int] = ...) -> None: ...

class LeaseGrantRequest(_message.Message):
    __slots__ = ("clock", "id", "ttl")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    id: int
    ttl: int
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., id: _Optional[int] = ..., ttl: _Optional[int] = ...) -> None: ...

class LeaseGrantResponse(_message.Message):
    __slots__ = ("id", "ttl", "committed_rev")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl: int
    committed_rev: int
    def __init__(self, id: _Optional[int] = ..., ttl: _Optional[int] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class LeaseRevokeRequest(_message.Message):
    __slots__ = ("clock", "id")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    id: int
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., id: _Optional[int] = ...) -> None: ...

class LeaseRevokeResponse(_message.Message):
    __slots__ = ("committed_rev",)
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    committed_rev: int
    def __init__(self, committed_rev: _Optional[int] = ...) -> None: ...

class LeaseRenewRequest(_message.Message):
    __slots__ = ("clock", "id")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    id: int
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., id: _Optional[int] = ...) -> None: ...

class LeaseRenewResponse(_message.Message):
    __slots__ = ("id", "ttl", "committed_rev")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl: int
    committed_rev: int
    def __init__(self, id: _Optional[int] = ..., ttl: _Optional[int] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class LeaseTimeToLiveRequest(_message.Message):
    __slots__ = ("id", "keys", "clock")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    id: int
    keys: bool
    clock: Clock
    def __init__(self, id: _Optional[int] = ..., keys: _Optional[bool] = ..., clock: _Optional[_Union[Clock, _Mapping]] = ...) -> None: ...

class LeaseTimeToLiveResponse(_message.Message):
    __slots__ = ("id", "ttl", "granted_ttl", "keys", "committed_rev")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    GRANTED_TTL_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl: int
    granted_ttl: int
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    committed_rev: int
    def __init__(self, id: _Optional[int] = ..., ttl: _Optional[int] = ..., granted_ttl: _Optional[int] = ..., keys: _Optional[_Iterable[bytes]] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class LeaseListRequest(_message.Message):
    __slots__ = ("clock",)
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ...) -> None: ...

class LeaseListResponse(_message.Message):
    __slots__ = ("ids", "committed_rev")
    IDS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    committed_rev: int
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("clock", "key", "range_end", "start_rev", "prev_kv", "end_rev")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    RANGE_END_FIELD_NUMBER: _ClassVar[int]
    START_REV_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    END_REV_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    key: bytes
    range_end: bytes
    start_rev: int
    prev_kv: bool
    end_rev: int
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., key: _Optional[bytes] = ..., range_end: _Optional[bytes] = ..., start_rev: _Optional[int] = ..., prev_kv: _Optional[bool] = ..., end_rev: _Optional[int] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("rev", "events", "traceparent", "tracestate")
    REV_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    rev: int
    events: _containers.RepeatedCompositeFieldContainer[_kv_pb2.Event]
    traceparent: str
    tracestate: str
    def __init__(self, rev: _Optional[int] = ..., events: _Optional[_Iterable[_Union[_kv_pb2.Event, _Mapping]]] = ..., traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("clock",)
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("committed_rev", "compact_rev", "db_size", "db_size_in_use", "role", "db_size_quota", "alarms", "cluster_id", "member_id", "term", "leader", "name", "lane")
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REV_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_IN_USE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_QUOTA_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANE_FIELD_NUMBER: _ClassVar[int]
    committed_rev: int
    compact_rev: int
    db_size: int
    db_size_in_use: int
    role: str
    db_size_quota: int
    alarms: _containers.RepeatedCompositeFieldContainer[_rpc_pb2.AlarmMember]
    cluster_id: int
    member_id: int
    term: int
    leader: str
    name: str
    lane: str
    def __init__(self, committed_rev: _Optional[int] = ..., compact_rev: _Optional[int] = ..., db_size: _Optional[int] = ..., db_size_in_use: _Optional[int] = ..., role: _Optional[str] = ..., db_size_quota: _Optional[int] = ..., alarms: _Optional[_Iterable[_Union[_rpc_pb2.AlarmMember, _Mapping]]] = ..., cluster_id: _Optional[int] = ..., member_id: _Optional[int] = ..., term: _Optional[int] = ..., leader: _Optional[str] = ..., name: _Optional[str] = ..., lane: _Optional[str] = ...) -> None: ...

class FeedRequest(_message.Message):
    __slots__ = ("clock", "start_rev")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    START_REV_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    start_rev: int
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., start_rev: _Optional[int] = ...) -> None: ...

class FeedResponse(_message.Message):
    __slots__ = ("commits", "committed_rev", "compact_rev")
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REV_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[HistoryResponse]
    committed_rev: int
    compact_rev: int
    def __init__(self, commits: _Optional[_Iterable[_Union[HistoryResponse, _Mapping]]] = ..., committed_rev: _Optional[int] = ..., compact_rev: _Optional[int] = ...) -> None: ...

class AlarmRequest(_message.Message):
    __slots__ = ("clock", "alarm")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    alarm: _rpc_pb2.AlarmRequest
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., alarm: _Optional[_Union[_rpc_pb2.AlarmRequest, _Mapping]] = ...) -> None: ...

class AlarmResponse(_message.Message):
    __slots__ = ("alarms", "committed_rev")
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    alarms: _containers.RepeatedCompositeFieldContainer[_rpc_pb2.AlarmMember]
    committed_rev: int
    def __init__(self, alarms: _Optional[_Iterable[_Union[_rpc_pb2.AlarmMember, _Mapping]]] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class DefragmentRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DefragmentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("clock", "query")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    query: _query_pb2.QueryRequest
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., query: _Optional[_Union[_query_pb2.QueryRequest, _Mapping]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("query", "committed_rev")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    query: _query_pb2.QueryResponse
    committed_rev: int
    def __init__(self, query: _Optional[_Union[_query_pb2.QueryResponse, _Mapping]] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class HashKVRequest(_message.Message):
    __slots__ = ("clock", "revision", "chained", "crc")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CHAINED_FIELD_NUMBER: _ClassVar[int]
    CRC_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    revision: int
    chained: bool
    crc: int
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., revision: _Optional[int] = ..., chained: _Optional[bool] = ..., crc: _Optional[int] = ...) -> None: ...

class HashKVResponse(_message.Message):
    __slots__ = ("hash", "compact_revision", "hash_revision", "committed_rev")
    HASH_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    HASH_REVISION_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_REV_FIELD_NUMBER: _ClassVar[int]
    hash: int
    compact_revision: int
    hash_revision: int
    committed_rev: int
    def __init__(self, hash: _Optional[int] = ..., compact_revision: _Optional[int] = ..., hash_revision: _Optional[int] = ..., committed_rev: _Optional[int] = ...) -> None: ...

class AuthStore(_message.Message):
    __slots__ = ("enabled", "revision", "users", "roles", "secret", "generation", "unchanged")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    revision: int
    users: _containers.RepeatedCompositeFieldContainer[_auth_pb2.User]
    roles: _containers.RepeatedCompositeFieldContainer[_auth_pb2.Role]
    secret: bytes
    generation: int
    unchanged: bool
    def __init__(self, enabled: _Optional[bool] = ..., revision: _Optional[int] = ..., users: _Optional[_Iterable[_Union[_auth_pb2.User, _Mapping]]] = ..., roles: _Optional[_Iterable[_Union[_auth_pb2.Role, _Mapping]]] = ..., secret: _Optional[bytes] = ..., generation: _Optional[int] = ..., unchanged: _Optional[bool] = ...) -> None: ...

class AuthApplyRequest(_message.Message):
    __slots__ = ("clock", "method", "request", "caller", "has_caller")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    HAS_CALLER_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    method: str
    request: bytes
    caller: str
    has_caller: bool
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., method: _Optional[str] = ..., request: _Optional[bytes] = ..., caller: _Optional[str] = ..., has_caller: _Optional[bool] = ...) -> None: ...

class AuthApplyResponse(_message.Message):
    __slots__ = ("response", "store")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    response: bytes
    store: AuthStore
    def __init__(self, response: _Optional[bytes] = ..., store: _Optional[_Union[AuthStore, _Mapping]] = ...) -> None: ...

class AuthReadRequest(_message.Message):
    __slots__ = ("clock", "generation")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    clock: Clock
    generation: int
    def __init__(self, clock: _Optional[_Union[Clock, _Mapping]] = ..., generation: _Optional[int] = ...) -> None: ...
