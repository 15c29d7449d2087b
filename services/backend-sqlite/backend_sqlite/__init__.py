"""KubeFabric shard store and service on SQLite: the embedded `kubefabric serve` shard and `kubefabric backend-sqlite`."""
