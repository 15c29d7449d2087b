"""Where triggers come from: HTTPTrigger objects stored in the data layer (applied with
kubectl, picked up and changed live) and, for users without a cluster, a --triggers file.

A file holds one or more YAML documents (or a v1 List) of kind HTTPTrigger with apiVersion
triggers.kubefabric.io/v1: the same objects `kubectl apply` takes.
"""
from __future__ import annotations

import asyncio
import logging

import yaml

from kubefabric.client import ClientError, Compacted, EtcdClient, prefix_end

from .compiled import Trigger, compile_trigger
from .objects import DecodeError, decode, resource_prefix
from .spec import GROUP, KIND, PLURAL

log = logging.getLogger("kubefabric.trigger")

API_VERSION = f"{GROUP}/v1"
PREFIX = resource_prefix(GROUP, PLURAL)


class SourceError(ValueError):
    pass


def load_file(path: str) -> list[Trigger]:
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except OSError as err:
        raise SourceError(f"--triggers {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise SourceError(f"--triggers {path}: not YAML: {' '.join(str(err).split())}") from None
    objs = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "List":
            objs.extend(d.get("items") or [])
        else:
            objs.append(d)
    out, seen = [], set()
    for i, obj in enumerate(objs, 1):
        where = f"--triggers {path}: document {i}"
        if not isinstance(obj, dict):
            raise SourceError(f"{where}: not an object")
        if obj.get("kind") != KIND:
            raise SourceError(f"{where}: kind is {obj.get('kind')!r}, not {KIND}")
        if obj.get("apiVersion") != API_VERSION:
            raise SourceError(f"{where}: apiVersion is {obj.get('apiVersion')!r}; use {API_VERSION} "
                              "(a HariKube HTTPTrigger only needs this line changed)")
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            raise SourceError(f"{where}: metadata.name is required")
        t = compile_trigger(obj, "file")
        if t.id in seen:
            raise SourceError(f"{where}: a second trigger named {t.id}")
        seen.add(t.id)
        out.append(t)
    return out


class ClusterTriggers:
    """HTTPTrigger objects in the data layer: calls on_change(trigger_id, Trigger | None) for
    every object that appears, changes generation, or goes."""

    def __init__(self, client: EtcdClient, on_change):
        self.client = client
        self.on_change = on_change
        self.known: dict[bytes, tuple[str, str, int]] = {}     # key -> (id, uid, generation)
        self.objects: dict[str, dict] = {}                      # id -> last object seen
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        rev = await self._list()
        self.task = asyncio.get_running_loop().create_task(self._follow(rev), name="httptriggers")

    async def _list(self) -> int:
        kvs, rev = await self.client.kv.list(PREFIX)
        present = set()
        for kv in kvs:
            present.add(kv.key)
            self._apply(kv.key, kv.value, kv.mod_revision)
        for key in set(self.known) - present:
            self._remove(key)
        return rev

    async def _follow(self, rev: int) -> None:
        while True:
            try:
                async with self.client.watch(PREFIX, prefix_end(PREFIX), start_revision=rev + 1) as w:
                    async for batch in w:
                        for e in batch.events:
                            if e.type == 1:
                                self._remove(e.kv.key)
                            else:
                                self._apply(e.kv.key, e.kv.value, e.kv.mod_revision)
                        rev = max(rev, batch.revision)
            except Compacted:
                rev = await self._list()
            except ClientError as err:
                log.warning("reading HTTPTriggers failed (%s); retrying", err)
                await asyncio.sleep(1)

    def _apply(self, key: bytes, value: bytes, rev: int) -> None:
        try:
            obj = decode(key, value, rev)
        except DecodeError as err:
            log.error("HTTPTrigger %s: %s", key.decode(errors="replace"), err)
            return
        meta = obj.get("metadata") or {}
        ident = (f"{meta.get('namespace', 'default')}/{meta.get('name')}", meta.get("uid", ""),
                 int(meta.get("generation") or 1))
        self.objects[ident[0]] = obj
        if self.known.get(key) == ident:
            return  # a status update: same spec
        self.known[key] = ident
        self.on_change(ident[0], compile_trigger(obj, "cluster", key))

    def _remove(self, key: bytes) -> None:
        ident = self.known.pop(key, None)
        if ident is not None:
            self.objects.pop(ident[0], None)
            self.on_change(ident[0], None)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
