"""`shop`: the example app's processes and its demo.

    shop function   the pricing function (CloudEvents over HTTP)
    shop operator   the invoice operator (kopf), leading through a Lease
    shop demo       create orders and print what each layer did with them

All of them reach kube-apiserver the usual way: in a pod through its service account, elsewhere
through $KUBECONFIG or ~/.kube/config.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default=os.environ.get("SHOP_LOG_LEVEL", "info"),
                        choices=("debug", "info", "warning", "error"),
                        help="[env SHOP_LOG_LEVEL; default info]")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from shop import demo, function, operator
    for name, module, what in (
            ("function", function, "the pricing function: CloudEvents in, status.total out"),
            ("operator", operator, "the invoice operator: an invoice ConfigMap and archive entry per Order"),
            ("demo", demo, "create orders and print what the function, the operator and the REST layer did")):
        sub = commands.add_parser(name, help=what, description=(module.__doc__ or what).split("\n\n")[0])
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "aiohttp.access", "kopf.objects" if args.log_level != "debug" else ""):
        if noisy:
            logging.getLogger(noisy).setLevel(logging.WARNING)

    from shop import telemetry
    tracing = args.command != "demo" and telemetry.setup(f"shop-{args.command}")
    run = {"function": function.serve, "operator": operator.run, "demo": demo.run}[args.command]
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    finally:
        if tracing:
            telemetry.shutdown()


if __name__ == "__main__":
    sys.exit(main())
