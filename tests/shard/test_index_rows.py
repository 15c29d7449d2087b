"""The writer's index rows are tuples bound positionally (kubefabric.index.rows): every store's
compiled index_insert must take its parameters in index_statements.INDEX_COLUMNS order, and
the Indexer must produce rows in that order with the values the query plans encode."""
from __future__ import annotations

import json

import pytest
from backend_mysql.dialect import statements as mysql_statements
from backend_pg.dialect import statements as pg_statements
from backend_sqlite.dialect import statements as sqlite_statements

from kubefabric.index.rows import Indexer
from kubefabric.index.rules import index_rules
from kubefabric.proto.mvccpb.kv_pb2 import Event, KeyValue
from kubefabric.query.requirements import FIELD, LABEL
from kubefabric.store.index_statements import INDEX_COLUMNS
from kubefabric.topology.load import parse_topology


@pytest.mark.parametrize("statements", [sqlite_statements, pg_statements, mysql_statements],
                         ids=["sqlite", "postgresql", "mariadb"])
def test_index_insert_binds_the_columns_in_row_order(statements):
    compiled = statements().get("index_insert")
    assert compiled.params == INDEX_COLUMNS
    row = (b"/k", 7, 1, FIELD, b"metadata.name", b"k")
    assert compiled.args(row) is row


def test_rows_are_tuples_in_column_order():
    topology = parse_topology("""
shards: [{name: main, endpoint: embedded}]
rules:
  - customresource: {group: bench.example.com, resource: widgets}
    shard: main
    index: {labels: true, fields: [spec.customer]}
""")
    indexer = Indexer(index_rules(topology, "main"))
    key = b"/registry/bench.example.com/widgets/ns1/w1"
    obj = {"apiVersion": "bench.example.com/v1", "kind": "Widget",
           "metadata": {"name": "w1", "namespace": "ns1", "labels": {"app": "a" * 300}},
           "spec": {"customer": "c1"}}
    events = [Event(type=Event.DELETE, kv=KeyValue(key=b"/other")),
              Event(type=Event.PUT, kv=KeyValue(key=key, value=json.dumps(obj).encode()))]
    rows = indexer.rows(12, events)
    by_name = {r[4]: r for r in rows}
    assert all(r[:3] == (key, 12, 1) for r in rows)
    assert by_name[b"metadata.name"][3:] == (FIELD, b"metadata.name", b"w1")
    assert by_name[b"metadata.namespace"][3:] == (FIELD, b"metadata.namespace", b"ns1")
    assert by_name[b"spec.customer"][3:] == (FIELD, b"spec.customer", b"c1")
    long_value = by_name[b"app"]
    assert long_value[3] == LABEL and long_value[5][:1] == b"\xff" and len(long_value[5]) == 33
    assert len(rows) == 4
    assert indexer.rows(13, [Event(type=Event.PUT, kv=KeyValue(key=key, value=b"not json"))]) == []
