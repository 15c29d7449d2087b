"""The REST layer's client side: "orders of customer X over amount Y", asked through
kube-apiserver of the aggregated API `kubefabric aggregation` serves (examples/shop/reports:
the OrderReport resource and its hooks).

    GET /apis/reports.shop.example.com/v1alpha1/namespaces/<ns>/orderreports/-/query?customer=X&minTotal=Y

lightkube has no call for a custom endpoint, so the request goes through lightkube's own HTTP
client adapter: same kubeconfig, same credentials and CA as every other call of the app.
"""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

from lightkube import AsyncClient
from lightkube.config.client_adapter import AsyncClient as HTTPClient, ConnectionParams

REPORT_GROUP = "reports.shop.example.com"
REPORT_VERSION = "v1alpha1"


class NotServed(RuntimeError):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


async def query(client: AsyncClient, namespace: str, customer: str, min_total: int) -> dict:
    """The OrderReportResult: {"customer", "minTotal", "count", "sum", "orders": [{name, total}]}."""
    path = (f"/apis/{REPORT_GROUP}/{REPORT_VERSION}/namespaces/{namespace}/orderreports/-/query?"
            + urlencode({"customer": customer, "minTotal": str(min_total)}))
    async with HTTPClient(client.config, ConnectionParams()) as http:
        resp = await http.get(path)
    if resp.status_code in (404, 503):   # no APIService, or its server is down
        raise NotServed(f"orderreports.{REPORT_GROUP} is not served (HTTP {resp.status_code}: is "
                        "`kubefabric aggregation --crd-dir examples/shop/reports` registered?)",
                        resp.status_code)
    if resp.status_code != 200:
        raise RuntimeError(f"GET {path}: HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.json()


async def query_when_available(client: AsyncClient, namespace: str, customer: str, min_total: int,
                               wait_s: float) -> dict:
    """query(), asked again for up to `wait_s` while kube-apiserver answers 503: its aggregator
    marks an APIService available only after a successful check of the server behind it, so
    for a while after that server starts (and whenever a check failed) it answers 503."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await query(client, namespace, customer, min_total)
        except NotServed as err:
            if err.status != 503 or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(1)


async def summary(client: AsyncClient, namespace: str, customers: tuple[str, ...], min_total: int = 10_000,
                  wait_s: float = 60.0) -> str:
    """One line: each customer's orders over `min_total` cents, as the REST layer answers
    (waiting up to `wait_s` for the aggregated API to become available)."""
    parts = []
    for customer in customers:
        result = await query_when_available(client, namespace, customer, min_total, wait_s)
        parts.append(f"{customer} {result['count']} ({result['sum'] / 100:.2f})")
    return f"orders over {min_total / 100:.2f} by customer (orderreports query): " + ", ".join(parts)
