"""The kernel relay of :mod:`zotpy.transport.splice` over real loopback sockets: every byte in order, after what
the target's transport still held; backpressure from a stalled reader; each way it can break."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import attrs

from twisted.internet import defer, reactor, ssl, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.trial import unittest
from twisted.web._newclient import TransportProxyProducer
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.driversuite import async_test
from zotpy.transport import splice
from zotpy.transport.splice import Splice, SpliceFailed

BODY = os.urandom(6 * 1024 * 1024 + 12345)


class Sender(Protocol):
    """The source's far end: sends ``factory.payload`` (then closes, if ``factory.close``)."""

    def connectionMade(self) -> None:
        self.transport.write(self.factory.payload)
        if self.factory.close:
            self.transport.loseConnection()


class Held(Protocol):
    """A connection whose transport the test hands to a splice; records what it reads itself."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class Accepted(Held):
    """The target: a connection accepted by the test's server, as a client's connection to zotpy is."""

    def connectionMade(self) -> None:
        self.factory.accepted.callback(self)


class Reader(Protocol):
    """The client at the target's far end: hashes what arrives, until ``expected`` bytes or the end."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.hasher = hashlib.sha256()
        self.count = 0
        self.first = b""
        self.done: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        if len(self.first) < 64:
            self.first += data[: 64 - len(self.first)]
        self.hasher.update(data)
        self.count += len(data)
        if self.count >= self.expected and not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)


class _Sockets(unittest.TestCase):
    """Real loopback connections to hand to a splice."""

    async def pair(self, payload: bytes, close: bool = False, expected: int | None = None) -> tuple[Any, Held, Reader]:
        """A source connection receiving ``payload``, a target connection and the reader behind it."""
        senders = Factory.forProtocol(Sender)
        senders.payload, senders.close = payload, close
        source_port = reactor.listenTCP(0, senders, interface="127.0.0.1")
        self.addCleanup(source_port.stopListening)
        source = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", source_port.getHost().port), Held())
        source.transport.stopReading()  # as twisted's HTTP client is, once the headers are in
        targets = Factory.forProtocol(Accepted)
        targets.accepted = defer.Deferred()
        target_port = reactor.listenTCP(0, targets, interface="127.0.0.1")
        self.addCleanup(target_port.stopListening)
        reader = Reader(len(payload) if expected is None else expected)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", target_port.getHost().port), reader)
        target = await targets.accepted
        self.addCleanup(lambda: [end.transport.abortConnection() for end in (source, target, reader)])
        return source, target, reader


class SpliceTests(_Sockets):
    async def stalled(self, wait: float) -> tuple[Splice, defer.Deferred[None], Held, Held, Reader]:
        """A splice of BODY started toward a reader that stopped reading, ``wait`` seconds ago."""
        source, target, reader = await self.pair(BODY)
        reader.transport.pauseProducing()
        spliced = Splice(reactor, source.transport, target.transport, len(BODY))
        finished = spliced.start()
        await task.deferLater(reactor, wait, lambda: None)
        return spliced, finished, source, target, reader

    @async_test
    async def test_moves_every_byte_after_what_the_target_still_held(self) -> None:
        source, target, reader = await self.pair(BODY, expected=len(b"HEADERS\r\n") + len(BODY))
        before = splice.stats.bytes
        target.transport.write(b"HEADERS\r\n")  # still in the transport's buffer when the splice starts
        await Splice(reactor, source.transport, target.transport, len(BODY)).start()
        await reader.done
        self.assertEqual(reader.count, len(b"HEADERS\r\n") + len(BODY))
        self.assertTrue(reader.first.startswith(b"HEADERS\r\n"))
        self.assertEqual(reader.hasher.digest(), hashlib.sha256(b"HEADERS\r\n" + BODY).digest())
        self.assertEqual(splice.stats.bytes - before, len(BODY))

    @async_test
    async def test_what_the_target_held_goes_out_at_once_not_a_reactor_turn_later(self) -> None:
        source, target, reader = await self.pair(BODY, expected=len(b"HEADERS\r\n") + len(BODY))
        target.transport.write(b"HEADERS\r\n")
        self.assertEqual(splice._buffered(target.transport), len(b"HEADERS\r\n"))
        finished = Splice(reactor, source.transport, target.transport, len(BODY)).start()
        # No reactor turn has passed: the splice sent the held bytes itself and began at once.
        self.assertEqual(splice._buffered(target.transport), 0)
        self.assertNotIn(target.transport, reactor.getWriters())
        await finished
        await reader.done
        self.assertEqual(reader.hasher.digest(), hashlib.sha256(b"HEADERS\r\n" + BODY).digest())

    @async_test
    async def test_gives_the_target_back_and_closes_the_source(self) -> None:
        source, target, reader = await self.pair(BODY)
        await Splice(reactor, source.transport, target.transport, len(BODY)).start()
        await source.lost  # its parser missed the body: it cannot be reused
        reader.transport.write(b"next request")
        while target.received != b"next request":
            await task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(source.received, b"")

    @async_test
    async def test_a_stalled_reader_stops_the_source(self) -> None:
        spliced, finished, source, target, reader = await self.stalled(0.3)
        held = spliced.received
        await task.deferLater(reactor, 0.2, lambda: None)
        self.assertFalse(finished.called)
        self.assertEqual(spliced.received, held)  # the pipe is full: nothing more is read
        self.assertLess(spliced.received, len(BODY))
        reader.transport.resumeProducing()
        await finished
        await reader.done
        self.assertEqual(reader.hasher.digest(), hashlib.sha256(BODY).digest())

    @async_test
    async def test_a_short_source_fails_and_cuts_the_client(self) -> None:
        source, target, reader = await self.pair(BODY[:1000000], close=True, expected=len(BODY))
        with self.assertRaises(SpliceFailed) as caught:
            await Splice(reactor, source.transport, target.transport, len(BODY)).start()
        self.assertIn("the source ended after 1000000", str(caught.exception))
        await reader.done  # the connection was cut: the client sees the body short
        await target.lost
        self.assertLessEqual(reader.count, 1000000)

    @async_test
    async def test_a_client_that_leaves_fails_it_and_closes_the_source(self) -> None:
        spliced, finished, source, target, reader = await self.stalled(0.1)
        reader.transport.abortConnection()
        with self.assertRaises(SpliceFailed):
            await finished
        await source.lost

    @async_test
    async def test_stop_ends_it(self) -> None:
        spliced, finished, source, target, reader = await self.stalled(0.05)
        spliced.stop("the idle timer expired")
        with self.assertRaises(SpliceFailed) as caught:
            await finished
        self.assertIn("the idle timer expired", str(caught.exception))
        await source.lost
        await target.lost


