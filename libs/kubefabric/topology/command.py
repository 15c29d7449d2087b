"""`kubefabric topology check FILE [KEY...]`: validate a topology file and show where keys go.

Exit status: 0 valid (warnings, if any, on stderr); 1 invalid topology, unreadable file or a
refused reload (--against); 2 bad command line (including a malformed KEY escape).
"""
from __future__ import annotations

import argparse
import asyncio
import re
import sys

from kubefabric.config import Bool, Flag, IntermixedParser, URLs, add_flags
from kubefabric.tls import ClientTLS

from .load import TopologyError, load_topology
from .model import show
from .reload import check_reload, scan_ranges
from .status import add_command as add_status_command

FORMAT = """\
A topology file routes keys to shards: rules are tried top to bottom, the first match
wins, keys no rule matches go to the default shard.

  default: main
  shards:
    - {name: main, endpoint: embedded}
    - name: tenants
      endpoint: grpc://pg-shard-0:2390,grpc://pg-shard-1:2390
      tls: {ca_file: /etc/kubefabric/ca.pem}
      compaction: {interval: 5m, retention: 1h}
  rules:
    - {prefix: /registry/events/, shard: main}
    - {namespace: tenant-a, resources: [pods, configmaps], shard: tenants}
    - {customresource: {group: example.com, resource: widgets}, shard: tenants}
    - {regexp: '/registry/leases/kube-node-lease/.*', shard: main}

regexp must match the whole key. namespace matches namespaced objects only (never the
Namespace object itself). Rules may only be appended while a router runs.
KEY and --range arguments may contain \\xNN for any byte and \\\\ for a backslash.
The full format: docs/topology.md.
"""

# `check --live` and `move` (kubefabric.topology.live)
MISPLACED = """\
check --live: connects to every shard service of FILE and lists each key a shard holds that
FILE routes to another shard, with whether the owner has the key too ("shadowed": clients see
the owner's copy; the misplaced one is only hidden) or not ("hidden": clients do not see it at
all until it is moved).

move: for each misplaced key, writes it to its owner through kv-router (`--endpoints`, which
runs FILE: the router routes the write, keeps revisions ordered and reaches embedded shards),
only if the owner does not have the key (a create-only txn: an owner's copy is never
overwritten), then deletes the misplaced copy on its shard service if it did not change
meanwhile (a txn guarded by its mod_revision). A shadowed copy is only deleted with
--drop-shadowed (its value is printed first). A key whose lease the owner does not know is left
where it is and reported. Every outcome is one line; the exit status says whether keys remain.

Embedded shards (inside kv-router) cannot be reached from here: their misplaced keys are logged
by kv-router at start-up and on reload; keys owned by an embedded shard are moved into it
through the router like any other.
"""


