"""KubeFabric shard service on MySQL / MariaDB."""
