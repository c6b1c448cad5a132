"""Slow clients cannot hold the server: a request's headers have a deadline, bodies keep the idle timeout.

A real zotpy site on loopback and raw TCP clients that send their bytes at the pace each test sets.
"""

from __future__ import annotations

import hashlib
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import local_store
from zotpy.api.site import ConnectionTrackingFactory, registry_resource, registry_site
from zotpy.config import DEFAULT_READ_HEADER_TIMEOUT, ConfigError, parse_config

DEADLINE = 1.0


class RawClient(Protocol):
    """Collects what the server sends; ``closed`` fires (with the time) when the server hangs up."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[float] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed.callback(time.monotonic())

    @property
    def connected_now(self) -> bool:
        return not self.closed.called


class HeaderDeadlineTests(TestCase):
    async def start(self) -> int:
        root = tempfile.mkdtemp(prefix="zotpy-test-")
        site = registry_site(registry_resource(local_store(root)), read_header_timeout=DEADLINE)
        factory = ConnectionTrackingFactory(site)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")

        async def stop() -> None:
            await port.stopListening()
            await factory.close_connections()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        return port.getHost().port

    async def connect(self, port: int) -> RawClient:
        client = RawClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(lambda: client.transport.abortConnection() if client.connected_now else None)
        return client

    async def trickle(self, client: RawClient, data: bytes, pause: float) -> int:
        """Send ``data`` one byte per ``pause`` seconds until done or the server hangs up; how many went."""
        sent = 0
        for byte in data:
            if not client.connected_now:
                break
            client.transport.write(bytes([byte]))
            sent += 1
            await deferLater(reactor, pause, lambda: None)
        return sent

    async def trickled_out(self, client: RawClient) -> None:
        """A request's headers trickled a byte at a time: answered 408 and closed within the deadline."""
        started = time.monotonic()
        request = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"s" * 200 + b"\r\n\r\n"
        sent = await self.trickle(client, request, 0.1)
        self.assertLess(sent, len(request), "the server let the whole trickled request in")
        closed_at = await client.closed
        self.assertLess(closed_at - started, DEADLINE + 1.0)
        self.assertTrue(client.received.startswith(b"HTTP/1.1 408 "), client.received)

    async def test_trickling_headers_are_dropped(self) -> None:
        """Bytes keep coming (each well within the idle timeout), but the headers never finish in time."""
        port = await self.start()
        client = await self.connect(port)
        await self.trickled_out(client)

    async def test_silent_connection_is_dropped(self) -> None:
        """A connection that never sends a byte owes its first request's headers from the start."""
        port = await self.start()
        client = await self.connect(port)
        started = time.monotonic()
        closed_at = await client.closed
        self.assertGreaterEqual(closed_at - started, DEADLINE - 0.1)
        self.assertLess(closed_at - started, DEADLINE + 1.0)

    async def test_slow_complete_upload_is_not_dropped(self) -> None:
        """Headers in at once, then a body that takes twice the deadline: the push succeeds."""
        port = await self.start()
        client = await self.connect(port)
        body = b"slow-but-steady-body"
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        head = (
            f"POST /v2/slow/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        client.transport.write(head)
        sent = await self.trickle(client, body, 2 * DEADLINE / len(body))
        self.assertEqual(sent, len(body))
        for _ in range(50):
            if b"\r\n\r\n" in client.received:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(client.received.startswith(b"HTTP/1.1 201 "), client.received)
        self.assertTrue(client.connected_now)

    async def test_kept_alive_connection_waits_for_the_next_request(self) -> None:
        """The deadline counts from a request's first byte: idling between requests is the idle timeout's."""
        port = await self.start()
        client = await self.connect(port)
        request = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(2):
            client.received = b""
            client.transport.write(request)
            for _ in range(50):
                if b"\r\n\r\n" in client.received:
                    break
                await deferLater(reactor, 0.1, lambda: None)
            self.assertTrue(client.received.startswith(b"HTTP/1.1 200 "), client.received)
            await deferLater(reactor, DEADLINE * 1.5, lambda: None)
            self.assertTrue(client.connected_now, "an idle kept-alive connection was closed by the header deadline")


    async def test_trickling_a_kept_alive_connections_next_request_is_dropped(self) -> None:
        """The next request's headers owe the deadline too (its timer starts when its first chunk
        leaves them unfinished): a client that answered one request fast cannot then trickle."""
        port = await self.start()
        client = await self.connect(port)
        client.transport.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(50):
            if b"\r\n\r\n" in client.received:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(client.received.startswith(b"HTTP/1.1 200 "), client.received)
        client.received = b""
        await self.trickled_out(client)


class ReadHeaderTimeoutConfigTests(SynchronousTestCase):
    def document(self, **http: object) -> dict[str, object]:
        return {"storage": {"rootDirectory": "/srv/zotpy", "dedupe": False, "gc": False}, "http": http}

    def test_default(self) -> None:
        self.assertEqual(parse_config(self.document()).http.read_header_timeout, DEFAULT_READ_HEADER_TIMEOUT)
        self.assertEqual(DEFAULT_READ_HEADER_TIMEOUT, 30.0)

    def test_go_duration(self) -> None:
        config = parse_config(self.document(readHeaderTimeout="1m30s"))
        self.assertEqual(config.http.read_header_timeout, 90.0)
        self.assertEqual(config.warnings, ())

    def test_refused_values_name_the_key(self) -> None:
        for value in ("soon", "0s", 30):
            error = self.assertRaises(ConfigError, parse_config, self.document(readHeaderTimeout=value))
            self.assertEqual([path for path, _ in error.problems], ["http.readHeaderTimeout"], value)
