"""Bytes in motion between S3 and zotpy, with bounded memory and backpressure in both directions.

- :class:`HashingSource` and :class:`WindowBody`: a request body (an upload part, a tail) read from the
  spooled client body in the thread pool, 1 MiB at a time, paused whenever the S3 connection's buffer
  is full; the running digest is fed each byte exactly once, even when a part is sent again after a
  transient failure.
- :class:`S3Reader`: an S3 GET relayed into an ``IConsumer`` (the client's HTTP response): the S3
  socket is paused when the client's is full, so a slow client never makes zotpy buffer a blob. A
  large body between two plain TCP connections is spliced in the kernel instead (:mod:`zotpy.transport.splice`).
- :func:`hash_response`: an S3 GET fed through hashlib in the thread pool, the socket paused while
  the digest catches up.
"""

from __future__ import annotations

import hashlib
from typing import Any, Awaitable, BinaryIO, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.client import ResponseDone
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from zotpy.transport import splice
from zotpy.oci.digest import Hasher
from zotpy.storage.driver import IByteReader, StorageError
from zotpy.storage.streamed import Pausable

READ_CHUNK = 1024 * 1024
_HASH_HIGH_WATER = 4 * READ_CHUNK
_HASH_LOW_WATER = READ_CHUNK


class HashingSource:
    """A seekable client body read at offsets relative to where it stood when wrapped, feeding
    ``hasher`` with every byte once, in order. Its methods run in the thread pool."""

    def __init__(self, stream: BinaryIO, hasher: Hasher | None) -> None:
        self.stream = stream
        self.hasher = hasher
        self.base = stream.tell()
        self.length = stream.seek(0, 2) - self.base
        stream.seek(self.base)
        self.hashed = 0

    def hash_through(self) -> None:
        """Feed the hasher every byte not fed yet (later reads then just read)."""
        while self.hashed < self.length:
            if not self.read_at(self.hashed, min(READ_CHUNK, self.length - self.hashed)):
                raise StorageError("the request body is shorter than it said")

    def read_at(self, offset: int, size: int) -> bytes:
        if offset > self.hashed:
            raise StorageError("internal error: a body was read out of order")
        self.stream.seek(self.base + offset)
        data = self.stream.read(size)
        end = offset + len(data)
        if self.hasher is not None and end > self.hashed:
            self.hasher.update(data[self.hashed - offset :])
            self.hashed = end
        elif self.hasher is None:
            self.hashed = max(self.hashed, end)
        return data


@implementer(IBodyProducer)
class WindowBody(Pausable):
    """``prefix`` (bytes already in memory, a tail under 5 MiB) then ``length`` bytes of ``source``
    from ``offset``, read in the thread pool while the connection keeps up."""

    def __init__(
        self, reactor: Any, threadpool: ThreadPool, source: HashingSource, offset: int, length: int, prefix: bytes = b""
    ) -> None:
        self._reactor = reactor
        self._threadpool = threadpool
        self._source = source
        self._offset = offset
        self._end = offset + length
        self._prefix = prefix
        self.length = len(prefix) + length

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        finished: defer.Deferred[None] = defer.Deferred()

        def report(result: Any) -> None:
            if not self._stopped:  # after stopProducing the Deferred must never fire
                finished.callback(None) if not isinstance(result, Failure) else finished.errback(result)

        defer.ensureDeferred(self._produce(consumer)).addBoth(report)
        return finished

    async def _produce(self, consumer: IConsumer) -> None:
        if self._prefix:
            consumer.write(self._prefix)
            self._prefix = b""
        position = self._offset
        while position < self._end and not self._stopped:
            if self._paused is not None:
                await self._paused
                continue
            size = min(READ_CHUNK, self._end - position)
            try:
                chunk = await deferToThreadPool(self._reactor, self._threadpool, self._source.read_at, position, size)
            except OSError as failure:
                raise StorageError(f"reading the request body failed: {failure}") from failure
            if self._stopped:
                return
            if not chunk:
                raise StorageError("the request body is shorter than it said")
            consumer.write(chunk)
            position += len(chunk)


@implementer(IPushProducer)
class _Relay(Protocol):
    """Writes an S3 response body into a consumer, pausing the S3 socket when the consumer asks;
    or, once :meth:`hand_over` was called, lets a kernel splice move the rest of it."""

    def __init__(self, consumer: IConsumer, expected: int, done: defer.Deferred[None]) -> None:
        self.consumer = consumer
        self.expected = expected
        self.received = 0
        self.done = done
        self.stopped = False
        self.spliced: splice.Splice | None = None

    def connectionMade(self) -> None:
        self.consumer.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        if self.stopped or self.spliced is not None:
            return
        self.received += len(data)
        self.consumer.write(data)

    def hand_over(self, reactor: Any, source: Any, target: Any) -> None:
        """Let the rest of the body go from ``source`` to ``target`` in the kernel (soon: see
        :func:`splice.hand_over_later`)."""

        def remaining() -> int | None:
            return None if self.done.called or self.stopped else self.expected - self.received

        splice.hand_over_later(reactor, source, target, remaining, self._begin)

    def _begin(self, spliced: splice.Splice) -> None:
        self.consumer.unregisterProducer()
        self.spliced = spliced

        def finished(_: None) -> None:
            splice.count_sent(self.consumer, spliced.sent)
            if not self.done.called:
                self.received = self.expected
                self.done.callback(None)

        def failed(failure: Failure) -> None:
            if not self.done.called:
                self.done.errback(StorageError(f"relaying the S3 object failed: {failure.getErrorMessage()}"))

        spliced.start().addCallbacks(finished, failed)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self.done.called or self.spliced is not None:  # cancelled; or the splice closed it and reports itself
            return
        if self.stopped:
            self.done.errback(StorageError("the consumer stopped reading"))
            return
        self.consumer.unregisterProducer()
        if reason.check(ResponseDone) and self.received == self.expected:
            self.done.callback(None)
        else:
            self.done.errback(
                StorageError(
                    f"S3 stream ended after {self.received} of {self.expected} bytes: {reason.getErrorMessage()}"
                )
            )

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.stopped = True
        if self.spliced is not None:
            self.spliced.stop("the consumer stopped reading")
        else:
            self.transport.stopProducing()


