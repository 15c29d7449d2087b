from kubefabric.proto.etcdserverpb import rpc_pb2 as pb


def test_put_then_get(differential):
    def body(c, record):
        record("get empty", c.get(b"a"))
        record("put", c.put(b"a", b"1"))
        record("put again", c.put(b"a", b"2", prev_kv=True))
        record("get", c.get(b"a"))
        record("empty key", c.put(b"", b"x"))
    differential(body)
