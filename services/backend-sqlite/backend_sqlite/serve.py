"""`kubefabric backend-sqlite`: the shard service over a SQLite file (a non-embedded SQLite shard).
Replicas on the same host and directory share the file; the leader holds the lease in it
(kubefabric.shard.leadership)."""
from __future__ import annotations

from kubefabric.shardsvc.serve import make_command

command = make_command("backend-sqlite", ("sqlite",), 2390,
                       "sqlite:///var/lib/kubefabric/shard-a",
                       "backend_sqlite.store:SqliteStore", "Run one replica of a shard service on a SQLite file")
