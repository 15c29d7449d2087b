"""A trigger's status, written by the one replica that owns the trigger
(rendezvous hashing of its uid) from every replica's progress record:

    status:
      observedGeneration: 3
      lastDeliveredRevision: 1042     # every event at or below it delivered or dead-lettered
      delivered: 120
      failed: 4                       # failed attempts
      deadLettered: 1
      filterErrors: 0
      relists: 0
      lastError: "..."  lastErrorTime: "..."
      lastRelist: {revision, time, since, reason}
      replicas: 2
      conditions:
      - type: Ready  status: "True"|"False"  reason: Delivering|InvalidSpec|Failing  message  lastTransitionTime

Into the HTTPTrigger object itself for triggers from the cluster (the status subresource, a
Txn guarded by the object's mod_revision so a concurrent kubectl edit is never lost), and under
/kubefabric/trigger/status/<uid> for every trigger (`kubefabric trigger status`).
"""
from __future__ import annotations

import json

from . import records
from .pipeline import now_iso
from .records import Progress


def build_status(t, recs: list[Progress], previous: dict | None) -> dict:
    prev_cond = next((c for c in (previous or {}).get("conditions", []) if c.get("type") == "Ready"), {})
    if t.error:
        cond = ("False", "InvalidSpec", t.error)
    else:
        last = max(recs, key=lambda r: r.last_error_time or "", default=None)
        failing = last is not None and last.last_error and sum(r.dead_lettered for r in recs) > 0
        cond = ("True", "Delivering", "events are delivered") if not failing else \
            ("True", "DeadLettering", f"some events were dead-lettered; last error: {last.last_error}")
    status = {"observedGeneration": t.generation,
              "delivered": sum(r.delivered for r in recs),
              "failed": sum(r.failed for r in recs),
              "deadLettered": sum(r.dead_lettered for r in recs),
              "filterErrors": sum(r.filtered_errors for r in recs),
              "relists": sum(r.relists for r in recs),
              "replicas": len(recs)}
    if recs:
        status["lastDeliveredRevision"] = min(r.revision for r in recs)
    errs = [r for r in recs if r.last_error]
    if errs:
        last = max(errs, key=lambda r: r.last_error_time)
        status["lastError"], status["lastErrorTime"] = last.last_error[:1000], last.last_error_time
    relisted = [r.last_relist for r in recs if r.last_relist]
    if relisted:
        status["lastRelist"] = max(relisted, key=lambda x: x.get("time", ""))
    since = prev_cond.get("lastTransitionTime") if prev_cond.get("status") == cond[0] \
        and prev_cond.get("reason") == cond[1] else now_iso()
    status["conditions"] = [{"type": "Ready", "status": cond[0], "reason": cond[1],
                             "message": cond[2][:1000], "lastTransitionTime": since or now_iso()}]
    return status


async def write_status(svc, t) -> None:
    kv = svc.client.kv
    kvs, _ = await kv.list(records.progress_prefix(t.uid))
    recs = [Progress.decode(x.value) for x in kvs]
    skey = records.status_key(t.uid)
    current = await kv.get(skey)
    previous = json.loads(current.value).get("status") if current is not None else None
    status = build_status(t, recs, previous)
    if previous is not None and _same(previous, status):
        return
    await kv.put(skey, json.dumps({"trigger": t.id, "source": t.source, "status": status}).encode())
    if t.source == "cluster" and t.key:
        await _patch_object(kv, t, status)


def _same(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


async def _patch_object(kv, t, status: dict) -> None:
    """Set .status of the stored HTTPTrigger (JSON, as kube-apiserver stores custom resources)."""
    for _ in range(5):
        cur = await kv.get(t.key)
        if cur is None:
            return
        obj = json.loads(cur.value)
        if (obj.get("metadata") or {}).get("uid") != t.uid:
            return
        if _same(obj.get("status") or {}, status):
            return
        obj["status"] = status
        if (await kv.put_if(t.key, json.dumps(obj, separators=(",", ":")).encode(),
                            cur.mod_revision)).succeeded:
            return
