"""The REST layer's client side: "orders of customer X over amount Y", asked through
kube-apiserver of the aggregated API `kubefabric aggregation` serves (examples/shop/reports:
the OrderReport resource and its hooks).

    GET /apis/reports.shop.example.com/v1alpha1/namespaces/<ns>/orderreports/-/query?customer=X&minTotal=Y

lightkube has no call for a custom endpoint, so the request goes through lightkube's own HTTP
client adapter: same kubeconfig, same credentials and CA as every other call of the app.
"""
from __future__ import annotations

from urllib.parse import urlencode

from lightkube import AsyncClient
from lightkube.config.client_adapter import AsyncClient as HTTPClient, ConnectionParams

REPORT_GROUP = "reports.shop.example.com"
REPORT_VERSION = "v1alpha1"


class NotServed(RuntimeError):
    pass


async def query(client: AsyncClient, namespace: str, customer: str, min_total: int) -> dict:
    """The OrderReportResult: {"customer", "minTotal", "count", "sum", "orders": [{name, total}]}."""
    path = (f"/apis/{REPORT_GROUP}/{REPORT_VERSION}/namespaces/{namespace}/orderreports/-/query?"
            + urlencode({"customer": customer, "minTotal": str(min_total)}))
    async with HTTPClient(client.config, ConnectionParams()) as http:
        resp = await http.get(path)
    if resp.status_code in (404, 503):   # no APIService, or its server is down
        raise NotServed(f"orderreports.{REPORT_GROUP} is not served (HTTP {resp.status_code}: is "
                        "`kubefabric aggregation --crd-dir examples/shop/reports` registered?)")
    if resp.status_code != 200:
        raise RuntimeError(f"GET {path}: HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.json()


async def summary(client: AsyncClient, namespace: str, customers: tuple[str, ...], min_total: int = 10_000) -> str:
    """One line: each customer's orders over `min_total` cents, as the REST layer answers."""
    parts = []
    for customer in customers:
        result = await query(client, namespace, customer, min_total)
        parts.append(f"{customer} {result['count']} ({result['sum'] / 100:.2f})")
    return f"orders over {min_total / 100:.2f} by customer (orderreports query): " + ", ".join(parts)
