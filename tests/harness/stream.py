"""Bidirectional gRPC streams (Watch, LeaseKeepAlive) driven step by step from a test body.

Requests go through a queue-fed request iterator; a reader thread puts every response (or the
stream's final gRPC error, as a Failure) on a second queue, so a body can send, then wait for a
response with a timeout. Responses on a stream arrive asynchronously: bodies wait for what they
expect and record it in arrival order (or grouped by watch id where the server's order between
watchers is not defined).
"""
from __future__ import annotations

import queue
import threading
import time

import grpc

from harness.client import Client, Failure
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

_END = object()


class NoResponse(AssertionError):
    """The server did not send what the test waited for in time."""


class Stream:
    def __init__(self, method, timeout: float = 60.0):
        self._requests: queue.Queue = queue.Queue()
        self._responses: queue.Queue = queue.Queue()
        self._closed = False
        self._call = method(self._iterate(), timeout=timeout)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _iterate(self):
        while True:
            request = self._requests.get()
            if request is _END:
                return
            yield request

    def _read(self):
        try:
            for response in self._call:
                self._responses.put(response)
            self._responses.put(Failure("OK", "stream ended"))
        except grpc.RpcError as err:
            if not self._closed:
                self._responses.put(Failure(err.code().name, err.details() or ""))

    def send(self, request) -> None:
        self._requests.put(request)

    def recv(self, timeout: float = 5.0):
        """The next response (or a Failure if the stream ended); NoResponse after `timeout`."""
        try:
            return self._responses.get(timeout=timeout)
        except queue.Empty:
            raise NoResponse(f"no stream response within {timeout}s") from None

    def pending(self, wait: float = 0.3) -> list:
        """Everything that arrives within `wait` seconds (usually expected to be nothing)."""
        out, deadline = [], time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self._responses.get(timeout=left))
            except queue.Empty:
                break
        return out

    def half_close(self) -> None:
        """End the request side only (the client's CloseSend); responses keep flowing."""
        self._requests.put(_END)

    def close(self) -> None:
        self._closed = True
        self._requests.put(_END)
        self._call.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class WatchStream(Stream):
    """One Watch stream: create / cancel / progress requests and helpers to wait for events."""

    def __init__(self, client: Client, timeout: float = 60.0):
        super().__init__(client.watch.Watch, timeout)

    def create(self, key: bytes, range_end: bytes = b"", **kw) -> None:
        self.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=range_end, **kw)))

    def cancel(self, watch_id: int) -> None:
        self.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    def progress(self) -> None:
        self.send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    def created(self, key: bytes, range_end: bytes = b"", timeout: float = 5.0, **kw):
        """Create a watcher and return the server's answer to it (the created response)."""
        self.create(key, range_end, **kw)
        return self.recv(timeout)

    def events(self, n: int, timeout: float = 5.0) -> list:
        """Responses until they carry `n` events in total (stream failures end the wait early)."""
        out, count, deadline = [], 0, time.monotonic() + timeout
        while count < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoResponse(f"got {count} of {n} watch events within {timeout}s: {out}")
            response = self.recv(left)
            out.append(response)
            if isinstance(response, Failure):
                break
            count += len(response.events)
        return out

    def until_key(self, key: bytes, n: int = 1, timeout: float = 5.0) -> list:
        """Responses until `n` events for `key` have arrived (a sentinel write ends a step)."""
        seen = 0

        def done(response):
            nonlocal seen
            seen += sum(1 for e in response.events if e.kv.key == key)
            return seen >= n
        return self.until(done, timeout)

    def until(self, predicate, timeout: float = 5.0) -> list:
        """Responses up to and including the first one for which predicate(response) holds."""
        out, deadline = [], time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoResponse(f"condition not met within {timeout}s: {out}")
            response = self.recv(left)
            out.append(response)
            if isinstance(response, Failure) or predicate(response):
                return out


def by_watch_id(responses: list) -> list:
    """Responses sorted by (header revision, watch id), stable otherwise: on one stream etcd sends a
    revision's responses before the next revision's, but its order between watchers is not defined."""
    return sorted(responses, key=lambda r: (r.header.revision, r.watch_id) if hasattr(r, "watch_id") else (0, 0))


class KeepAliveStream(Stream):
    def __init__(self, client: Client, timeout: float = 60.0):
        super().__init__(client.lease.LeaseKeepAlive, timeout)

    def keepalive(self, lease_id: int, timeout: float = 5.0):
        self.send(pb.LeaseKeepAliveRequest(ID=lease_id))
        return self.recv(timeout)


def conversation(differential, steps, stream=WatchStream, **differential_kw) -> None:
    """The frame of a stream's differential test: on each server, `steps(c, s, record)` runs on
    one stream `s` opened first (a WatchStream unless `stream` says otherwise), then records
    that nothing else arrived on it; the stream is closed however the steps end."""
    def body(c, record):
        with stream(c) as s:
            steps(c, s, record)
            record("nothing else", s.pending())
    differential(body, **differential_kw)
