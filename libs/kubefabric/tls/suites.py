"""What a grpc python server (BoringSSL underneath) can and cannot enforce, in etcd's terms:

- Protocol versions: a grpc server always accepts TLS 1.2 and TLS 1.3 and nothing older, and the
  python API has no version setting. A minimum version of TLS1.2 is therefore the only one
  accepted; TLS1.3 (1.3 only), TLS1.0 and TLS1.1 are refused at start-up instead of being
  silently ignored.
- Cipher suites: TLS 1.2 suites are chosen through the GRPC_SSL_CIPHER_SUITES environment
  variable, which grpc's core reads once, when grpc is first loaded: `apply_cipher_suites` must
  run before anything imports grpc. TLS 1.3 suites cannot be chosen (in Go, hence etcd, neither).
"""
from __future__ import annotations

import logging
import os
import sys

from .files import TLSError

log = logging.getLogger("kubefabric.tls")

# etcd's (Go's) suite names → the OpenSSL-style names BoringSSL takes in GRPC_SSL_CIPHER_SUITES;
# each one checked to negotiate against grpcio's BoringSSL with openssl s_client.
TLS12_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
ALIASES = {  # Go's older names, still accepted by etcd
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
# Go knows these, grpc's BoringSSL does not (RC4, SHA-256 RSA-CBC) or KubeFabric does not offer (3DES)
UNAVAILABLE = {"TLS_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
               "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA256",
               "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"}

CIPHER_ENV = "GRPC_SSL_CIPHER_SUITES"


def cipher_list(text: str) -> str:
    """--cipher-suites (comma-separated Go names) → BoringSSL's list; '' when not set."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    out = []
    for name in names:
        go = ALIASES.get(name, name)
        if go in TLS12_SUITES:
            out.append(TLS12_SUITES[go])
        elif go in TLS13_SUITES:
            continue  # always enabled with TLS 1.3 and not selectable, as in Go
        elif go in UNAVAILABLE:
            raise TLSError(f"--cipher-suites: {name} is not available in grpc's TLS library "
                           f"(BoringSSL); choose from {', '.join(TLS12_SUITES)}")
        else:
            raise TLSError(f"--cipher-suites: unknown cipher suite {name!r}; use etcd's (Go's) "
                           f"names: {', '.join(TLS12_SUITES)}")
    if names and not out:
        raise TLSError("--cipher-suites names only TLS 1.3 suites, which are always enabled and "
                       "cannot be chosen; name at least one TLS 1.2 suite or drop the flag")
    return ":".join(out)


def check_min_version(version: str) -> None:
    if version in ("", "TLS1.2"):
        return
    if version == "TLS1.3":
        raise TLSError("--tls-min-version TLS1.3: grpc python cannot restrict the server to TLS "
                       "1.3 (it always accepts TLS 1.2 and 1.3); use TLS1.2")
    if version in ("TLS1.0", "TLS1.1"):
        raise TLSError(f"--tls-min-version {version}: grpc never accepts versions older than "
                       "TLS 1.2; use TLS1.2")
    raise TLSError(f"--tls-min-version {version!r}: use TLS1.2")


def apply_cipher_suites(suites: str) -> None:
    """Make `suites` (cipher_list's result; '' keeps grpc's defaults) the TLS 1.2 suites of every
    grpc server of this process. Raises RuntimeError once grpc is loaded: too late."""
    if suites:
        if "grpc" in sys.modules:
            raise RuntimeError("--cipher-suites was applied after grpc was loaded")
        os.environ[CIPHER_ENV] = suites
    elif CIPHER_ENV in os.environ:
        log.info("TLS 1.2 cipher suites from $%s: %s", CIPHER_ENV, os.environ[CIPHER_ENV])
