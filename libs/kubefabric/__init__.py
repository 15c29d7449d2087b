"""KubeFabric's shared code: the shard core, the etcd semantics, the services' plumbing.

`DESIGN §n` in docstrings and comments is section n of docs/design.md.
"""
