"""The Shard API's Writes streams (kubefabric.shardsvc.mux streams), both ends: Put, DeleteRange
and Txn of one caller on one gRPC stream instead of a unary call each. Callers here use
WriteBatches (coalesced: the writes waiting to be sent share a message, the answers ready
together share one); the service also answers Writes (a message per write) for older callers.

Invariants (besides mux's):
- Writes run on the leader only (elsewhere NOT_LEADER: not applied), as soon as each is read,
  so concurrent writes share the writer's batches (group commit) as unary calls do.
- Client side: once sent, a write whose stream breaks before its answer has an unknown outcome
  and fails with etcd's "request timed out, possibly due to previous leader failure"
  (UNAVAILABLE), as a write abandoned at a failed leader does.
"""
from __future__ import annotations

import asyncio

from kubefabric.etcd import errors
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb

from .mux import CODES, NO_OPERATION, MuxStream
from .replicas import LEADER_FAILED

# WriteRequest.op and the unary requests' etcd field = the Shard method of that name
KV_WRITE_RESPONSES = {"put": spb.PutResponse, "delete_range": spb.DeleteRangeResponse,
                      "txn": spb.TxnResponse}


async def apply_kv_write(shard, field: str, request):
    """A Shard API write request (spb.PutRequest, ...) applied on `shard`, the leader: its etcd
    message in `field` goes to the shard method of that name, the answer comes back in the
    response's `field` with the shard's committed revision."""
    resp = await getattr(shard, field)(getattr(request, field), request.clock.sync_rev)
    return KV_WRITE_RESPONSES[field](**{field: resp}, committed_rev=shard.state.committed)


async def on_leader(node, field: str, request):
    """One write read from a Writes stream (mux.serve's `run`), on this node if it leads."""
    if field not in KV_WRITE_RESPONSES:
        raise NO_OPERATION
    shard = node.local()
    if not shard.is_leader:
        raise errors.NOT_LEADER
    return await apply_kv_write(shard, field, request)


# WriteBatches' messages, for mux.serve: the writes a message carries, the message of answers
COALESCED = (lambda msg: msg.requests, lambda answers: spb.WriteResponses(responses=answers))


class WriteStream(MuxStream):
    """`await write("put", spb.PutRequest(...))` gives the spb.PutResponse or raises its
    EtcdError (LEADER_FAILED when the stream broke before the answer). On WriteBatches: the
    writes waiting to be sent go in one message."""

    METHOD = "WriteBatches"
    COALESCED = True

    def batch(self, requests: list):
        return spb.WriteRequests(requests=requests)

    def answers(self, msg) -> list:
        return msg.responses

    def request(self, rid: int, field: str, op):
        return spb.WriteRequest(id=rid, **{field: op})

    def settle(self, answer: asyncio.Future, msg) -> None:
        if msg.code:
            answer.set_exception(errors.from_status(CODES[msg.code], msg.message))
        else:
            answer.set_result(getattr(msg, msg.WhichOneof("result")))

    def lost(self, answer: asyncio.Future) -> None:
        answer.set_exception(LEADER_FAILED)

    async def write(self, field: str, request):
        answer = await self.send(field, request)
        try:
            return await answer
        finally:
            answer.cancel()  # a no-op once answered
