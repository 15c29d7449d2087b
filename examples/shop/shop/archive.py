"""The invoice archive: the operator's state outside Kubernetes, standing in for a billing
system. One JSON file per order, <dir>/<namespace>/<name>.json, written atomically (temp file +
rename) so a reader never sees half an invoice. Deleting an Order must remove its entry: that is
what the operator's finalizer is for (ownerReferences clean up only inside Kubernetes)."""
from __future__ import annotations

import json
import os
from pathlib import Path


class Archive:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, namespace: str, name: str) -> Path:
        return self.root / namespace / f"{name}.json"

    def put(self, namespace: str, name: str, invoice: dict) -> None:
        path = self.path(namespace, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(invoice, sort_keys=True, indent=1))
        os.replace(tmp, path)

    def get(self, namespace: str, name: str) -> dict | None:
        try:
            return json.loads(self.path(namespace, name).read_text())
        except FileNotFoundError:
            return None

    def remove(self, namespace: str, name: str, uid: str) -> bool:
        """Remove the entry of the order with this uid; False if there was none (or another
        order's of the same name)."""
        entry = self.get(namespace, name)
        if entry is None or entry.get("uid") != uid:
            return False
        self.path(namespace, name).unlink(missing_ok=True)
        return True

    def names(self, namespace: str) -> list[str]:
        folder = self.root / namespace
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
