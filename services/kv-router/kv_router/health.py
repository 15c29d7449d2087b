"""grpc.health.v1 with etcd's answers: the empty service name is the server; any other name is
'unknown service' (NOT_FOUND), as etcd says."""
from __future__ import annotations

import grpc

from kubefabric.rpc.server import Health


class HealthService(Health):
    async def Check(self, request, context):
        if request.service:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return await super().Check(request, context)
