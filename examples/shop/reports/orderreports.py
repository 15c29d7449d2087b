"""Hooks of orderreports.reports.shop.example.com (orderreports.yaml beside this file), loaded by
`kubefabric aggregation --crd-dir examples/shop/reports`: the REST layer of the shop.

    GET .../namespaces/<ns>/orderreports/<name>/result      the stored report's answer
    GET .../namespaces/<ns>/orderreports/-/query?customer=X&minTotal=Y    an ad-hoc one

The customer is a field selector on Orders (spec.customer, a selectableField of the Order CRD):
the aggregation server sends it through kv-router's Query API to the orders shard, whose index
answers it in SQL; "over Y" is checked here (field selectors have no greater-than). Orders not
priced yet (no status.total) are not over any amount.
"""
from aggregation.hooks import Hooks

hooks = Hooks("orderreports.reports.shop.example.com")
API_VERSION = "reports.shop.example.com/v1alpha1"


def _bad_request(message: str) -> tuple[int, dict]:
    return 400, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "code": 400, "reason": "BadRequest", "message": message}


async def answer(ctx, customer: str, min_total: int) -> dict:
    orders = await ctx.list(fieldSelector=f"spec.customer={customer}", resource="orders.shop.example.com")
    over = sorted((o for o in orders if (o.get("status") or {}).get("total", -1) > min_total),
                  key=lambda o: o["metadata"]["name"])
    return {"apiVersion": API_VERSION, "kind": "OrderReportResult", "customer": customer, "minTotal": min_total,
            "count": len(over), "sum": sum(o["status"]["total"] for o in over),
            "orders": [{"name": o["metadata"]["name"], "total": o["status"]["total"]} for o in over]}


@hooks.subresource("result")
async def result(ctx):
    spec = ctx.object["spec"]
    return await answer(ctx, spec["customer"], int(spec.get("minTotal", 0)))


@hooks.collection("query")
async def query(ctx):
    customer, min_total = ctx.query.get("customer", ""), ctx.query.get("minTotal", "0")
    if not customer or "," in customer or "=" in customer:
        return _bad_request("query: give one customer, e.g. ?customer=acme&minTotal=1000")
    if not min_total.isdigit():
        return _bad_request(f"query: minTotal must be a whole number of cents, not {min_total!r}")
    return await answer(ctx, customer, int(min_total))
