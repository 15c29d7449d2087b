"""Hooks of releases.ship.example.com (releases.yaml beside this file), loaded by
`kubefabric aggregation --crd-dir docs/examples/aggregation`:

- mutate: label every release with its service, so `kubectl get rel -l service=web` works;
- validate: a high-risk release needs a change ticket annotation;
- POST .../releases/<name>/approve: records who approved it (a custom subresource);
- GET  .../releases/-/summary: releases per service and how many await approval (a collection
  endpoint answered by a query through the data layer).
"""
import datetime

from aggregation.hooks import Hooks, Invalid

hooks = Hooks("releases.ship.example.com")


@hooks.mutate
def label_service(obj, old, ctx):
    obj["metadata"].setdefault("labels", {})["service"] = obj["spec"]["service"]


@hooks.validate
def high_risk_needs_ticket(obj, old, ctx):
    annotations = obj["metadata"].get("annotations") or {}
    if obj["spec"].get("risk") == "high" and "ship.example.com/ticket" not in annotations:
        raise Invalid("metadata.annotations", "a high-risk release needs a ship.example.com/ticket annotation")


@hooks.subresource("approve", methods=("POST",))
async def approve(ctx):
    release = ctx.object
    if release.get("status", {}).get("approvedBy"):
        return 409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                     "reason": "Conflict", "message": f"already approved by {release['status']['approvedBy']}"}
    release["status"] = {"approvedBy": ctx.user.name if ctx.user else "unknown",
                         "approvedAt": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return await ctx.replace(release, subresource="status")


@hooks.collection("summary")
async def summary(ctx):
    releases = await ctx.list(labelSelector=ctx.query.get("labelSelector", ""))
    services = {}
    for r in releases:
        s = services.setdefault(r["spec"]["service"], {"releases": 0, "awaitingApproval": 0})
        s["releases"] += 1
        if not r.get("status", {}).get("approvedBy"):
            s["awaitingApproval"] += 1
    return {"apiVersion": "ship.example.com/v1", "kind": "ReleaseSummary", "services": services}
