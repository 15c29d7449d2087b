"""A kopf operator for widgets.agg.kubefabric.io, run by test_e2e.py with `kopf run
--standalone`: it reports spec.replicas in status, marks widgets it handled, mirrors the color
into a Ready condition, and records deletions in $WIDGET_DELETIONS (it holds kopf's finalizer
until then)."""
import os

import kopf

GROUP, VERSION, PLURAL = "agg.kubefabric.io", "v1", "widgets"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.watching.server_timeout = 30
    settings.posting.enabled = False


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(spec, patch, **_):
    patch.status["replicas"] = spec.get("replicas", 1)
    patch.metadata.setdefault("labels", {})["handled"] = "yes"


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.color")
def recolored(new, patch, **_):
    patch.status["conditions"] = [{"type": "Ready", "status": "True", "message": new}]


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(name, namespace, **_):
    with open(os.environ["WIDGET_DELETIONS"], "a") as f:
        f.write(f"{namespace}/{name}\n")
