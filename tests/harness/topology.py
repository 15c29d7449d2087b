"""Topology files for tests, written from their parts rather than as YAML text by hand."""
from __future__ import annotations

import yaml


def topology_yaml(shards: dict[str, str], rules: list[dict], default: str | None = None) -> str:
    """A topology file's text: `shards` as name -> endpoint (in that order), `rules` as the file
    lists them, `default` the default shard (none: the file names none). Endpoints may hold
    str.format fields ("grpc://{tenants}"): the text keeps them for the caller to fill."""
    doc: dict = {"shards": [{"name": name, "endpoint": endpoint} for name, endpoint in shards.items()]}
    if default is not None:
        doc["default"] = default
    doc["rules"] = rules
    return yaml.safe_dump(doc, sort_keys=False)
