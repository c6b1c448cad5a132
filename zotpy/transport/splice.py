"""Zero-copy relay of a response body between two plain TCP connections, with Linux splice(2).

A blob that zotpy relays, from S3 to a client or from the owning replica to a client, otherwise
crosses this process as Python bytes: a ``recv()`` copy into a 64 KiB string, a ``send()`` copy out
of it, and a few Python calls for every chunk. The benchmark measured that relay as the dearest part
of a pull (docs/benchmarks.md). splice(2) moves the pages socket -> pipe -> socket inside the kernel:
nothing is copied into this process, and a pipe-full (1 MiB) costs two system calls.

Only plain TCP on both ends qualifies (TLS records must be decrypted and encrypted again in user
space), on a platform with :func:`os.splice`; :func:`source_of` and :func:`target_of` say None
otherwise and callers keep their ordinary relay.

While a splice runs it owns both sockets and neither Twisted transport touches them. The source's
HTTP parser never sees the body: once the body is through, the parser is told so
(:func:`zotpy.transport.twisted_private.finish_client_body`) and the keep-alive connection goes back to its pool, as if the bytes had been
parsed. (It used to be closed: a new S3 connection for every large GET cost ~2 ms of system time per
16 MiB blob, and the first milliseconds of each.) A splice that stops short closes it. The
target's transport gets its socket back once the body is through, and the response is finished as
usual. Backpressure is the pipe's: when the client stops reading, the pipe fills and the source is
no longer read.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Any, Callable

import attrs
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor, IWriteDescriptor
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.iweb import IResponse
from zope.interface import implementer

from zotpy.transport.twisted_private import finish_client_body, response_producer, unsent_bytes

#: Bodies shorter than this keep the ordinary relay (and the source's keep-alive connection).
MINIMUM_LENGTH = 1024 * 1024
_PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
#: Bytes moved per reactor turn at most, so one fast relay cannot starve every other connection.
_TURN_BUDGET = 8 * 1024 * 1024
_SPLICE = getattr(os, "splice", None)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_MORE = getattr(os, "SPLICE_F_MORE", 4)
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.EBADF)


@attrs.define
class SpliceStats:
    """What this process spliced so far (the tests read it to know the fast path ran)."""

    bodies: int = 0
    bytes: int = 0
    sources_kept: int = 0  # source connections handed back to their HTTP client, not closed


stats = SpliceStats()


class SpliceFailed(Exception):
    """A spliced body stopped short; both connections were closed (the client sees it short)."""


def _plain_tcp(transport: Any) -> tcp.Connection | None:
    """The TCP connection under pass-through wrappers, or None (TLS, anything else)."""
    while type(transport) is ProtocolWrapper:  # ConnectionTrackingFactory's: not TLS, not a policy
        transport = transport.transport
    if _SPLICE is None or not isinstance(transport, tcp.Connection) or not transport.connected:
        return None
    return transport


def source_of(response: IResponse) -> tcp.Connection | None:
    """The plain TCP connection a response body arrives on (twisted's HTTP/1.1 client; treq's
    wrappers are looked through), or None."""
    while hasattr(response, "original"):  # treq's _Response
        response = response.original
    return _plain_tcp(response_producer(response))


def target_of(request: Any) -> tcp.Connection | None:
    """The plain TCP connection a response with a Content-Length goes out on, its headers sent;
    None if the body cannot be spliced into it (TLS, chunked, HEAD, already finished)."""
    if not isinstance(request, Request) or request.finished or request.method == b"HEAD":
        return None
    if request.channel is None or not request.responseHeaders.hasHeader(b"content-length"):
        return None
    connection = _plain_tcp(request.channel.transport)
    if connection is not None:
        request.write(b"")  # the status line and headers, if not out yet
    return connection


def count_sent(request: Any, count: int) -> None:
    """Add spliced bytes to what the request says it sent (the access log's ``bodySize``): twisted
    counts only what passes through ``Request.write``."""
    if isinstance(request, Request):
        request.sentLength += count


def _buffered(connection: tcp.Connection) -> int:
    """Bytes the transport holds and has not handed to the kernel yet."""
    return unsent_bytes(connection)


@implementer(IReadDescriptor, IWriteDescriptor)
@attrs.define(eq=False)
class _End:
    """One socket of a splice as the reactor sees it: readiness in either direction moves bytes."""

    splice: Splice
    fd: int
    side: str

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        self.splice._pump()

    def doWrite(self) -> None:
        self.splice._pump()

    def connectionLost(self, reason: Failure) -> None:
        self.splice._fail(f"the {self.side} connection was lost: {reason.getErrorMessage()}")

    def logPrefix(self) -> str:
        return f"splice-{self.side}"


class Splice:
    """Moves ``length`` bytes from ``source`` to ``target`` in the kernel.

    :meth:`start` fires with None once the last byte went to the target's socket, or fails with
    :class:`SpliceFailed` after closing both connections. ``progress`` is told how many bytes moved
    (idle timers); :meth:`stop` ends it early (the client left, a timer expired).
    """

    def __init__(
        self,
        reactor: IReactorFDSet,
        source: tcp.Connection,
        target: tcp.Connection,
        length: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self._reactor: Any = reactor
        self._source = source
        self._target = target
        self.length = length
        self._progress = progress
        self.received = 0
        self.sent = 0
        self._in_pipe = 0
        self._pipe: tuple[int, int] | None = None
        self._capacity = 0
        self._source_end = _End(self, source.fileno(), "source")
        self._target_end = _End(self, target.fileno(), "client")
        self._reading = self._writing = False
        self._target_was_reading = False
        self._waiting: Any = None
        self._done: Deferred[None] = Deferred()
        self._over = False

    def start(self) -> Deferred[None]:
        self._source.stopReading()
        self._source.stopWriting()
        self._target_was_reading = self._target in self._reactor.getReaders()
        self._target.stopReading()
        self._wait_for_target(0.0)
        return self._done

    def stop(self, why: str = "stopped") -> None:
        self._fail(why)

    def _wait_for_target(self, delay: float) -> None:
        """The target's transport may still hold the headers (or a first chunk): let it send them.

        It is asked to send them at once, as the reactor would when the socket is writable (which
        it almost always is: the bytes are few); polling is only for a client that reads slowly.
        Waiting for the reactor instead cost a millisecond of idle time before every spliced body.
        """
        self._waiting = None
        if self._over:
            return
        if not self._target.connected or self._target.disconnecting:
            self._fail("the client connection was lost")
            return
        if delay == 0.0 and _buffered(self._target):
            self._target.doWrite()  # a failure is left for the reactor to find on its next write
        if _buffered(self._target) or self._target in self._reactor.getWriters():
            delay = min(max(delay * 2, 0.001), 0.05)
            self._waiting = self._reactor.callLater(delay, self._wait_for_target, delay)
            return
        try:
            read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            self._fail(f"no pipe for the relay: {error}")
            return
        self._pipe = (read, write)
        try:
            self._capacity = fcntl.fcntl(write, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:  # over the user's pipe quota: the default size still works
            self._capacity = fcntl.fcntl(write, getattr(fcntl, "F_GETPIPE_SZ", 1032))
        self._pump()

    def _pump(self) -> None:
        if self._over or self._pipe is None:
            return
        assert _SPLICE is not None
        read_end, write_end = self._pipe
        budget = _TURN_BUDGET
        while budget > 0:
            moved = 0
            wanted = min(self.length - self.received, self._capacity - self._in_pipe)
            if wanted > 0:
                try:
                    got = _SPLICE(self._source_end.fd, write_end, wanted, flags=_FLAGS)
                except BlockingIOError:
                    got = -1
                except OSError as error:
                    self._fail(f"reading the source failed: {error}")
                    return
                if got == 0:
                    self._fail(f"the source ended after {self.received} of {self.length} bytes")
                    return
                if got > 0:
                    self.received += got
                    self._in_pipe += got
                    moved += got
            if self._in_pipe:
                more = _MORE if self.received < self.length else 0
                try:
                    put = _SPLICE(read_end, self._target_end.fd, self._in_pipe, flags=_FLAGS | more)
                except BlockingIOError:
                    put = -1
                except OSError as error:
                    gone = "the client left" if error.errno in _GONE else f"writing to the client failed: {error}"
                    self._fail(gone)
                    return
                if put > 0:
                    self.sent += put
                    self._in_pipe -= put
                    moved += put
                    if self._progress is not None:
                        self._progress(put)
            if self.sent == self.length:
                self._succeed()
                return
            if moved <= 0:
                break
            budget -= moved
        self._watch(self.received < self.length and self._in_pipe < self._capacity, self._in_pipe > 0)

    def _watch(self, read: bool, write: bool) -> None:
        if read != self._reading:
            (self._reactor.addReader if read else self._reactor.removeReader)(self._source_end)
            self._reading = read
        if write != self._writing:
            (self._reactor.addWriter if write else self._reactor.removeWriter)(self._target_end)
            self._writing = write

    def _release(self, whole: bool = False) -> None:
        self._over = True
        if self._waiting is not None and self._waiting.active():
            self._waiting.cancel()
        self._watch(False, False)
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
        if whole and finish_client_body(self._source, self.length):
            stats.sources_kept += 1
        else:
            # Its HTTP parser missed (a part of) the body: the connection cannot carry another reply.
            self._source.abortConnection()

    def _succeed(self) -> None:
        self._release(whole=True)
        if self._target_was_reading and self._target.connected:
            self._target.startReading()
        stats.bodies += 1
        stats.bytes += self.sent
        self._done.callback(None)

    def _fail(self, why: str) -> None:
        if self._over:
            return
        self._release()
        self._target.abortConnection()
        self._done.errback(SpliceFailed(f"{why} ({self.sent} of {self.length} bytes sent)"))


def hand_over_later(
    reactor: Any,
    source: tcp.Connection,
    target: tcp.Connection,
    remaining: Callable[[], int | None],
    begin: Callable[[Splice], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """On the next reactor turn, if ``remaining()`` bytes are still worth it, ``begin`` a splice of them.

    Not at once: a response reaches its reader in the middle of twisted's parsing of a read that may
    also hold the body's first bytes, delivered only after that reader returns. On the next turn
    they have been relayed the ordinary way and the socket holds exactly the rest.
    """

    def take_over() -> None:
        left = remaining()
        if left is not None and left >= MINIMUM_LENGTH and source.connected and target.connected:
            begin(Splice(reactor, source, target, left, progress))

    reactor.callLater(0, take_over)
