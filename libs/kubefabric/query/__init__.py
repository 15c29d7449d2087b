"""The Query API (proto/kubefabric/query/v1): label and field requirements over a key range at
one revision, answered by each shard (from its index, else by a scan) and merged across shards
by kv-router."""
