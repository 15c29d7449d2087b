"""etcd's Auth service (users, roles, permissions, auth enable/disable, Authenticate).

Every request goes to the default shard, whose leader applies it to the auth store with the
caller's identity (kubefabric.shard.authstore); this replica takes the store it answers with at
once. Passwords are bcrypt-hashed here (etcd's API layer does the same, at --bcrypt-cost) and
only the hash travels; Authenticate compares in a worker thread, so a slow bcrypt never holds
up the event loop. Neither passwords nor tokens are logged.
"""
from __future__ import annotations

import asyncio
import base64
import logging

import bcrypt

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc
from kubefabric.rpc.handlers import etcd_unary

from .authguard import AuthGuard

log = logging.getLogger("kubefabric.router.auth")

DEFAULT_BCRYPT_COST = 10  # etcd's --bcrypt-cost default (bcrypt.DefaultCost)


def _hash(password: str, cost: int) -> str:
    return base64.b64encode(bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost))).decode()


def _matches(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # not a bcrypt hash (a no-password user has none)
        return False


class AuthService(rpc.AuthServicer):
    def __init__(self, shard, guard: AuthGuard, bcrypt_cost: int = DEFAULT_BCRYPT_COST):
        self.shard = shard
        self.guard = guard
        self.bcrypt_cost = bcrypt_cost

    async def _apply(self, method: str, request, context):
        caller = self.guard.caller(context)
        resp, state, generation = await self.shard.auth_apply(method, request, caller)
        self.guard.take(state, generation)
        self.shard.state.fill(resp.header)
        return resp

    @etcd_unary
    async def Authenticate(self, request: pb.AuthenticateRequest, context) -> pb.AuthenticateResponse:
        await self.guard.refresh()  # etcd reads the store linearizably here
        state = self.guard.state
        if not state.enabled:
            raise errors.AUTH_NOT_ENABLED
        user = state.users.get(request.name)
        if user is None:
            log.warning("invalid authentication was requested for user %r", request.name)
            raise errors.AUTH_FAILED
        if user.HasField("options") and user.options.no_password:
            raise errors.NO_PASSWORD_USER
        if not await asyncio.to_thread(_matches, request.password, user.password):
            log.info("invalid password for user %r", request.name)
            raise errors.AUTH_FAILED
        resp = pb.AuthenticateResponse(token=self.guard.tokens.assign(state, request.name))
        self.shard.state.fill(resp.header)
        return resp

    @etcd_unary
    async def UserAdd(self, request: pb.AuthUserAddRequest, context) -> pb.AuthUserAddResponse:
        if not (request.HasField("options") and request.options.no_password):
            request.hashedPassword = await asyncio.to_thread(_hash, request.password, self.bcrypt_cost)
            request.password = ""
        return await self._apply("UserAdd", request, context)

    @etcd_unary
    async def UserChangePassword(self, request: pb.AuthUserChangePasswordRequest, context):
        if request.password:
            request.hashedPassword = await asyncio.to_thread(_hash, request.password, self.bcrypt_cost)
            request.password = ""
        return await self._apply("UserChangePassword", request, context)


def _passthrough(method: str):
    async def handler(self, request, context):
        return await self._apply(method, request, context)
    handler.__name__ = method
    handler.__qualname__ = f"AuthService.{method}"
    return etcd_unary(handler)


for _method in ("AuthEnable", "AuthDisable", "AuthStatus", "UserGet", "UserList", "UserDelete",
                "UserGrantRole", "UserRevokeRole", "RoleAdd", "RoleGet", "RoleList", "RoleDelete",
                "RoleGrantPermission", "RoleRevokePermission"):
    setattr(AuthService, _method, _passthrough(_method))
