"""Blob upload bodies handed to their handler while they arrive, instead of after a whole spool.

twisted.web receives a request's whole body into a temporary file before the resource sees the
request. For a blob that is a full pass over disk before the first byte reaches storage, then a
second to hash it: on S3, a 16 MiB push took ~170 ms where a plain PUT of it takes ~107. A
:class:`StreamedBody` is what :class:`~zotpy.api.site.RegistryRequest` gives as ``content`` for
the requests :func:`streams` picks: the handler runs as soon as the headers are in, and the driver
reads the body as it comes (:mod:`zotpy.storage.streamed`).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from zotpy.api.routes import UPLOAD_ROUTES, Match
from zotpy.storage.driver import IStreamedSource, StorageError

#: Smaller bodies are spooled as before: in memory or a small file they cost little.
STREAM_AT_LEAST = 1024 * 1024

#: Received and not yet read beyond this, the connection stops reading until the handler catches up.
HIGH_WATER = 4 * 1024 * 1024

_UPLOAD_METHODS = frozenset({"POST", "PATCH", "PUT"})


def streams(route: Match | None, length: int | None, ranged: bool) -> bool:
    """Whether a request's body is streamed: a blob upload (POST, PATCH or PUT under
    ``/blobs/uploads/``) with a declared length of at least :data:`STREAM_AT_LEAST`, or a PATCH
    sent with chunked transfer coding and no ``Content-Range`` (``ranged``) as docker and
    containerd send a layer: its length is known at its end only, which a chunk needs no sooner."""
    if route is None or route.route not in UPLOAD_ROUTES or route.method not in _UPLOAD_METHODS:
        return False
    if length is None:
        return route.method == "PATCH" and not ranged
    return length >= STREAM_AT_LEAST


class BodyIncomplete(StorageError):
    """The client went away before sending the whole body it announced."""


@implementer(IStreamedSource)
class StreamedBody:
    """A request body between the connection (which :meth:`feed`\\ s it) and the handler (which
    :meth:`read`\\ s it). At most about :data:`HIGH_WATER` bytes wait in memory: beyond that the
    connection is paused until they are read. Once :meth:`discard`\\ ed (the handler answered
    without it), the rest is received and dropped, so the connection stays usable."""

    def __init__(self, length: int | None, connection: IPushProducer) -> None:
        self.length = length
        self.received = 0
        self.complete = False
        self._connection = connection
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._failure: Failure | None = None
        self._waiting: Deferred[bytes] | None = None
        self._discarding = False

    # -- from the connection -----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self._discarding:
            return
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.callback(data)
            return
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._connection.pauseProducing()

    def end(self) -> None:
        """Every byte arrived."""
        self.complete = True
        self._wake()

    def close(self) -> None:
        """The request is over (twisted.web calls this when it finishes or its connection is lost)."""
        if self.complete or self._failure is not None:
            return  # a whole body is still read to its end, even when its client left since
        of = "" if self.length is None else f" of {self.length}"
        self._failure = Failure(BodyIncomplete(f"the client went away after {self.received}{of} body bytes"))
        self._pieces.clear()
        self._wake()

    # -- from the handler --------------------------------------------------------------------------

    def read(self) -> Deferred[bytes]:
        if self._pieces:
            data = b"".join(self._pieces)
            self._pieces.clear()
            self._buffered = 0
            self._resume()
            return succeed(data)
        if self._failure is not None:
            return fail(self._failure)
        if self.complete or self._discarding:
            return succeed(b"")
        if self._waiting is not None:
            raise RuntimeError("a streamed body has one reader at a time")
        self._waiting = Deferred(self._cancelled)
        self._resume()
        return self._waiting

    def discard(self) -> None:
        """Nobody will read the rest: drop what waits and what still comes."""
        self._discarding = True
        self._pieces.clear()
        self._buffered = 0
        self._resume()

    # -- internals ---------------------------------------------------------------------------------

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._connection.resumeProducing()

    def _cancelled(self, waiting: Deferred[bytes]) -> None:
        if self._waiting is waiting:  # the reader gave up (its client left): nobody waits now
            self._waiting = None

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        if self._failure is not None:
            waiting.errback(self._failure)
        else:
            waiting.callback(b"")
