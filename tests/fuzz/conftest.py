"""tests/fuzz: generated operation sequences run against etcd and KubeFabric (test_differential_fuzz.py)
and malformed gRPC frames sent to KubeFabric (test_malformed_frames.py). The helpers are in
harness.fuzz; the server fixtures come from tests/conftest.py."""
