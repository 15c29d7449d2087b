"""A shard's copy of etcd's auth store (kubefabric.auth.state): the default shard's leader holds
it, every change goes through the shard's writer (so it is ordered, fenced and durable like
any write) and takes effect once committed. It takes no KV revision: etcd's auth changes do not
move the MVCC revision either.

`generation` counts every committed change (AuthEnable included, which leaves etcd's auth
revision alone): kv-router replicas poll it to reload the store within a second.
"""
from __future__ import annotations

import asyncio

from kubefabric.auth import state as auth_state
from kubefabric.auth.state import AuthState
from kubefabric.auth.tokens import new_secret

META_GENERATION = "auth_generation"


class ShardAuth:
    def __init__(self):
        self.state = AuthState()
        self.generation = 0
        self._lock = asyncio.Lock()  # one change at a time: each applies to the last committed

    async def load(self, cur, meta: dict[str, int]) -> None:
        rows = await cur.rows("auth_all", {})
        self.state = auth_state.from_rows(rows, meta)
        self.generation = meta.get(META_GENERATION, 0)

    async def apply(self, writer, method: str, request, caller: str | None):
        """(response, state, generation) of one Auth request made by `caller`."""
        async with self._lock:
            resp, new = auth_state.apply(self.state, method, request, caller, new_secret())
            if new is not None:
                generation = self.generation + 1
                await writer().submit(_store, (new, generation))
                self.state, self.generation = new, generation
            return resp, self.state, self.generation


async def _store(applier, arg) -> None:
    state, generation = arg
    await applier.cur.execute("auth_clear", {})
    await applier.cur.executemany("auth_insert", [{"kind": k, "name": n, "value": v}
                                                  for k, n, v in auth_state.to_rows(state)])
    applier.meta_updates[auth_state.META_AUTH_REVISION] = state.revision
    applier.meta_updates[auth_state.META_AUTH_ENABLED] = int(state.enabled)
    applier.meta_updates[META_GENERATION] = generation
