"""Storing an :class:`IStreamedSource` (a request body still arriving) without spooling it first.

A blob pushed whole used to be received into a temporary file, hashed in a second pass, then
copied or sent on: three trips over every byte, one after the other. Read as it arrives, the body
is written (to disk, or to S3 as the part of a multipart upload) while the next bytes come in,
and hashed in the thread pool on the way; what needs the whole body at once still gets a file
from :func:`spool`.
"""

from __future__ import annotations

import tempfile
from typing import Any, Awaitable, BinaryIO, Callable, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from zotpy.oci.digest import Hasher
from zotpy.storage.driver import IStreamedSource, Source, StorageError

T = TypeVar("T")

#: Bytes gathered before a disk write or a hash update: fewer thread hops, bounded memory.
BATCH = 1024 * 1024


def is_streamed(source: Source) -> bool:
    return IStreamedSource.providedBy(source)


async def read_batch(source: IStreamedSource, size: int = BATCH) -> bytes:
    """At least ``size`` bytes of ``source`` (fewer only at its end; ``b""`` when it is done)."""
    pieces: list[bytes] = []
    gathered = 0
    while gathered < size:
        data = await source.read()
        if not data:
            break
        pieces.append(data)
        gathered += len(data)
    return b"".join(pieces)


async def spool(source: IStreamedSource, reactor: Any, threadpool: ThreadPool) -> BinaryIO:
    """All of ``source`` in an anonymous temporary file, positioned at its start: for a driver that
    must read a body more than once or at offsets. Written in the thread pool, batch by batch."""
    spooled: BinaryIO = await deferToThreadPool(reactor, threadpool, tempfile.TemporaryFile)
    try:
        while batch := await read_batch(source):
            await deferToThreadPool(reactor, threadpool, spooled.write, batch)
        await deferToThreadPool(reactor, threadpool, spooled.seek, 0)
    except BaseException:
        spooled.close()
        raise
    return spooled


class HashFeed:
    """Feeds a hasher in the thread pool, one batch at a time and in order, while the caller goes on
    with the next batch: hashing never holds a transfer up by more than one batch."""

    def __init__(self, reactor: Any, threadpool: ThreadPool | None, hasher: Hasher | None) -> None:
        if hasher is not None and threadpool is None:
            raise ValueError("hashing needs the thread pool")
        self._reactor = reactor
        self._threadpool = threadpool
        self._hasher = hasher
        self._last: defer.Deferred[None] | None = None

    async def feed(self, data: bytes) -> None:
        """Queue ``data`` once the batch before it was hashed."""
        if self._hasher is None:
            return
        await self.done()
        self._last = deferToThreadPool(self._reactor, self._threadpool, self._hasher.update, data)

    async def done(self) -> None:
        """Wait until every batch fed was hashed."""
        last, self._last = self._last, None
        if last is not None:
            await last


class Pausable:
    """The push-producer half of a body producer whose loop waits on ``_paused`` while the
    connection is full and ends once ``_stopped``."""

    _paused: defer.Deferred[None] | None = None
    _stopped = False

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:
        self._stopped = True
        self.resumeProducing()


@implementer(IBodyProducer)
class StreamedPart(Pausable):
    """The next ``length`` bytes of a streamed source as an outgoing request body (an S3 part, a
    forwarded request), written as they arrive and paused when the connection is full. ``length``
    None: all the source gives, of a length nobody knows yet (sent with chunked coding).

    ``hasher`` (optional) is fed every byte through a :class:`HashFeed`. The body can be produced
    once only (its bytes are gone): :meth:`once` gives the factory an S3 call wants, which refuses
    a retry rather than sending something else.

    ``verify`` (a declared length only) makes the body all-or-nothing for its receiver: the last
    byte is held back until every byte was hashed and ``verify()`` returned. When it raises, the
    request fails with that byte never sent, and a receiver that counts the bytes it was promised
    (S3 does: a PUT cut short creates nothing) keeps nothing.
    """

    def __init__(
        self,
        source: IStreamedSource,
        length: int | None,
        reactor: Any,
        threadpool: ThreadPool | None = None,
        hasher: Hasher | None = None,
        verify: Callable[[], None] | None = None,
    ) -> None:
        if verify is not None and length is None:
            raise ValueError("only a body of a declared length can hold its last byte back")
        self.source = source
        self.length = UNKNOWN_LENGTH if length is None else length
        self._hashing = HashFeed(reactor, threadpool, hasher)
        self._verify = verify
        self._produced = False
        self._ended: Failure | None = None
        self._waiters: list[defer.Deferred[None]] = []
        self._done = False

    def once(self) -> Callable[[], IBodyProducer]:
        def produce() -> IBodyProducer:
            if self._produced:
                if self._ended is not None:
                    self._ended.raiseException()
                raise StorageError("a streamed body cannot be sent twice")
            return self

        return produce

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        self._produced = True
        finished: defer.Deferred[None] = defer.Deferred()

        def report(result: Any) -> None:
            self._done = True
            if isinstance(result, Failure):
                self._ended = result
            for waiter in self._waiters:
                waiter.callback(None)
            self._waiters.clear()
            if not self._stopped:  # after stopProducing the Deferred must never fire
                finished.errback(result) if isinstance(result, Failure) else finished.callback(None)

        defer.ensureDeferred(self._produce(consumer)).addBoth(report)
        return finished

    async def send(self, call: Callable[[Callable[[], IBodyProducer]], Awaitable[T]]) -> T:
        """Run ``call``, the request that sends this body (given :meth:`once`), then wait until
        every byte was hashed. When the body itself failed (its client went away), that is the
        error raised, rather than the request's report of it."""
        try:
            result = await call(self.once())
        except Exception:
            if self._ended is not None:
                self._ended.raiseException()
            raise
        await self.finished()
        return result

    async def finished(self) -> None:
        """Wait until production ended and every byte sent was hashed; re-raise a failure."""
        if not self._done:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._waiters.append(waiter)
            await waiter
        if self._ended is not None:
            self._ended.raiseException()

    async def _produce(self, consumer: IConsumer) -> None:
        sized = self.length is not UNKNOWN_LENGTH
        sent = 0
        while not self._stopped and (not sized or sent < self.length):
            if self._paused is not None:
                await self._paused
                continue
            batch = await read_batch(self.source, min(BATCH, self.length - sent) if sized else BATCH)
            if not batch:
                if not sized:
                    break
                raise StorageError(f"the body ended after {sent} of {self.length} bytes")
            if sized and sent + len(batch) > self.length:
                raise StorageError(f"the body is longer than its {self.length} bytes")
            if self._stopped:
                return
            last = sized and self._verify is not None and sent + len(batch) == self.length
            consumer.write(batch[:-1] if last else batch)
            sent += len(batch)
            await self._hashing.feed(batch)
            if last:
                await self._hashing.done()
                assert self._verify is not None
                self._verify()  # raising: the last byte stays here, and the request fails
                if self._stopped:
                    return
                consumer.write(batch[-1:])
        await self._hashing.done()
