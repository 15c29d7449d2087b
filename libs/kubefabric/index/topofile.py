"""A shard service's index settings: the `index:` rules of the topology file (--topology) that
route to the service's shard (--name), re-read on SIGHUP and when the file changes.

The shard service reads the same file as kv-router (there is no channel from routers to
shards for settings, and several routers may briefly disagree during a reload). A file that
does not load keeps the previous settings and is logged; indexes never change on a bad file.
"""
from __future__ import annotations

import logging
from typing import Callable

from kubefabric.topology.filewatch import TopologyFileWatch
from kubefabric.topology.load import TopologyError, load_topology

from .rules import IndexRule, index_rules

log = logging.getLogger("kubefabric.index")


def load_rules(path: str, shard: str) -> tuple[IndexRule, ...]:
    """The shard's index rules in `path` (TopologyError when the file is invalid)."""
    topology = load_topology(path)
    if shard not in topology.shards:
        raise TopologyError(f"{path}: no shard named {shard!r} (--name): its shards are "
                            f"{', '.join(topology.shards)}")
    return index_rules(topology, shard)


class IndexSettingsFile(TopologyFileWatch):
    task_name = "index-settings"

    def __init__(self, path: str, shard: str, apply: Callable[[tuple[IndexRule, ...]], None]):
        super().__init__(path)
        self.shard, self.apply = shard, apply

    def reload(self, why: str) -> None:
        try:
            rules = load_rules(self.path, self.shard)
        except TopologyError as err:
            log.error("topology reload (%s) refused, the index settings stay as they were: %s",
                      why, str(err).replace("\n", "; "))
            return
        log.info("topology reloaded (%s): %d index rule(s) for shard %s", why, len(rules),
                 self.shard)
        self.apply(rules)
