"""Create orders and print what each layer did with them: the function priced them (status.total),
the operator invoiced them (a ConfigMap owned by each order, an archive entry) and the REST layer
reports on them (orderreports.shop.example.com, when the aggregation service serves it).

    shop demo                       # 100 orders in namespace shop-demo
    shop demo --count 10 --delete   # then delete them and watch the invoices go
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import time

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace

from shop import model

log = logging.getLogger("shop.demo")

CUSTOMERS = ("acme", "globex", "initech", "umbrella", "hooli")


def orders(count: int, seed: int = 19) -> list[dict]:
    """`count` orders, the same ones for the same seed: order-000..., customers and items drawn
    from CUSTOMERS and the price list."""
    rnd = random.Random(seed)
    skus = sorted(model.PRICES)
    out = []
    for i in range(count):
        customer = CUSTOMERS[rnd.randrange(len(CUSTOMERS))]
        items = [{"sku": sku, "quantity": rnd.randint(1, 5)} for sku in rnd.sample(skus, rnd.randint(1, 3))]
        out.append({"apiVersion": model.API_VERSION, "kind": model.KIND,
                    "metadata": {"name": f"order-{i:03d}" if count <= 1000 else f"order-{i:05d}",
                                 "labels": {"shop.example.com/customer": customer,
                                            "shop.example.com/size": "large" if len(items) == 3 else "small"}},
                    "spec": {"customer": customer, "items": items}})
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=int(os.environ.get("SHOP_DEMO_COUNT", "100")),
                        help="orders to create [env SHOP_DEMO_COUNT; default 100]")
    parser.add_argument("--namespace", default=os.environ.get("SHOP_DEMO_NAMESPACE", "shop-demo"),
                        help="namespace for the orders (created if missing) [env SHOP_DEMO_NAMESPACE; default shop-demo]")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for the function and the operator [default 120]")
    parser.add_argument("--delete", action="store_true",
                        help="afterwards delete the orders and wait until their invoices are gone")


async def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        print("shop demo: --count must be at least 1")
        return 2
    client = AsyncClient(field_manager="shop-demo")
    try:
        return await _run(client, args)
    except ApiError as err:
        print(f"shop demo: kube-apiserver refused: {err.status.message}")
        return 1
    finally:
        await client.close()


async def _run(client: AsyncClient, args: argparse.Namespace) -> int:
    ns = args.namespace
    try:
        await client.create(Namespace(metadata=ObjectMeta(name=ns)))
    except ApiError as err:
        if err.status.code != 409:
            raise
    wanted = orders(args.count)
    t0 = time.monotonic()
    sem = asyncio.Semaphore(16)

    async def create(obj: dict) -> None:
        async with sem:
            try:
                await client.create(model.Order(obj), namespace=ns)
            except ApiError as err:
                if err.status.code != 409:   # already there from an earlier run: reported below
                    raise
    await asyncio.gather(*(create(o) for o in wanted))
    created = time.monotonic() - t0
    print(f"created {len(wanted)} orders in namespace {ns} in {created:.1f}s ({len(wanted) / created:.0f}/s) "
          f"through kube-apiserver; KubeFabric stores them under /registry/{model.GROUP}/{model.PLURAL}/{ns}/")
    names = {o["metadata"]["name"] for o in wanted}

    async def state() -> tuple[dict, set]:
        listed = {o.metadata.name: o async for o in client.list(model.Order, namespace=ns) if o.metadata.name in names}
        invoices = {c.metadata.name async for c in client.list(ConfigMap, namespace=ns,
                                                                labels={"app.kubernetes.io/part-of": "shop"})}
        return listed, invoices

    priced_at = invoiced_at = None
    deadline = time.monotonic() + args.timeout
    while True:
        listed, invoices = await state()
        priced = {n for n, o in listed.items() if "total" in (o.get("status") or {}) or
                  (o.get("status") or {}).get("pricingError")}
        final = {n for n, o in listed.items() if model.invoice_name(n) in invoices
                 and (o.get("status") or {}).get("invoice", {}).get("archived")}
        if priced_at is None and len(priced) == len(names):
            priced_at = time.monotonic() - t0
        if invoiced_at is None and len(final) == len(names):
            invoiced_at = time.monotonic() - t0
        if (priced_at and invoiced_at) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)

    totals = [(o.get("status") or {}).get("total") for o in listed.values()]
    cents = sum(t for t in totals if isinstance(t, int))
    print(f"function: {len(priced)}/{len(names)} orders priced "
          + (f"within {priced_at:.1f}s" if priced_at else "(not all: is the trigger and the function running?)")
          + f"; revenue {cents / 100:.2f}")
    sample = sorted(listed)[0]
    by = (listed[sample].get("status") or {}).get("pricedBy") or {}
    print(f"          e.g. {sample}: total {listed[sample].get('status', {}).get('total')} cents, "
          f"priced by event {by.get('eventId', '-')}")
    print(f"operator: {len(final)}/{len(names)} orders invoiced (ConfigMap invoice-<order> owned by the order, "
          "archive entry outside Kubernetes) "
          + (f"within {invoiced_at:.1f}s" if invoiced_at else "(not all: is the operator running?)"))
    await report(client, ns)
    ok = priced_at is not None and invoiced_at is not None
    if args.delete:
        ok = await delete(client, ns, names, args.timeout) and ok
    return 0 if ok else 1


async def report(client: AsyncClient, ns: str) -> None:
    """The REST layer: an OrderReport through the aggregated API, when it is served."""
    from shop import rest
    try:
        text = await rest.summary(client, ns, CUSTOMERS)
    except rest.NotServed as err:
        print(f"rest:     {err}")
        return
    print(f"rest:     {text}")


async def delete(client: AsyncClient, ns: str, names: set[str], timeout: float) -> bool:
    t0 = time.monotonic()
    for name in sorted(names):
        await client.delete(model.Order, name, namespace=ns)
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        left = {o.metadata.name async for o in client.list(model.Order, namespace=ns)} & names
        invoices = {c.metadata.name async for c in client.list(ConfigMap, namespace=ns,
                                                                labels={"app.kubernetes.io/part-of": "shop"})}
        if not left and not invoices & {model.invoice_name(n) for n in names}:
            print(f"deleted:  {len(names)} orders, their finalizers ran (archive entries and invoices "
                  f"removed) within {time.monotonic() - t0:.1f}s")
            return True
        await asyncio.sleep(0.5)
    print(f"deleted:  {len(left)} orders and {len(invoices)} invoices still there after {timeout:.0f}s "
          "(is the operator running?)")
    return False
