"""gRPC server plumbing shared by every service: etcd-style request decoding, the unary handler shape (validate → core → map errors → header) and the drain gate."""
