"""pytest plugin for python-etcd3's own suite (loaded by run.sh with -p): its tests connect with
etcd3.client() to the library's default localhost:2379; this points that default at the server
under test, KUBEFABRIC_CLIENT_ENDPOINT (host:port). Explicit host/port arguments are kept."""
import functools
import os

import etcd3

_host, _, _port = os.environ["KUBEFABRIC_CLIENT_ENDPOINT"].rpartition(":")
_client = etcd3.client


@functools.wraps(_client)
def _client_at_endpoint(host=_host, port=int(_port), *args, **kwargs):
    return _client(host, port, *args, **kwargs)


etcd3.client = _client_at_endpoint
