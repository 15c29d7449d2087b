"""etcd's authentication and authorization (issue 20 point 1). Its errors are etcd's, in
kubefabric.etcd.errors with the rest (one table, so `from_status` knows them too).

- `state`: the auth store (users, roles, enabled flag, auth revision) and its changes, applied
  by the default shard's writer exactly as etcd's auth store applies them.
- `perms`: permission checks over key ranges (etcd's unified range permissions).
- `tokens`: simple and JWT tokens.
- `guard`: what kv-router asks before serving a call: who is calling, and may they.
"""
