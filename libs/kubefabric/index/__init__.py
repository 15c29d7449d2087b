"""The label and field index of a shard (issue 17; DESIGN §9): for the key ranges the topology
marks `index:`, the writer keeps label and field rows of every object version in the same
transaction as its log row, a backfill indexes what was written before, and queries whose
range is covered by ready indexes are answered by SQL (kubefabric.store.index_statements)."""
