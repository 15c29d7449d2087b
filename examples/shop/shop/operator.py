"""The invoice operator (kopf): each Order is reconciled into an invoice ConfigMap it owns, and
into an entry of the invoice archive outside Kubernetes.

- The ConfigMap `invoice-<order>` carries an ownerReference to its Order (controller: true), so
  in a cluster kube-controller-manager's garbage collector deletes it with the Order. The
  operator does not rely on it: its finalizer deletes the invoice too (a platform without the
  garbage collector, like the local stack and the tests, still loses no invoice and keeps none).
- The archive entry is outside Kubernetes: a finalizer (shop.example.com/invoice-archive) keeps
  a deleted Order until the operator removed its entry and its invoice.
- The invoice follows the order: written on create, on spec changes, when the pricing function
  sets status.total, and at every operator start (resume). Writes are server-side apply with
  one field manager: repeating one is a no-op, so reconciling twice is harmless.
- One operator replica acts at a time: it leads while it holds a coordination.k8s.io Lease
  (leader.py) and exits when it loses it (its supervisor restarts it as a standby).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket

import kopf
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import ConfigMap

from shop import model
from shop.archive import Archive
from shop.leader import LeaderElector

log = logging.getLogger("shop.operator")

FIELD_MANAGER = "shop-operator"
FINALIZER = f"{model.GROUP}/invoice-archive"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.persistence.finalizer = FINALIZER
    # kopf's bookkeeping in annotations of our group, not in the Order's status (its schema is ours)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=model.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=model.GROUP, key="last-handled-configuration")
    # one Kubernetes Event per failure, not one per successful handler (10,000 orders = 10,000 Events)
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True   # the Lease decides who acts, not kopf's peering objects


def invoice(body: kopf.Body) -> dict[str, str]:
    """The invoice's content: what the customer ordered, and the total once priced."""
    spec, status = body.get("spec", {}), body.get("status", {})
    lines = [f"{item['quantity']} x {item['sku']}" for item in spec.get("items", [])]
    if "total" in status:
        total, state = str(status["total"]), "final"
    elif status.get("pricingError"):
        total, state = "", "unpriceable"
    else:
        total, state = "", "pending"
    return {"customer": spec.get("customer", ""), "lines": "\n".join(lines), "total": total, "state": state}


async def reconcile(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch) -> None:
    name, namespace, uid = body.metadata.name, body.metadata.namespace, body.metadata.uid
    data = invoice(body)
    config_map = ConfigMap(
        metadata=ObjectMeta(
            name=model.invoice_name(name), namespace=namespace,
            labels={"app.kubernetes.io/part-of": "shop", "app.kubernetes.io/managed-by": FIELD_MANAGER,
                    f"{model.GROUP}/order": name, f"{model.GROUP}/customer": data["customer"]},
            ownerReferences=[OwnerReference(apiVersion=model.API_VERSION, kind=model.KIND, name=name, uid=uid,
                                            controller=True, blockOwnerDeletion=True)]),
        data=data)
    # archive first: an invoice ConfigMap anyone can see is already in the archive (what
    # status.invoice.archived says), and a failed apply is retried by kopf with the same content
    memo.archive.put(namespace, name, {"uid": uid, "order": name, **data})
    await memo.client.apply(config_map, field_manager=FIELD_MANAGER, force=True)
    wanted = {"configMap": model.invoice_name(name), "archived": True}
    if body.get("status", {}).get("invoice") != wanted:
        patch.status["invoice"] = wanted
    log.info("invoice %s/%s: %s %s", namespace, model.invoice_name(name), data["state"], data["total"])


@kopf.on.resume(model.GROUP, model.PLURAL)
@kopf.on.create(model.GROUP, model.PLURAL)
@kopf.on.update(model.GROUP, model.PLURAL)
async def order_changed(body, memo, patch, **_) -> None:
    await reconcile(body, memo, patch)


@kopf.on.field(model.GROUP, model.PLURAL, field="status.total")
@kopf.on.field(model.GROUP, model.PLURAL, field="status.pricingError")
async def order_priced(body, memo, patch, **_) -> None:
    await reconcile(body, memo, patch)


