"""pytest plugin for the Python client libraries' own suites (loaded by run.sh with -p): their
tests connect to the library's default localhost:2379 (python-etcd3: etcd3.client(); aetcd:
aetcd.Client(), where its fixtures do not read TEST_ETCD_HTTP_URL); this points that default at
the server under test, KUBEFABRIC_CLIENT_ENDPOINT (host:port). Explicit host/port arguments are
kept. Only the library installed in the suite's virtualenv is patched."""
import functools
import importlib.util
import os

_host, _, _port = os.environ["KUBEFABRIC_CLIENT_ENDPOINT"].rpartition(":")

if importlib.util.find_spec("etcd3") is not None:
    import etcd3

    _client = etcd3.client

    @functools.wraps(_client)
    def _client_at_endpoint(host=_host, port=int(_port), *args, **kwargs):
        return _client(host, port, *args, **kwargs)

    etcd3.client = _client_at_endpoint

if importlib.util.find_spec("aetcd") is not None:
    import aetcd

    # Client.__init__(self, host='localhost', port=2379, ...): its first two defaults
    _defaults = aetcd.Client.__init__.__defaults__
    aetcd.Client.__init__.__defaults__ = (_host, int(_port), *_defaults[2:])
