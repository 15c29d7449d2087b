"""The etcd client every `kubefabric trigger` command reads and records through (--endpoints and
its TLS flags, serve.CLIENT_FLAGS)."""
from __future__ import annotations

from kubefabric.client import EtcdClient
from kubefabric.rpc.startup import StartupError
from kubefabric.tls import ClientTLS


def client_tls(args) -> ClientTLS | None:
    if not (args.ca_file or args.cert_file or args.key_file):
        return None
    return ClientTLS(args.ca_file, args.cert_file, args.key_file)


def client_for(args) -> EtcdClient:
    try:
        return EtcdClient.connect(args.endpoints, client_tls(args))
    except ValueError as err:
        raise StartupError(f"--endpoints: {err}") from None
