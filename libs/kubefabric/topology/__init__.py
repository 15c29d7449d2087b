"""Topology: which shard owns which key (DESIGN §4). Format: docs/topology.md.

    from kubefabric.topology import load_topology
    topo = load_topology("topology.yaml")
    topo.route(b"/registry/pods/tenant-a/web")        # -> shard name
    topo.shards_for_range(b"/registry/pods/", b"/registry/pods0")
"""
from .load import TopologyError, load_topology, parse_topology
from .model import (CustomResourceRule, NamespaceRule, PrefixRule, RegexpRule, Rule, ShardSpec,
                    TLSSpec, Topology)
from .reload import check_reload, find_moved_key

__all__ = ["TopologyError", "load_topology", "parse_topology", "Topology", "ShardSpec", "TLSSpec",
           "Rule", "PrefixRule", "RegexpRule", "NamespaceRule", "CustomResourceRule",
           "check_reload", "find_moved_key"]
