"""`kubefabric backend-mysql`: one replica of a shard service on MySQL 8 or MariaDB 10.6+."""
from __future__ import annotations

from kubefabric.shardsvc.serve import make_command

command = make_command("backend-mysql", ("mysql",), 2392,
                       "mysql://kubefabric:secret@db:3306/kubefabric",
                       "backend_mysql.store:MysqlStore", "Run one replica of a shard service on MySQL or MariaDB")
