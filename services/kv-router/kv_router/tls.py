"""TLS on kv-router's client port: etcd's TLS flags checked and turned into the settings of
kubefabric.tls's CertificateReloader (shared with the shard services), which re-reads the
certificate files when they change, so a rotated certificate reaches new connections without a
restart (connections already open keep the certificate they were made with).

What grpc can enforce of etcd's --tls-min-version and --cipher-suites: kubefabric/tls/suites.py.
Client certificates: required and verified against --trusted-ca-file on every connection. As in
etcd, --trusted-ca-file alone already requires them ("setting this parameter will also
automatically enable client cert authentication", etcd's security guide).
"""
from __future__ import annotations

import logging

from kubefabric.tls import TLSError, TLSSettings, check_files
from kubefabric.tls.suites import apply_cipher_suites, check_min_version, cipher_list

log = logging.getLogger("kubefabric.tls")


def is_tls_url(url: str) -> bool:
    return url.strip().lower().startswith("https://")


def settings_from_args(args) -> TLSSettings | None:
    """Check the TLS flags; None when no listener is https://. Applies --cipher-suites, so it
    must run before grpc is imported."""
    urls = [u.strip() for u in args.listen_client_urls.split(",") if u.strip()]
    tls_urls = tuple(u for u in urls if is_tls_url(u))
    check_min_version(args.tls_min_version)
    suites = cipher_list(args.cipher_suites)
    check_files(args.cert_file, args.key_file, "")
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
    apply_cipher_suites(suites)
    if args.trusted_ca_file and not args.client_cert_auth:
        log.info("--trusted-ca-file is set: client certificates are required (as in etcd, even "
                 "without --client-cert-auth)")
    return TLSSettings(args.cert_file, args.key_file, args.trusted_ca_file, tls_urls)
