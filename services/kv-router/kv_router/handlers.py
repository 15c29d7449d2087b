"""The shape every unary etcd handler has: validate → core → map errors → header.

`etcd_unary` turns an EtcdError raised anywhere below into the gRPC status etcd would send
(code and exact message), and any other exception into INTERNAL with a one-line reason (logged
with its traceback here, never sent to the client).
"""
from __future__ import annotations

import functools
import logging

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError

log = logging.getLogger("kubefabric.router")


def etcd_unary(method):
    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except EtcdError as err:
            await context.abort(err.code, err.message)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # a bug or a storage failure: say so, keep serving
            log.exception("%s failed", method.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, f"kubefabric: internal error: {exc}")
    return wrapper


def unimplemented(what: str):
    """A unary handler that answers UNIMPLEMENTED with a sentence naming `what`."""
    err = errors.unimplemented(what)

    async def handler(self, request, context):
        await context.abort(err.code, err.message)
    return handler
