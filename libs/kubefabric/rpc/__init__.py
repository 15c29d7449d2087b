"""gRPC plumbing shared by every service: one server set-up (server.py), internal channels
(channel.py), start-up refusals (startup.py), etcd-style request decoding (wire.py), the unary
handler shape (validate → core → map errors → header) and the drain gate (handlers.py)."""
