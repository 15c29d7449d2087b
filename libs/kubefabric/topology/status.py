"""`kubefabric topology status`: the label and field indexes of every shard behind a kv-router,
and whether they are ready (kubefabric.query.v1.Query/Indexes).

Exit status: 0 every index is ready; 1 some index is still being built (or pending) when
--wait runs out, or the router could not be asked; 2 bad command line.
"""
from __future__ import annotations

from kubefabric.config import Duration, Endpoints, Flag, add_flags

FLAGS = [
    Flag("--endpoints", "http://127.0.0.1:2379", "kv-router's client URL (http:// plaintext or "
         "https://); the first of a comma-separated list is asked",
         type=Endpoints("http", "https", optional=False)),
    Flag("--ca-file", "", "CA certificate (PEM) verifying an https:// router (default: the "
         "system's trust roots)"),
    Flag("--cert-file", "", "client certificate (PEM) when the router requires one"),
    Flag("--key-file", "", "private key (PEM) of --cert-file"),
    Flag("--wait", "0s", "wait up to this long for every index to be ready (e.g. 10m)",
         type=Duration()),
    Flag("--timeout", "10s", "how long one call to the router may take",
         type=Duration(positive=True)),
]


def add_command(sub) -> None:
    s = sub.add_parser(
        "status", help="Show the shards' label and field indexes and whether they are ready",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1])
    add_flags(s, FLAGS)
    s.set_defaults(func=run)


def run(args) -> int:
    from . import indexes  # loads grpc: not while the command line is built (kubefabric.cli)
    return indexes.run(args)
