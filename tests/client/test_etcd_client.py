"""The async etcd client (kubefabric.client) against real etcd and `kubefabric serve`: the same
test body on both, since trigger and aggregation use it against either."""
from __future__ import annotations

import asyncio
import subprocess

import pytest

from harness.servers import free_port, wait_ready
from kubefabric.client import ClientError, Compacted, EtcdClient, Unavailable, prefix_end

SERVERS = ["etcd", "kubefabric"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def with_client(server, body) -> None:
    """Run `body(client)` with a client of `server`, closed afterwards (within run's limit)."""
    async def go():
        async with EtcdClient.connect(server.endpoint) as c:
            await body(c)
    run(go())


def restart(server) -> None:
    """Kill the server (SIGKILL) and start it again on the same port and data."""
    server.proc.kill()
    server.proc.wait()
    server.proc = subprocess.Popen(server.argv, stdout=server.log_path.open("ab"),
                                   stderr=subprocess.STDOUT, cwd=server.data_dir.parent)
    wait_ready(server)


@pytest.mark.parametrize("kind", SERVERS)
def test_pages_are_one_snapshot(server_factory, kind):
    server = server_factory(kind)

    async def body():
        async with EtcdClient.connect(f"http://{server.endpoint}") as c:
            for i in range(25):
                await c.kv.put(b"/p/%02d" % i, b"v1")
            await c.kv.put(b"/q", b"outside")
            pages = c.kv.pages(b"/p/", prefix_end(b"/p/"), page_size=10)
            first = await anext(pages)
            # writes after the first page must not show in the others
            await c.kv.put(b"/p/00a", b"new")
            await c.kv.put(b"/p/24", b"v2")
            await c.kv.delete(b"/p/15")
            rest = [p async for p in pages]
            kvs = first.kvs + [kv for p in rest for kv in p.kvs]
            assert [kv.key for kv in kvs] == [b"/p/%02d" % i for i in range(25)]
            assert {kv.value for kv in kvs} == {b"v1"}
            assert len(rest) == 2 and {p.revision for p in rest} == {first.revision}
            assert first.count == 25 and first.more
            now, rev = await c.kv.list(b"/p/")
            assert rev > first.revision and len(now) == 25  # +00a, -15
            assert (await c.kv.get(b"/p/24")).value == b"v2"
            assert (await c.kv.get(b"/p/24", revision=first.revision)).value == b"v1"
            assert await c.kv.get(b"/nothing") is None
    run(body())


@pytest.mark.parametrize("kind", SERVERS)
def test_guarded_writes(server_factory, kind):
    async def body(c):
        created = await c.kv.put_if(b"/g", b"1", mod_revision=0)
        assert created.succeeded and created.current is None
        again = await c.kv.put_if(b"/g", b"2", mod_revision=0)
        assert not again.succeeded and again.current.value == b"1"
        assert again.current.mod_revision == created.revision
        stale = await c.kv.put_if(b"/g", b"2", mod_revision=created.revision - 1)
        assert not stale.succeeded
        updated = await c.kv.put_if(b"/g", b"2", mod_revision=created.revision)
        assert updated.succeeded and updated.revision > created.revision
        missed = await c.kv.delete_if(b"/g", created.revision)
        assert not missed.succeeded and missed.current.value == b"2"
        gone = await c.kv.delete_if(b"/g", updated.revision)
        assert gone.succeeded and await c.kv.get(b"/g") is None
        absent = await c.kv.delete_if(b"/g", updated.revision)
        assert not absent.succeeded and absent.current is None
    with_client(server_factory(kind), body)


async def _collect(w, until_rev: int, out: list) -> None:
    async for batch in w:
        out.extend((e.type, e.kv.key, e.kv.mod_revision) for e in batch.events)
        if out and out[-1][2] >= until_rev:
            return


@pytest.mark.parametrize("kind", SERVERS)
def test_watch_resumes_across_a_server_crash(server_factory, kind):
    """Writes made while the server was down-and-back reach the watcher once, in order."""
    server = server_factory(kind)

    async def body():
        c = EtcdClient.connect(f"http://{server.endpoint}")
        first = await c.kv.put(b"/w/a", b"1")
        w = c.watch(b"/w/", prefix_end(b"/w/"), start_revision=first, prev_kv=True)
        assert await w.start() == first
        seen: list = []
        await _collect(w, first, seen)
        await asyncio.to_thread(restart, server)
        c2 = EtcdClient.connect(f"http://{server.endpoint}")
        revs = [await c2.kv.put(b"/w/b", b"2"), await c2.kv.put(b"/w/a", b"3")]
        revs.append((await c2.kv.delete(b"/w/b"))[1])
        await c2.close()
        await _collect(w, revs[-1], seen)
        assert seen == [(0, b"/w/a", first), (0, b"/w/b", revs[0]), (0, b"/w/a", revs[1]),
                        (1, b"/w/b", revs[2])]
        assert w.reconnects >= 1 and w.next_revision == revs[-1] + 1
        await w.close()
        await c.close()
    run(body())


@pytest.mark.parametrize("kind", SERVERS)
def test_watch_from_now_and_progress(server_factory, kind):
    async def body(c):
        before = await c.kv.put(b"/n/x", b"old")
        async with c.watch(b"/n/", prefix_end(b"/n/")) as w:
            assert w.next_revision == before + 1
            rev = await c.kv.put(b"/n/y", b"new")
            batch = await anext(w)
            assert [(e.kv.key, e.kv.mod_revision) for e in batch.events] == [(b"/n/y", rev)]
            other = await c.kv.put(b"/elsewhere", b"z")
            await w.request_progress()
            note = await anext(w)
            assert note.progress and not note.events and note.revision >= other
            assert w.next_revision == note.revision + 1
    with_client(server_factory(kind), body)


@pytest.mark.parametrize("kind", SERVERS)
def test_watch_compaction_is_reported(server_factory, kind):
    async def body(c):
        first = await c.kv.put(b"/c/a", b"1")
        last = await c.kv.put(b"/c/a", b"2")
        await c.kv.compact(last)
        with pytest.raises(Compacted) as caught:
            async with c.watch(b"/c/", prefix_end(b"/c/"), start_revision=first) as w:
                await anext(w)
        assert caught.value.compact_revision == last
        with pytest.raises(Compacted):
            await c.kv.list(b"/c/", revision=first)
    with_client(server_factory(kind), body)


@pytest.mark.parametrize("kind", SERVERS)
def test_lease_keep_alive_and_loss(server_factory, kind):
    async def body(c):
        lease = await c.leases.grant(2)
        await c.kv.put(b"/l/held", b"x", lease=lease.id)
        ka = c.leases.keep_alive(lease)
        await asyncio.sleep(3.5)  # longer than the TTL: only renewals keep the key
        assert not ka.lost.is_set() and await c.kv.get(b"/l/held") is not None
        assert await c.leases.time_to_live(lease.id) > 0
        await c.leases.revoke(lease.id)  # taken away behind the holder's back
        await asyncio.wait_for(ka.lost.wait(), 5)
        await ka.stop()
        assert await c.kv.get(b"/l/held") is None

        other = await c.leases.grant(5)
        ka2 = c.leases.keep_alive(other)
        await ka2.stop(revoke=True)
        assert await c.leases.time_to_live(other.id) == -1
    with_client(server_factory(kind), body)


@pytest.mark.parametrize("kind", SERVERS)
def test_endpoint_failover(server_factory, kind):
    server = server_factory(kind)
    dead = f"127.0.0.1:{free_port()}"

    async def body():
        async with EtcdClient.connect(f"http://{dead},http://{server.endpoint}") as c:
            rev = await c.kv.put(b"/f", b"1")      # never sent to the dead one: retried
            assert (await c.kv.get(b"/f")).mod_revision == rev
            assert c.conn.endpoints[c.conn.current] == server.endpoint
        async with EtcdClient.connect(dead, retry_for=1.0) as c:
            with pytest.raises(Unavailable):
                await c.kv.get(b"/f")
    run(body())


def test_endpoint_parsing():
    from kubefabric.client import parse_endpoints
    assert parse_endpoints("http://a:1, b:2") == (["a:1", "b:2"], False)
    assert parse_endpoints("https://a:1") == (["a:1"], True)
    for bad in ("", "a", "ftp://a:1", "http://a:1,https://b:2"):
        with pytest.raises(ValueError):
            parse_endpoints(bad)
    assert issubclass(Unavailable, ClientError)
