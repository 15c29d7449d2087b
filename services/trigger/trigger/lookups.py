"""The Secrets and Services triggers reference, read from the data layer (kube-apiserver's
stored objects, decoded by the shared decoder) and kept current by one watch per kind, so a
rotated Secret is used from the next attempt on (auth.tls Secrets: the trigger's HTTP client is
rebuilt, see `on_tls_change`).

Only referenced objects are cached: memory grows with the triggers, not with the cluster.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import tempfile

from kubefabric.client import ClientError, EtcdClient, prefix_end

from .objects import DecodeError, decode, resource_prefix
from .request import Lookups, RequestError

log = logging.getLogger("kubefabric.trigger.lookups")

SECRETS = resource_prefix("", "secrets")
SERVICES = resource_prefix("", "services")


def secret_key(namespace: str, name: str) -> bytes:
    return resource_prefix("", "secrets", namespace) + name.encode()


def service_key(namespace: str, name: str) -> bytes:
    return resource_prefix("", "services", namespace) + name.encode()


class StoreLookups(Lookups):
    def __init__(self, client: EtcdClient, service_url_template: str):
        self.client = client
        self.url_template = service_url_template
        self.cache: dict[bytes, dict | None] = {}     # key -> decoded object (None: absent)
        self.wanted: set[bytes] = set()
        self.on_change = None                          # callback(key) when a cached object changes
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        for prefix in (SECRETS, SERVICES):
            _, rev = await self.client.kv.list(prefix + b"\xff")   # just the current revision
            self._tasks.append(asyncio.get_running_loop().create_task(self._follow(prefix, rev)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()

    async def prefetch(self, keys) -> None:
        for key in keys:
            self.wanted.add(key)
            if key not in self.cache:
                await self._load(key)

    async def _load(self, key: bytes) -> None:
        try:
            kv = await self.client.kv.get(key)
        except ClientError as err:
            log.warning("cannot read %s: %s", key.decode(), err)
            return
        self.cache[key] = self._decode(key, kv.value, kv.mod_revision) if kv is not None else None

    def _decode(self, key, value, rev):
        try:
            return decode(key, value, rev)
        except DecodeError as err:
            log.warning("%s", err)
            return None

    async def _follow(self, prefix: bytes, rev: int) -> None:
        while True:
            try:
                async with self.client.watch(prefix, prefix_end(prefix), start_revision=rev + 1) as w:
                    async for batch in w:
                        for e in batch.events:
                            key = e.kv.key
                            if key not in self.wanted:
                                continue
                            self.cache[key] = None if e.type == 1 else self._decode(key, e.kv.value, e.kv.mod_revision)
                            log.info("%s changed; triggers using it pick it up", key.decode())
                            if self.on_change is not None:
                                self.on_change(key)
                        rev = max(rev, batch.revision)
            except ClientError as err:  # compacted: reload what is cached
                log.info("re-reading referenced objects (%s)", err)
                for key in list(self.wanted):
                    await self._load(key)
                _, rev = await self.client.kv.list(prefix + b"\xff")

    # ---- Lookups ----

    def secret(self, namespace: str, name: str, key: str) -> bytes:
        obj = self.cache.get(secret_key(namespace, name))
        if obj is None:
            raise RequestError(f"Secret {namespace}/{name} not found")
        data = obj.get("data") or {}
        if key in data:
            try:
                return base64.b64decode(data[key])
            except ValueError:
                raise RequestError(f"Secret {namespace}/{name}: key {key} is not base64") from None
        string_data = obj.get("stringData") or {}
        if key in string_data:
            return str(string_data[key]).encode()
        raise RequestError(f"Secret {namespace}/{name} has no key {key!r}")

    def service_url(self, namespace: str, name: str, port_name: str, scheme: str) -> str:
        obj = self.cache.get(service_key(namespace, name))
        if obj is None:
            raise RequestError(f"Service {namespace}/{name} not found")
        ports = (obj.get("spec") or {}).get("ports") or []
        if not ports:
            raise RequestError(f"Service {namespace}/{name} has no ports")
        port = next((p for p in ports if p.get("name") == port_name), None) if port_name else None
        if port is None:
            if port_name and len(ports) > 1:
                raise RequestError(f"Service {namespace}/{name} has no port named {port_name!r}")
            port = ports[0]
        return self.url_template.format(scheme=scheme, name=name, namespace=namespace,
                                        port=port.get("port", 80))

    def ssl_context(self, namespace: str, tls) -> ssl.SSLContext | None:
        """The client TLS of auth.tls (None: the system's defaults)."""
        if tls is None:
            return None
        ctx = ssl.create_default_context()
        if tls.ca is not None:
            ctx = ssl.create_default_context(cadata=self.secret(namespace, tls.ca.name, tls.ca.key).decode())
        if tls.cert is not None:
            cert = self.secret(namespace, tls.cert.name, tls.cert.key)
            key = self.secret(namespace, tls.key.name, tls.key.key)
            with tempfile.TemporaryDirectory() as d:     # ssl loads chains from files only
                cp, kp = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
                for path, data in ((cp, cert), (kp, key)):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                try:
                    ctx.load_cert_chain(cp, kp)
                except ssl.SSLError as err:
                    raise RequestError(f"auth.tls: the client certificate and key do not load: {err}") from None
        if tls.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
