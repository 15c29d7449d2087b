"""tests/fuzz: generated operation sequences run against etcd and KubeFabric (test_differential_fuzz.py)
and malformed gRPC frames sent to KubeFabric (test_malformed_frames.py). The helpers beside the
tests (fuzz_*.py) are importable from here; the server fixtures come from tests/conftest.py."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