class _Big(Resource):
    """A sized body of BODY at /big; /port answers with the client's port (which connection)."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        if request.path == b"/port":
            return str(request.getClientAddress().port).encode()
        return BODY


class _Headers(Protocol):
    """Receives what twisted's client delivers of a body before the splice takes the rest."""

    def __init__(self) -> None:
        self.received = 0

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)

    def connectionLost(self, reason: Any = None) -> None:
        pass


class KeepAliveTests(_Sockets):
    @async_test
    async def test_the_source_goes_back_to_its_pool_once_the_body_is_through(self) -> None:
        """A real twisted HTTP client: after the splice its reply ends as if parsed, and the next
        request travels on the same connection; the bytes the client saw were every byte."""
        server = reactor.listenTCP(0, Site(_Big()), interface="127.0.0.1")
        self.addCleanup(server.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, pool=pool)
        base = f"http://127.0.0.1:{server.getHost().port}".encode()
        first = await agent.request(b"GET", base + b"/port")
        port = await readBody(first)
        _, target, reader = await self.pair(b"", expected=1)
        kept = splice.stats.sources_kept
        response = await agent.request(b"GET", base + b"/big")
        early = _Headers()
        response.deliverBody(early)  # what twisted read with the headers goes here, the rest is spliced
        source = splice.source_of(response)
        assert source is not None
        spliced: defer.Deferred[None] = defer.Deferred()
        splice.hand_over_later(
            reactor, source, target.transport, lambda: len(BODY) - early.received,
            lambda running: running.start().chainDeferred(spliced),
        )
        await spliced
        while reader.count < len(BODY) - early.received:
            await task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(splice.stats.sources_kept - kept, 1)
        self.assertGreater(early.received, 0)
        self.assertEqual(reader.count, len(BODY) - early.received)
        self.assertEqual(reader.hasher.digest(), hashlib.sha256(BODY[early.received :]).digest())
        again = await agent.request(b"GET", base + b"/port")
        self.assertEqual(await readBody(again), port)  # the same connection, back from the pool

    @async_test
    async def test_a_source_that_is_not_twisteds_client_is_closed(self) -> None:
        source, target, reader = await self.pair(BODY)
        kept = splice.stats.sources_kept
        await Splice(reactor, source.transport, target.transport, len(BODY)).start()
        await source.lost
        self.assertEqual(splice.stats.sources_kept, kept)


@attrs.define
class _Response:
    """What :func:`splice.source_of` looks at in twisted's client response: its transport proxy."""

    _transport: TransportProxyProducer


class EligibilityTests(_Sockets):
    @async_test
    async def test_plain_tcp_under_a_pass_through_wrapper_qualifies_and_tls_does_not(self) -> None:
        source, _, _ = await self.pair(b"x")
        tcp_connection = source.transport
        wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
        wrapper.transport = tcp_connection  # as ConnectionTrackingFactory's wrapper holds the socket
        self.assertIs(splice.source_of(_Response(TransportProxyProducer(wrapper))), tcp_connection)
        tls = TLSMemoryBIOProtocol(TLSMemoryBIOFactory(ssl.CertificateOptions(), True, Factory.forProtocol(Protocol)), Protocol())
        tls.transport = tcp_connection  # TLS records over that same socket
        self.assertIsNone(splice.source_of(_Response(TransportProxyProducer(tls))))
        self.assertIsNone(splice.source_of(object()))  # type: ignore[arg-type]
        self.assertIsNone(splice.target_of(object()))