class _Discard(Protocol):
    """Drops a response body nobody will read: the connection is closed rather than drained, unless
    the body is empty (then it goes back to the pool)."""

    def __init__(self, empty: bool) -> None:
        self.empty = empty

    def connectionMade(self) -> None:
        if not self.empty:
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        pass


def discard(response: IResponse) -> None:
    response.deliverBody(_Discard(response.length == 0))


def opened_size(response: IResponse) -> int | None:
    """The whole object's size from a GET's reply: its length (200), or the total of its
    ``Content-Range`` (206); None if the reply does not say."""
    if response.code == 200:
        return response.length if isinstance(response.length, int) else None
    ranges = response.headers.getRawHeaders("Content-Range") or []
    total = ranges[0].rpartition("/")[2] if ranges else ""
    return int(total) if total.isdigit() else None


@implementer(IByteReader)
class S3Reader:
    """An object opened at ``offset``: :meth:`send` relays ``offset`` .. ``offset+length-1``, from
    ``opened`` (the GET sent while opening) when that covers exactly those bytes, else from a GET of
    that range."""

    def __init__(
        self,
        size: int,
        offset: int,
        get_range: Callable[[int, int], Awaitable[IResponse]],
        reactor: Any,
        opened: IResponse | None = None,
    ) -> None:
        self.size = size
        self._offset = offset
        self._get_range = get_range
        self._reactor = reactor
        self._opened = opened
        self._relay: _Relay | None = None

    def send(self, consumer: IConsumer, length: int) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._send(consumer, length))

    def _take_opened(self, length: int) -> IResponse | None:
        opened, self._opened = self._opened, None
        if opened is not None and opened.length != length:
            discard(opened)
            return None
        return opened

    async def _send(self, consumer: IConsumer, length: int) -> None:
        response = self._take_opened(length)
        if length <= 0:
            if response is not None:
                discard(response)
            return
        if response is None:
            response = await self._get_range(self._offset, self._offset + length - 1)
        done: defer.Deferred[None] = defer.Deferred(lambda _: self.close())
        self._relay = relay = _Relay(consumer, length, done)
        response.deliverBody(relay)  # what twisted already read arrives now, the rest as it comes
        if not done.called and length - relay.received >= splice.MINIMUM_LENGTH:
            source = splice.source_of(response)
            target = splice.target_of(consumer) if source is not None else None
            if source is not None and target is not None:
                relay.hand_over(self._reactor, source, target)
        await done

    def close(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            discard(opened)
        relay, self._relay = self._relay, None
        if relay is not None and relay.transport is not None and not relay.done.called:
            relay.stopProducing()


class _HashSink(Protocol):
    """Feeds a response body to hashlib in the thread pool, one batch at a time, in order."""

    def __init__(self, reactor: Any, threadpool: ThreadPool, algorithm: str) -> None:
        self.reactor = reactor
        self.threadpool = threadpool
        self.hasher = hashlib.new(algorithm)
        self.queue: list[bytes] = []
        self.queued = 0
        self.working = False
        self.paused = False
        self.ended: Failure | None = None
        self.done: defer.Deferred[str] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.queue.append(data)
        self.queued += len(data)
        if self.queued > _HASH_HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pauseProducing()
        self._next()

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        self.ended = reason
        self._next()

    def _next(self) -> None:
        if self.working or self.done.called:
            return
        if self.queue:
            batch = b"".join(self.queue)
            self.queue.clear()
            self.queued = 0
            if self.paused:
                self.paused = False
                self.transport.resumeProducing()
            self.working = True
            deferToThreadPool(self.reactor, self.threadpool, self.hasher.update, batch).addBoth(self._hashed)
        elif self.ended is not None:
            if self.ended.check(ResponseDone):
                self.done.callback(self.hasher.hexdigest())
            else:
                self.done.errback(StorageError(f"S3 stream broke while hashing: {self.ended.getErrorMessage()}"))

    def _hashed(self, result: Any) -> None:
        self.working = False
        if isinstance(result, Failure):
            self.done.errback(result)
            return
        self._next()


async def hash_response(reactor: Any, threadpool: ThreadPool, response: IResponse, algorithm: str) -> str:
    """The hex digest of a streamed response body, hashed off the reactor thread."""
    sink = _HashSink(reactor, threadpool, algorithm)
    response.deliverBody(sink)
    return await sink.done
