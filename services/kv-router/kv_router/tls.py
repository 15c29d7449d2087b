"""TLS on the client port: etcd's TLS flags turned into grpc server credentials, with the
certificate files re-read when they change, so a rotated certificate reaches new connections
without a restart (connections already open keep the certificate they were made with).

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

import hashlib
import logging
import os
import re
import ssl
import sys
import threading
import time
from dataclasses import dataclass

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
RECHECK_S = 5.0  # re-read the files this often even when their mtime/size/inode look the same


class TLSError(ValueError):
    """A TLS flag, flag combination or file that cannot work; the message is one line."""


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


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str
    key_file: str
    trusted_ca_file: str      # '' when client certificates are not requested
    tls_urls: tuple[str, ...]

    @property
    def verify_clients(self) -> bool:
        return bool(self.trusted_ca_file)


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


def _fingerprint(cert_pem: bytes) -> str:
    m = re.search(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", cert_pem, re.S)
    der = ssl.PEM_cert_to_DER_cert(m[0].decode()) if m else cert_pem
    return hashlib.sha256(der).hexdigest()[:16]


def _no_password(key_file: str) -> bytes:
    raise TLSError(f"--key-file {key_file} is encrypted; give an unencrypted key")


class CertificateReloader:
    """The certificate, key and CA files as grpc server credentials. Every TLS handshake asks
    (through grpc's certificate configuration fetcher) whether the files changed; changed files
    are read, checked as a pair with Python's ssl module and served from then on. Files that do
    not check out (say a rotation tool has written the new certificate but not yet its key) are
    logged and the previous certificate is kept."""

    def __init__(self, settings: TLSSettings):
        self.settings = settings
        self._flags = [("--cert-file", settings.cert_file), ("--key-file", settings.key_file)]
        if settings.trusted_ca_file:
            self._flags.append(("--trusted-ca-file", settings.trusted_ca_file))
        self._lock = threading.Lock()
        self._generation = 0
        self._rejected: tuple[bytes, ...] | None = None
        for _ in range(3):  # the files may be in the middle of a rotation
            stamp, material = self._read()
            if self._check(material):
                break
        else:
            raise TLSError(f"{' / '.join(p for _, p in self._flags)} keep changing while read")
        self._install(stamp, material)
        clients = (f"required, verified against {settings.trusted_ca_file}"
                   if settings.verify_clients else "not requested")
        log.info("TLS on %s: certificate %s (sha256 %s), client certificates %s",
                 ", ".join(settings.tls_urls), settings.cert_file, _fingerprint(material[0]), clients)

    def credentials(self):
        """Server credentials for one listener: each has its own view of what it has served."""
        import grpc  # only now: see the module docstring (GRPC_SSL_CIPHER_SUITES)

        with self._lock:
            served = {"generation": self._generation}
            initial = self._config

        def fetch():
            try:
                self.refresh()
            except Exception:  # a handshake must never fail because of the reload check
                log.exception("checking the TLS files failed; keeping the current certificate")
            with self._lock:
                if served["generation"] == self._generation:
                    return None
                served["generation"] = self._generation
                return self._config

        return grpc.dynamic_ssl_server_credentials(
            initial, fetch, require_client_authentication=self.settings.verify_clients)

    def refresh(self) -> None:
        """Serve the files' current contents if they changed and check out."""
        with self._lock:
            try:
                stamp = self._stat()
            except OSError:
                stamp = None  # gone (perhaps for a moment, mid-rotation)
            if stamp == self._stamp and time.monotonic() - self._checked < RECHECK_S:
                return
            try:
                stamp, material = self._read()
            except TLSError as err:  # warned about at most every RECHECK_S while it lasts
                log.warning("%s; keeping the previous TLS certificate", err)
                self._stamp, self._checked = None, time.monotonic()
                return
            self._checked = time.monotonic()
            if material == self._material or material == self._rejected:
                self._stamp = stamp
                return
            try:
                ok = self._check(material)
            except TLSError as err:
                log.warning("TLS files changed but %s; keeping the previous certificate", err)
                self._rejected, self._stamp = material, stamp
                return
            if ok:
                self._install(stamp, material)
                log.info("TLS certificate reloaded from %s (sha256 %s): new connections get it",
                         self.settings.cert_file, _fingerprint(material[0]))

    def _stat(self) -> tuple:
        return tuple((st.st_mtime_ns, st.st_size, st.st_ino)
                     for st in (os.stat(path) for _, path in self._flags))

    def _read(self) -> tuple[tuple, tuple[bytes, ...]]:
        stamp, material = [], []
        for flag, path in self._flags:
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    material.append(f.read())
            except OSError as err:
                raise TLSError(f"cannot read {flag} {path}: {err.strerror}") from None
            stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamp), tuple(material)

    def _check(self, material: tuple[bytes, ...]) -> bool:
        """True when `material` (just read) is a matching certificate and key (and a CA file).
        The check reads the paths again, so False means they changed meanwhile: try again."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = self.settings.cert_file, self.settings.key_file
        try:
            ctx.load_cert_chain(cert, key, password=lambda: _no_password(key))
        except ssl.SSLError as err:
            raise TLSError(f"--cert-file {cert} and --key-file {key} are not a PEM certificate and "
                           f"its unencrypted private key ({err.reason or err})") from None
        except OSError as err:
            raise TLSError(f"cannot read --cert-file {cert} or --key-file {key}: "
                           f"{err.strerror}") from None
        if self.settings.trusted_ca_file:
            ca = self.settings.trusted_ca_file
            try:
                ctx.load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as err:
                raise TLSError(f"--trusted-ca-file {ca} holds no PEM CA certificate "
                               f"({getattr(err, 'reason', None) or err})") from None
        try:
            return self._read()[1] == material
        except TLSError:
            return False

    def _install(self, stamp: tuple, material: tuple[bytes, ...]) -> None:
        import grpc

        cert, key = material[0], material[1]
        ca = material[2] if len(material) > 2 else None
        self._config = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        self._stamp, self._material, self._checked = stamp, material, time.monotonic()
        self._generation += 1
