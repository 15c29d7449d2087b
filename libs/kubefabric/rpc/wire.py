"""Request decoding the way etcd's server decodes, and service registration that uses it.

etcd (grpc-go with gogo-generated unmarshallers) answers a request it cannot decode with
INTERNAL, and also refuses a known field sent with the wrong wire type, which Python's protobuf
would keep as an unknown field and ignore. Decoding here never raises inside gRPC (which would
answer UNKNOWN): it hands the handler a `Malformed` value to refuse with etcd's code.
"""
from __future__ import annotations

import grpc
from google.protobuf import unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2

_MESSAGE = FieldDescriptor.TYPE_MESSAGE


class Malformed:
    """A request that could not be decoded; `error` is what the client gets."""

    __slots__ = ("error",)

    def __init__(self, reason: str):
        self.error = EtcdError(grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {reason}")


def wrong_wire_type(msg) -> str | None:
    """The first known field that arrived with the wrong wire type, if any (recursively)."""
    fields = msg.DESCRIPTOR.fields_by_number
    for unknown in unknown_fields.UnknownFieldSet(msg):
        field = fields.get(unknown.field_number)
        if field is not None:
            return f"proto: wrong wireType = {unknown.wire_type} for field {field.name}"
    for field, value in msg.ListFields():
        if field.type != _MESSAGE:
            continue
        for sub in (value if field.is_repeated else (value,)):
            if (problem := wrong_wire_type(sub)) is not None:
                return problem
    return None


def decoder(cls):
    def decode(data: bytes):
        try:
            msg = cls.FromString(data)
        except DecodeError as err:
            return Malformed(str(err) or "cannot parse")
        # Fast path (C only): with its unknown fields dropped, a message that re-encodes to the
        # size it arrived in had none, so none with a wrong wire type. Otherwise (unknown fields,
        # or an encoding other than the canonical one) a fresh parse is inspected in Python.
        msg.DiscardUnknownFields()
        if msg.ByteSize() == len(data):
            return msg
        problem = wrong_wire_type(cls.FromString(data))
        return Malformed(problem) if problem else msg
    return decode


def register(server: grpc.aio.Server, service: str, servicer, proto=rpc_pb2) -> None:
    """Add `servicer` for <package>.<service> of the generated module `proto` (etcdserverpb's
    rpc_pb2 unless told, e.g. v3lock_pb2), decoding requests with `decoder`."""
    desc = proto.DESCRIPTOR.services_by_name[service]
    handlers = {}
    for method in desc.methods:
        decode = decoder(GetMessageClass(method.input_type))
        encode = GetMessageClass(method.output_type).SerializeToString
        behaviour = getattr(servicer, method.name)
        if method.client_streaming:
            make = grpc.stream_stream_rpc_method_handler
        elif method.server_streaming:
            make = grpc.unary_stream_rpc_method_handler
        else:
            make = grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(behaviour, request_deserializer=decode, response_serializer=encode)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(desc.full_name, handlers),))
