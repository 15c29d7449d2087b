"""KubeFabric trigger service: HTTPTrigger delivery as CloudEvents (DESIGN §9)."""
