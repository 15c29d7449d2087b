"""KubeFabric trigger service (issue 16)."""