async def delete_invoice(client: AsyncClient, namespace: str, name: str, uid: str) -> bool:
    """Deletes the order's invoice if this order (this uid) owns it: an invoice of an older
    order of the same name, or someone else's ConfigMap, is left alone. False: nothing deleted."""
    try:
        config_map = await client.get(ConfigMap, model.invoice_name(name), namespace=namespace)
        owners = config_map.metadata.ownerReferences or []
        if not any(o.uid == uid and o.kind == model.KIND for o in owners):
            return False
        await client.delete(ConfigMap, model.invoice_name(name), namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:   # never written, or the garbage collector was first
            return False
        raise
    return True


@kopf.on.delete(model.GROUP, model.PLURAL)
async def order_deleted(body, memo, **_) -> None:
    """The finalizer's work: the archive entry and the invoice go with the order (in a cluster
    the garbage collector would also delete the invoice, by its ownerReference)."""
    name, namespace, uid = body.metadata.name, body.metadata.namespace, body.metadata.uid
    removed = memo.archive.remove(namespace, name, uid)
    deleted = await delete_invoice(memo.client, namespace, name, uid)
    log.info("order %s/%s deleted: archive entry %s, invoice %s", namespace, name,
             "removed" if removed else "absent", "deleted" if deleted else "absent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--namespace", action="append", default=None,
                        help="namespace to watch (repeatable) [env SHOP_NAMESPACES, comma-separated; default: all]")
    parser.add_argument("--archive-dir", default=env("SHOP_ARCHIVE_DIR", "shop-archive"),
                        help="the invoice archive (outside Kubernetes) [env SHOP_ARCHIVE_DIR; default ./shop-archive]")
    parser.add_argument("--lease-namespace", default=env("SHOP_LEASE_NAMESPACE", "default"),
                        help="namespace of the leader-election Lease [env SHOP_LEASE_NAMESPACE; default default]")
    parser.add_argument("--lease-name", default=env("SHOP_LEASE_NAME", "shop-operator"),
                        help="name of the leader-election Lease [env SHOP_LEASE_NAME; default shop-operator]")
    parser.add_argument("--identity", default=env("SHOP_IDENTITY", f"{socket.gethostname()}-{os.getpid()}"),
                        help="this replica's name in the Lease [env SHOP_IDENTITY; default HOST-PID]")
    parser.add_argument("--lease-duration", type=float, default=float(env("SHOP_LEASE_DURATION", "15")),
                        help="seconds a standby waits for a silent leader [env SHOP_LEASE_DURATION; default 15]")


async def run(args: argparse.Namespace) -> int:
    namespaces = args.namespace or [n for n in os.environ.get("SHOP_NAMESPACES", "").split(",") if n]
    client = AsyncClient(field_manager=FIELD_MANAGER)
    elector = LeaderElector(client, args.lease_namespace, args.lease_name, args.identity,
                            lease_duration=args.lease_duration, renew_deadline=args.lease_duration * 2 / 3,
                            retry_period=args.lease_duration / 7.5)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):   # until kopf runs (it installs its own)
        loop.add_signal_handler(sig, stop.set)
    campaign = asyncio.create_task(elector.acquire())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({campaign, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not campaign.done():
        campaign.cancel()
        await client.close()
        log.info("stopped before leading")
        return 0
    memo = kopf.Memo(client=client, archive=Archive(args.archive_dir))
    operator = asyncio.create_task(kopf.operator(
        standalone=True, clusterwide=not namespaces, namespaces=namespaces, memo=memo, stop_flag=stop))
    holding = asyncio.create_task(elector.hold())
    await asyncio.wait({operator, holding}, return_when=asyncio.FIRST_COMPLETED)
    if holding.done():   # lost the lease: stop acting now, exit non-zero so a supervisor restarts us
        stop.set()
        await operator
        await client.close()
        return 1
    holding.cancel()
    await elector.release()
    await client.close()
    error = operator.exception()
    if error:
        log.error("operator stopped: %s", error)
        return 1
    return 0
