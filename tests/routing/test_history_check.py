"""A randomized concurrent history across three shards (harness.histload), checked by
harness.histcheck: kv-router on harness.servers.THREE_SHARDS (SQLite, PostgreSQL and MariaDB
shards, the router's own merged watch feed)."""
from __future__ import annotations

from harness.histload import run_history


def test_randomized_history_across_three_shards(server_factory, say):
    server = server_factory.three_shards(["--watch-progress-notify-interval=300ms"])
    run_history(server.endpoint, say)
