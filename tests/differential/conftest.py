"""The `differential` and `server_factory` fixtures live in tests/conftest.py (shared with
tests/etcdctl and tests/test_unimplemented.py)."""
