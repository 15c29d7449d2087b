"""Start-up and shutdown of `kubefabric aggregation`."""
from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import tempfile

from aiohttp import web

from kubefabric import telemetry
from kubefabric.lifecycle import until_terminated
from kubefabric.rpc import startup
from kubefabric.rpc.startup import StartupError

from . import auth, metrics
from .app import Health, Server
from .certs import self_signed
from .crd import CRDError, load_directory
from .etcdstore import EtcdStore
from .hooks import HookError, attach_hooks
from .registry import Registry
from .rest import Resources
from .watch import WatchSettings
from .writes import Namespaces, Writes

log = logging.getLogger("kubefabric.aggregation")


def run(args: argparse.Namespace) -> int:
    return startup.run(args, lambda: _checked(args), log)


def _checked(args: argparse.Namespace):
    """The settings checked (StartupError); the server's coroutine."""
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):  # lightkube's HTTP client, per request
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if not args.crd_dir:
        raise StartupError("--crd-dir (or KUBEFABRIC_CRD_DIR) is required: the directory of "
                           "CustomResourceDefinition manifests to serve")
    try:
        resources = load_directory(args.crd_dir)
    except (CRDError, OSError) as err:
        raise StartupError(f"--crd-dir: {err}") from None
    if not resources:
        raise StartupError(f"--crd-dir {args.crd_dir}: no CustomResourceDefinition found")
    try:
        attach_hooks(resources, args.crd_dir)
    except HookError as err:
        raise StartupError(str(err)) from None
    host, _, port = args.listen_address.rpartition(":")
    if not host or not port.isdigit():
        raise StartupError(f"--listen-address {args.listen_address!r}: use host:port")
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        raise StartupError("--tls-cert-file and --tls-private-key-file go together")
    return _serve(args, Registry(resources), host.strip("[]"), int(port))


async def _auth(args) -> tuple[auth.Authenticator, auth.Authorizer, list[str], auth.Reviewer | None]:
    """Authenticator, authorizer, the CA files the listener verifies client certificates with,
    and the reviewer (closed at shutdown)."""
    config = auth.AuthConfig(cache_ttl=args.auth_cache_ttl,
                             always_allow_paths=tuple(p for p in args.authorization_always_allow_paths.split(",") if p),
                             username_headers=_list(args.requestheader_username_headers),
                             uid_headers=_list(args.requestheader_uid_headers),
                             group_headers=_list(args.requestheader_group_headers),
                             extra_prefixes=_list(args.requestheader_extra_headers_prefix),
                             allowed_names=_list(args.requestheader_allowed_names))
    if args.auth == "none":
        log.warning("--auth none: every request is allowed (local development only)")
        config.always_allow_groups = ("system:unauthenticated",)
        return auth.Authenticator(config, None), auth.Authorizer(config, None), [], None
    try:
        reviewer = auth.Reviewer.from_kubeconfig(args.kubeconfig)
    except Exception as err:  # lightkube's config errors have no common base
        raise StartupError(f"cannot configure the kube-apiserver client (--kubeconfig "
                           f"{args.kubeconfig or 'in-cluster'}): {err}") from None
    ca_files = []
    front_ca, client_ca = args.requestheader_client_ca_file, args.client_ca_file
    if not front_ca or not client_ca:
        settings = await _lookup(reviewer)
        front_ca = front_ca or _write_pem(settings.get("requestheader-client-ca-file"), "front-proxy-ca")
        client_ca = client_ca or _write_pem(settings.get("client-ca-file"), "client-ca")
        if not config.allowed_names and settings.get("requestheader-allowed-names"):
            config.allowed_names = tuple(json.loads(settings["requestheader-allowed-names"]))
    for path, target in ((front_ca, config.requestheader_ca), (client_ca, config.client_ca)):
        if path:
            try:
                target.extend(auth.load_certificates(path))
            except (OSError, ValueError) as err:
                raise StartupError(f"cannot read CA file {path}: {err}") from None
            ca_files.append(path)
    if not config.requestheader_ca:
        log.warning("no front-proxy CA: requests proxied by kube-apiserver cannot be authenticated")
    return auth.Authenticator(config, reviewer), auth.Authorizer(config, reviewer), ca_files, reviewer


async def _lookup(reviewer: auth.Reviewer) -> dict[str, str]:
    try:
        return await reviewer.requestheader_settings()
    except Exception as err:
        log.warning("cannot read kube-system/extension-apiserver-authentication (%s); give "
                    "--requestheader-client-ca-file and --client-ca-file instead", err)
        return {}


def _write_pem(pem: str | None, name: str) -> str:
    if not pem:
        return ""
    fd, path = tempfile.mkstemp(prefix=f"kubefabric-{name}-", suffix=".pem")
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    return path


def _list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


async def _serve(args, registry: Registry, host: str, port: int) -> int:
    authenticator, authorizer, ca_files, reviewer = await _auth(args)
    cert, key = args.tls_cert_file, args.tls_private_key_file
    if not cert:
        cert, key = self_signed(host)
        log.info("no --tls-cert-file: serving a self-signed certificate")
    try:
        tls = auth.server_context(cert, key, ca_files)
    except (OSError, ssl.SSLError) as err:
        raise StartupError(f"cannot load the serving certificate {cert}: {err}") from None
    try:
        store = EtcdStore.connect(args.kv_router, args.watch_hub)
    except ValueError as err:
        raise StartupError(f"--kv-router/--watch-hub: {err}") from None
    health = Health()

    async def data_layer() -> str | None:
        try:
            await store.revision()
            return None
        except Exception as err:
            return f"kv-router unreachable: {err}"

    health.checks["data-layer"] = data_layer
    resources = Resources(store, WatchSettings(args.watch_bookmark_interval, args.min_request_timeout))
    resources.registry = registry
    namespaces = Namespaces(reviewer) if reviewer is not None else None
    resources.writes = Writes(store, resources, namespaces)
    server = Server(registry, authenticator, authorizer, resources, health)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False,
                           shutdown_timeout=args.shutdown_grace)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise StartupError(f"cannot listen on {args.listen_address}: {err.strerror or err}") from None
    telemetry.setup("aggregation", args.metrics_address)
    metrics.resources_served.set(len(registry.resources))
    log.info("aggregation: serving %s on https://%s:%d (data layer %s%s)",
             ", ".join(r.name for r in registry.resources), host, port, args.kv_router,
             f", watches from {args.watch_hub}" if args.watch_hub else "")
    await until_terminated()
    log.info("shutting down")
    health.shutting_down = True
    await runner.cleanup()
    await store.close()
    if reviewer is not None:
        await reviewer.close()
    log.info("stopped")
    return 0
