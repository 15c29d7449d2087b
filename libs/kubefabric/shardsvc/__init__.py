"""The shard service: one shard's core behind the Shard gRPC API, with leader election through
the shard's database (node.py), the API (service.py) and the command line (serve.py)."""
