"""The Order resource, its price list and the names every layer agrees on."""
from __future__ import annotations

import asyncio

import httpx2
from lightkube.generic_resource import create_namespaced_resource

GROUP = "shop.example.com"
VERSION = "v1"
PLURAL = "orders"
KIND = "Order"
API_VERSION = f"{GROUP}/{VERSION}"

Order = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)

# What a call to kube-apiserver raises when no answer came (lightkube's transport: a read, pool
# or connect timeout, a broken connection), as opposed to ApiError, an answer that says no.
# Every layer treats these as "try again", never as a reason to exit.
UNANSWERED: tuple[type[BaseException], ...] = (httpx2.TransportError, OSError, asyncio.TimeoutError)

# Prices in cents. An order with a SKU not listed here is not priced: its status says why.
PRICES: dict[str, int] = {
    "widget": 1250,
    "gadget": 4999,
    "gizmo": 300,
    "sprocket": 75,
    "doohickey": 1999,
}


class UnknownSku(ValueError):
    pass


def price(spec: dict) -> int:
    """The order's total in cents: the sum of quantity × unit price over its items."""
    total = 0
    for item in spec.get("items") or []:
        sku = item.get("sku")
        if sku not in PRICES:
            raise UnknownSku(f"unknown SKU {sku!r} (known: {', '.join(sorted(PRICES))})")
        total += PRICES[sku] * int(item.get("quantity", 1))
    return total


def invoice_name(order_name: str) -> str:
    """The invoice ConfigMap of an order (the CRD limits Order names to 63 characters)."""
    return f"invoice-{order_name}"
