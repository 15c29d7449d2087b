"""/livez, /readyz and /metrics of the trigger service (aiohttp), on one port."""
from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubefabric.telemetry.metrics import parse_address

log = logging.getLogger("kubefabric.trigger")


async def serve_health(address: str, svc) -> web.AppRunner:
    async def livez(_):
        return web.Response(text="ok\n")

    async def readyz(_):
        if svc.ready.is_set() and not svc.membership.lost.is_set():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready: joining the replicas\n")

    async def metrics(_):
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/livez", livez), web.get("/healthz", livez), web.get("/readyz", readyz),
                    web.get("/metrics", metrics)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = parse_address(address)
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as err:
        log.error("cannot serve health and metrics on %s: %s (set --listen-address)", address,
                  err.strerror or err)
        await runner.cleanup()
        return None
    log.info("serving /livez, /readyz and /metrics on http://%s", address)
    return runner
