"""TLS for every hop KubeFabric makes or serves (SECURITY.md, "Running with TLS").

- files.py: TLSError (a one-line StartupError), flag combinations that cannot work, file stamps;
- server.py: TLSSettings and CertificateReloader, grpc server credentials re-read on rotation
  (kv-router's client port, the shard services' Shard API);
- client.py: ClientTLS, grpc channel credentials (kv-router → shard services, replica → leader);
- suites.py: what a grpc server can enforce of etcd's --tls-min-version and --cipher-suites;
- nats.py: the --nats-* flags and NatsTLS, an ssl context re-read at each NATS (re)connect.

Nothing here imports grpc at module level (kubefabric.cli says why).
"""
from .client import ClientTLS
from .files import TLSError, check_files
from .server import CertificateReloader, TLSSettings

__all__ = ["CertificateReloader", "ClientTLS", "TLSError", "TLSSettings", "check_files"]
