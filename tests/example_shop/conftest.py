"""The example app (examples/shop) on a real stack (tests/harness/shop.py): kube-apiserver on
kv-router, which routes by the example's own
topology: Orders to a shard service on PostgreSQL, everything else to a SQLite shard service.
One stack per test module (kube-apiserver takes seconds to start; CPU is scarce); tests use
namespaces of their own.

    def test_x(shop):
        shop.api.kubectl("apply", "-f", ...)
        op = shop.start_operator("a")          # `shop operator`, a process of its own
        fn = shop.start_function()             # `shop function`; fn.url
"""
from __future__ import annotations

import pytest

from harness.shop import ShopStack


@pytest.fixture(scope="module")
def shop(tmp_path_factory, postgres_server):
    stack = ShopStack(tmp_path_factory.mktemp("shop"), postgres_server)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
