"""bbolt files (go.etcd.io/bbolt's on-disk format, the one etcd keeps its data in), written and
read in Python: `writer.Writer` lays out buckets of sorted keys as a fresh bbolt file (what
Maintenance.Snapshot streams), `reader.Reader` walks one (what `kubefabric migrate` imports).
`layout` holds the page format both follow.
"""
from .layout import BoltError  # noqa: F401
