"""TLS on the client port: etcd's TLS flags checked and turned into the settings of
kubefabric.tlsconfig's CertificateReloader (shared with the shard services), which re-reads the
certificate files when they change, so a rotated certificate reaches new connections without a
restart (connections already open keep the certificate they were made with).

What grpc python (BoringSSL underneath) can and cannot enforce:
- Protocol versions: a grpc server always accepts TLS 1.2 and TLS 1.3 and nothing older, and the
  python API has no version setting. --tls-min-version therefore accepts TLS1.2 only; TLS1.3
  (1.3 only), TLS1.0 and TLS1.1 are refused at start-up instead of being silently ignored.
- Cipher suites: TLS 1.2 suites are chosen through the GRPC_SSL_CIPHER_SUITES environment
  variable, which grpc's core reads once, when grpc is first loaded. `settings_from_args` must
  therefore run before anything imports grpc; this module imports grpc only inside the functions
  that build credentials. TLS 1.3 suites cannot be chosen (in Go, hence etcd, neither).
- Client certificates: required and verified against --trusted-ca-file on every connection.
  As in etcd, --trusted-ca-file alone already requires them ("setting this parameter will also
  automatically enable client cert authentication", etcd's security guide).
"""
from __future__ import annotations

import logging
import os
import sys

# CertificateReloader, TLSError and TLSSettings live in kubefabric.tlsconfig (shared with the
# shard services); imported here for kv-router's modules.
from kubefabric.tlsconfig import CertificateReloader, TLSError, TLSSettings  # noqa: F401

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


def is_tls_url(url: str) -> bool:
    return url.strip().lower().startswith("https://")


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


def settings_from_args(args) -> TLSSettings | None:
    """Check the TLS flags; None when no listener is https://. Applies --cipher-suites, so it
    must run before grpc is imported."""
    urls = [u.strip() for u in args.listen_client_urls.split(",") if u.strip()]
    tls_urls = tuple(u for u in urls if is_tls_url(u))
    check_min_version(args.tls_min_version)
    suites = cipher_list(args.cipher_suites)
    if bool(args.cert_file) != bool(args.key_file):
        given, missing = (("--cert-file", "--key-file") if args.cert_file
                          else ("--key-file", "--cert-file"))
        raise TLSError(f"{given} is set but {missing} is not: give both")
    if args.client_cert_auth and not args.trusted_ca_file:
        raise TLSError("--client-cert-auth needs --trusted-ca-file (the CA that signs client "
                       "certificates)")
    if not tls_urls:
        if args.cert_file or args.trusted_ca_file:
            log.warning("TLS files are set but no --listen-client-urls URL is https://: serving "
                        "plaintext only (as etcd does)")
        return None
    if not args.cert_file:
        raise TLSError(f"--listen-client-urls {tls_urls[0]} is https:// and needs --cert-file "
                       "and --key-file")
    if suites:
        if "grpc" in sys.modules:
            raise RuntimeError("--cipher-suites was applied after grpc was loaded")
        os.environ[CIPHER_ENV] = suites
    elif CIPHER_ENV in os.environ:
        log.info("TLS 1.2 cipher suites from $%s: %s", CIPHER_ENV, os.environ[CIPHER_ENV])
    if args.trusted_ca_file and not args.client_cert_auth:
        log.info("--trusted-ca-file is set: client certificates are required (as in etcd, even "
                 "without --client-cert-auth)")
    return TLSSettings(args.cert_file, args.key_file, args.trusted_ca_file, tls_urls)
