"""etcd snapshots: KubeFabric's keyspace as the bbolt file etcd itself keeps (`take`, streamed by
Maintenance.Snapshot and hashed by Maintenance.Hash), and an etcd snapshot file read back
(`load`, imported by `kubefabric migrate`). `schema` holds etcd's buckets and encodings.
"""
