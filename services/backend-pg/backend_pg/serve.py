"""`kubefabric backend-pg`: one replica of a shard service on PostgreSQL."""
from __future__ import annotations

from kubefabric.shardsvc.serve import make_command

command = make_command("backend-pg", ("postgres",), 2391,
                       "postgres://kubefabric:secret@db:5432/kubefabric?sslmode=verify-full",
                       "backend_pg.store:PostgresStore", "Run one replica of a shard service on PostgreSQL")
