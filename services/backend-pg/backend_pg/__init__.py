"""KubeFabric shard service on PostgreSQL."""
