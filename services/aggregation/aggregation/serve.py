"""`kubefabric aggregation`: a Kubernetes aggregated API server for resources declared as CRD
manifests, served straight from KubeFabric. kube-apiserver only proxies to it (an APIService per
group/version), so these objects never sit in kube-apiserver's watch cache, and their lists and
selectors are answered by the shards' index.

Reads and writes go to kv-router (--kv-router: the etcd API and the Query API), watches to
watch-hub(s) (--watch-hub; kv-router relays them when unset). Objects are stored as a CRD's would
be (/registry/<group>/<plural>/...), so a resource moves between a CRD and this server without
migrating data.

`kubefabric aggregation manifests` prints the APIService(s), Service, Deployment and RBAC that
register it in a cluster.
"""
from __future__ import annotations

import argparse

from kubefabric.config import Count, Duration, Flag, HostPort, URLs, add_command, add_flags
from kubefabric.rpc import startup

from . import manifests

ENDPOINTS = URLs(("http", "https"))

SERVE_FLAGS = [
    Flag("--crd-dir", "", "directory of CustomResourceDefinition manifests (*.yaml, *.yml, "
         "*.json; apiextensions.k8s.io/v1) declaring the resources to serve; a <file>.py beside "
         "a manifest holds its Python hooks (docs/aggregation.md)"),
    Flag("--kv-router", "http://127.0.0.1:2379", "kv-router endpoint(s) for reads, writes and "
         "queries, http://host:port[,http://host:port...]", type=ENDPOINTS),
    Flag("--watch-hub", "", "watch-hub endpoint(s) for watches, http://host:port[,...] "
         "(default: --kv-router, which relays watches to its hub)",
         type=URLs(("http", "https"), optional=True)),
    Flag("--listen-address", "127.0.0.1:8443", "host:port to serve the API on (HTTPS)",
         type=HostPort(listen=True)),
    Flag("--tls-cert-file", "", "serving certificate (PEM); with none a self-signed one is made "
         "at start (register the APIService with insecureSkipTLSVerify then)"),
    Flag("--tls-private-key-file", "", "the serving certificate's unencrypted key (PEM)"),
    Flag("--auth", "delegated", "delegated: authenticate and authorize every request through "
         "kube-apiserver (front-proxy certificate, TokenReview, SubjectAccessReview); none: allow "
         "everything as system:anonymous (local development only)", choices=("delegated", "none")),
    Flag("--kubeconfig", "", "kubeconfig for kube-apiserver (TokenReview, SubjectAccessReview, "
         "the extension-apiserver-authentication ConfigMap); empty: the in-cluster service account"),
    Flag("--requestheader-client-ca-file", "", "CA of the front proxy's client certificate; empty: "
         "read from kube-system/extension-apiserver-authentication"),
    Flag("--requestheader-allowed-names", "", "comma-separated common names the front proxy's "
         "certificate may have (empty: any certificate of the CA; with the ConfigMap: its list)"),
    Flag("--requestheader-username-headers", "X-Remote-User", "headers carrying the user name"),
    Flag("--requestheader-uid-headers", "X-Remote-Uid", "headers carrying the user's UID"),
    Flag("--requestheader-group-headers", "X-Remote-Group", "headers carrying the groups"),
    Flag("--requestheader-extra-headers-prefix", "X-Remote-Extra-", "prefixes of the headers "
         "carrying extra user attributes"),
    Flag("--client-ca-file", "", "CA whose client certificates authenticate directly (CN = user, "
         "O = groups); empty: kube-apiserver's, from the same ConfigMap"),
    Flag("--authorization-always-allow-paths", "/healthz,/readyz,/livez", "comma-separated paths "
         "served without authorization"),
    Flag("--auth-cache-ttl", "10s", "how long TokenReview and SubjectAccessReview answers are "
         "reused", type=Duration()),
    Flag("--watch-bookmark-interval", "1m", "how often a watch that allows bookmarks gets one",
         type=Duration(positive=True)),
    Flag("--min-request-timeout", "30m", "a watch without timeoutSeconds ends after a random "
         "time between this and twice this (as kube-apiserver's)", type=Duration(positive=True)),
    *startup.process_flags("10s", "time in-flight requests get to finish on SIGTERM (watches "
                           "end at once; clients re-watch)", metrics_address="127.0.0.1:2680"),
]

MANIFEST_FLAGS = [
    Flag("--crd-dir", "", "the directory the server will read (one APIService per served "
         "group/version; the manifests go into a ConfigMap mounted there)"),
    Flag("--namespace", "kubefabric", "namespace of the Service and Deployment"),
    Flag("--name", "kubefabric-aggregation", "name of the Service, Deployment and RBAC objects"),
    Flag("--image", "kubefabric:dev", "container image with the kubefabric command"),
    Flag("--replicas", "2", "Deployment replicas (stateless; any number)", type=Count(0, 10000)),
    Flag("--kv-router", "http://kv-router:2379", "kv-router endpoint(s) as the pods reach them",
         type=ENDPOINTS),
    Flag("--watch-hub", "", "watch-hub endpoint(s) as the pods reach them (empty: via kv-router)",
         type=URLs(("http", "https"), optional=True)),
    Flag("--group-priority-minimum", "1000", "APIService groupPriorityMinimum",
         type=Count(1, 20000)),
    Flag("--version-priority", "100", "APIService versionPriority", type=Count(1, 1000)),
]


def command(subparsers) -> None:
    p = add_command(subparsers, "aggregation",
                    "serve CRD-declared resources from KubeFabric as an aggregated API server",
                    __doc__.replace("`", "").strip(), SERVE_FLAGS, _serve)
    sub = p.add_subparsers(dest="aggregation_command", metavar="[manifests]")
    m = sub.add_parser("manifests", help="print the APIService, Service, Deployment and RBAC "
                       "objects that register this server in a cluster (YAML)",
                       description="Print, as one YAML stream for kubectl apply -f -, what "
                       "registers the aggregation server: a ConfigMap of the CRD manifests, the "
                       "Deployment and Service, one APIService per served group/version, and "
                       "RBAC for delegated authentication and authorization.")
    add_flags(m, MANIFEST_FLAGS)
    m.set_defaults(func=_manifests)


def _serve(args: argparse.Namespace) -> int:
    from . import main  # loads grpc and aiohttp: not while the command line is built (kubefabric.cli)
    return main.run(args)


def _manifests(args: argparse.Namespace) -> int:
    return manifests.run(args)