def command(subparsers) -> None:
    p = subparsers.add_parser(
        "topology", help="Check a topology file and show where keys are routed; show the "
                         "shards' indexes",
        description="Topology files: which shard owns which key.")
    # KEY... may come before or after the options (`check FILE --against OLD KEY...`)
    sub = p.add_subparsers(dest="topology_command", metavar="ACTION", required=True,
                           parser_class=IntermixedParser)
    c = sub.add_parser(
        "check", help="Validate a topology file; print the shard of each KEY",
        description=FORMAT, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("file", metavar="FILE", help="the topology YAML file")
    c.add_argument("keys", metavar="KEY", nargs="*",
                   help="keys to route; prints 'KEY -> SHARD (rule at line N: ...)' or "
                        "'(default)'")
    c.add_argument("--range", dest="ranges", metavar=("START", "END"), nargs=2, action="append",
                   default=[], help="print the shards a range read touches; END '' or \\x00 = "
                                    "every key >= START")
    c.add_argument("--against", metavar="OLD",
                   help="also check that a router running topology OLD may reload FILE (the "
                        "data-free part: rules only appended, shards kept, same default)")
    c.add_argument("--live", action="store_true",
                   help="also connect to FILE's shard services and list every key a shard holds "
                        "that FILE routes to another shard (misplaced keys; exit status 1 if "
                        "any); see docs/topology.md#misplaced-keys")
    c.set_defaults(func=run)
    m = sub.add_parser(
        "move", help="Move misplaced keys to the shards FILE routes them to",
        description=MISPLACED, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("file", metavar="FILE", help="the topology YAML file kv-router runs")
    add_flags(m, MOVE_FLAGS)
    m.set_defaults(func=run_move)
    add_status_command(sub)


MOVE_FLAGS = [
    Flag("--endpoints", "http://127.0.0.1:2379", "kv-router running FILE: keys are written to "
         "their owners through it", type=URLs(("http", "https"))),
    Flag("--ca-file", "", "CA of the router's certificate (https:// endpoints)"),
    Flag("--cert-file", "", "client certificate for a router that requires one"),
    Flag("--key-file", "", "the client certificate's key"),
    Flag("--drop-shadowed", "false", "also delete misplaced copies of keys their owner has too "
         "(clients see the owner's; the copy's value is printed first)", type=Bool(), const="true"),
    Flag("--dry-run", "false", "only print what would be done", type=Bool(), const="true"),
]


def parse_key(text: str) -> bytes:
    """Command-line text to key bytes: \\xNN is a byte, \\\\ a backslash, the rest UTF-8."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
        elif text.startswith("\\\\", i):
            out.append(0x5C)
            i += 2
        elif re.match(r"\\x[0-9A-Fa-f]{2}", text[i:i + 4]):
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            raise ValueError(f"bad escape in {text!r} at {i}: use \\xNN or \\\\")
    return bytes(out)


def run(args) -> int:
    try:
        keys = [parse_key(k) for k in args.keys]
        ranges = [(parse_key(s), parse_key(e)) for s, e in args.ranges]
    except ValueError as err:
        print(f"kubefabric topology check: {err}", file=sys.stderr)
        return 2
    try:
        topo = load_topology(args.file)
    except TopologyError as err:
        print(err, file=sys.stderr)
        return 1
    for w in topo.warnings:
        print(w, file=sys.stderr)
    print(f"{args.file}: valid: {len(topo.shards)} shard(s), {len(topo.rules)} rule(s), "
          f"default {topo.default}")
    for rule in topo.rules:
        if rule.index is not None:
            print(f"index: {rule.describe()} on shard {rule.shard}: {rule.index.summary()} "
                  f"(with metadata.name, metadata.namespace)")
    for key in keys:
        shard, rule = topo.explain(key)
        why = f"rule at line {rule.line}: {rule.summary()}" if rule else "default"
        print(f"{show(key)} -> {shard} ({why})")
    for start, end in ranges:
        end = b"" if end == b"\x00" else end
        shown = show(end) if end else "+inf"
        print(f"[{show(start)}, {shown}) -> {', '.join(topo.shards_for_range(start, end))}")
    status = _against(args.against, topo) if args.against else 0
    if args.live:
        status = max(status, asyncio.run(_live().check_live(topo)))
    return status


def run_move(args) -> int:
    try:
        topo = load_topology(args.file)
    except TopologyError as err:
        print(err, file=sys.stderr)
        return 1
    tls = None
    if args.ca_file or args.cert_file or args.key_file:
        tls = ClientTLS(args.ca_file, args.cert_file, args.key_file)
    return asyncio.run(_live().move(topo, args.endpoints, tls, args.drop_shadowed, args.dry_run))


def _against(path: str, new) -> int:
    try:
        old = load_topology(path)
        check_reload(old, new)
    except TopologyError as err:
        print(err, file=sys.stderr)
        print(f"reload from {path} refused", file=sys.stderr)
        return 1
    scan = scan_ranges(old, new)
    if not scan:
        print(f"reload from {path}: allowed (no existing key can change shard)")
    else:
        where = ", ".join(f"[{show(s)}, {show(e) if e else '(end)'})" for s, e in scan)
        print(f"reload from {path}: allowed if shard {old.default!r} holds no key the new rules "
              f"move, in {where} (the router checks this before switching)")
    return 0


def _live():
    """kubefabric.topology.live, imported when `--live` or `move` runs: it loads grpc, which
    must not load while the command line is built (kubefabric.cli)."""
    from . import live
    return live
