"""The `kubefabric` command. Each service contributes its subcommand through the
`kubefabric.commands` entry-point group, so libs/ never imports a service.

Every invocation loads every command module to build the parser, so a command module imports
only its flags and checks; its process (`main`, with everything it needs imported at the top)
is imported inside `run`, once the flags are checked. This is the one place imports wait: grpc
must not load before kv-router's --cipher-suites has set GRPC_SSL_CIPHER_SUITES (grpc reads it
once, when it loads), and `kubefabric --help` stays quick. kubefabric.tls builds credentials
the same way (it is used by the checks)."""
from __future__ import annotations

import sys
from importlib.metadata import entry_points

from kubefabric.config import FlagParser


def build_parser() -> FlagParser:
    """The whole command line: `kubefabric` and every installed subcommand."""
    parser = FlagParser(
        prog="kubefabric",
        description="KubeFabric: an etcd v3 compatible, routed data layer for Kubernetes.",
    )
    # subcommands' parsers are FlagParsers too: a bad flag is one line and exit status 2
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for ep in sorted(entry_points(group="kubefabric.commands"), key=lambda e: e.name):
        ep.load()(sub)  # each entry point adds its parser and sets func=
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
