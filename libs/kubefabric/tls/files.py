"""What every TLS hop shares: the one-line TLSError, flag combinations that cannot work, and
cheap checks whether certificate files changed (callers re-read them then)."""
from __future__ import annotations

import hashlib
import os
import re
import ssl

from kubefabric.rpc.startup import StartupError

RECHECK_S = 5.0  # re-read the files this often even when their mtime/size/inode look the same


class TLSError(StartupError, ValueError):
    """A TLS flag, flag combination or file that cannot work; the message is one line."""


def check_files(cert_file: str, key_file: str, trusted_ca_file: str, prefix: str = "--") -> None:
    """Flag combinations that cannot work (flag names `{prefix}cert-file` and so on)."""
    if bool(cert_file) != bool(key_file):
        given, missing = (("cert-file", "key-file") if cert_file else ("key-file", "cert-file"))
        raise TLSError(f"{prefix}{given} is set but {prefix}{missing} is not: give both")
    if trusted_ca_file and not cert_file:
        raise TLSError(f"{prefix}trusted-ca-file needs {prefix}cert-file and {prefix}key-file "
                       "(client certificates are checked during a TLS handshake)")


def fingerprint(cert_pem: bytes) -> str:
    """The first certificate's SHA-256, shortened, for the logs."""
    m = re.search(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", cert_pem, re.S)
    der = ssl.PEM_cert_to_DER_cert(m[0].decode()) if m else cert_pem
    return hashlib.sha256(der).hexdigest()[:16]


def file_stamp(paths) -> tuple:
    """(mtime, size, inode) of each path, None for one that cannot be read: equal stamps mean
    unchanged files (RECHECK_S covers a rewrite that keeps all three)."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)
