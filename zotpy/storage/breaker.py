"""A circuit breaker in front of a storage driver: a backend that stopped answering costs seconds, not minutes.

When the backend hangs (an S3 server frozen, a stuck NFS mount under the local driver, every
thread of the pool blocked), each call would wait for its own timeouts and retries (a minute or
more per S3 call) and every client with it. :class:`BreakerDriver` wraps any
:class:`~zotpy.storage.driver.IStorageDriver` and decides once for all of them:

- **closed** (normal): calls pass. Small calls (``get_content``, ``put_content``, ``stat``, ``size``,
  ``list`` and opening a reader) get ``call_timeout`` seconds; bulk calls (appends, writes, moves,
  copies, streaming a blob) get no total limit, since their duration depends on their size:
  instead, while any call has been waiting ``suspect_after`` seconds, the backend's cheap check
  (S3's HeadBucket, a listing of the local root) runs, and that check not answering within
  ``call_timeout`` is what ends them. So a slow transfer to a live backend goes on; one to a dead
  backend ends within ``suspect_after + call_timeout`` seconds.
- **open**: the breaker tripped (the check failed or timed out, ``failure_threshold`` calls in a
  row failed for want of an answer, or the health probe found the storage gone). Every call in
  flight and every new call fails at once with :class:`StorageUnavailable`, which the API answers
  503 ``UNAVAILABLE`` with ``Retry-After``.
- **probing** (half-open): while open, the check runs again as soon as the last one ended; the
  first check that answers closes the breaker, so service resumes within about a second of the
  backend's return, with no restart.

A failure counts against the backend only when the backend did not answer (no reply, timeouts,
5xx after the retries); a missing path, a digest mismatch or a client that went away prove that
the storage answers.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from zotpy.storage.driver import IByteReader, IStorageDriver, StorageUnavailable

log = Logger()

CLOSED = "closed"
OPEN = "open"

#: seconds a small call (and the backend check) may take before the backend counts as not answering
CALL_TIMEOUT_SECONDS = 5.0
#: seconds a call may wait before the backend is checked (which ends it if the check fails)
SUSPECT_AFTER_SECONDS = 2.0
#: how many calls in a row may fail for want of an answer before the breaker trips
FAILURE_THRESHOLD = 3
#: what ``Retry-After`` says while the breaker is open
RETRY_AFTER_SECONDS = 5


def backend_silent(failure: Failure) -> bool:
    """Whether ``failure`` says the backend did not answer (as opposed to answering "no")."""
    if failure.check(StorageUnavailable, TimeoutError):
        return True
    status = getattr(failure.value, "status", None)  # an S3 error reply, after the client's retries
    return isinstance(status, int) and status >= 500


class _Call:
    """One call in flight: what the caller holds (``outer``) and what the driver returned (``inner``)."""

    def __init__(self, breaker: BreakerDriver, inner: Deferred[Any], started: float) -> None:
        self.breaker = breaker
        self.inner = inner
        self.started = started
        self.outer: Deferred[Any] = Deferred(lambda _: self.inner.cancel())  # the caller gave up
        self.deadline: Any = None
        inner.addBoth(self._settled)

    def _settled(self, result: Any) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.breaker._settled(self)
        if self.outer.called:
            return  # ended already (deadline, trip, cancelled): the late result is dropped
        if not isinstance(result, Failure):
            self.breaker._answered()
            self.outer.callback(result)
            return
        if backend_silent(result):
            self.breaker._failed(result.getErrorMessage())
        elif not result.check(CancelledError):
            self.breaker._answered()
        self.outer.errback(result)

    def end(self, reason: str) -> None:
        """Fail the caller with StorageUnavailable now and abandon the driver's call."""
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.breaker._settled(self)
        if not self.outer.called:
            self.outer.errback(Failure(self.breaker.unavailable(reason)))
        self.inner.cancel()


@implementer(IByteReader)
class _GuardedReader:
    """A reader whose streaming is ended too when the breaker trips (a pull from a frozen backend)."""

    def __init__(self, reader: Any, breaker: BreakerDriver) -> None:
        self.reader = reader
        self.breaker = breaker
        self.size = reader.size

    def send(self, consumer: Any, length: int) -> Deferred[None]:
        return self.breaker._guard(lambda: self.reader.send(consumer, length), small=False)

    def close(self) -> None:
        self.reader.close()


@implementer(IStorageDriver)
class BreakerDriver:
    """An :class:`IStorageDriver` that fails fast while the driver it wraps does not answer (module doc)."""

    def __init__(
        self,
        driver: IStorageDriver,
        reactor: IReactorTime,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        suspect_after: float = SUSPECT_AFTER_SECONDS,
        failure_threshold: int = FAILURE_THRESHOLD,
        retry_after: int = RETRY_AFTER_SECONDS,
    ) -> None:
        self.driver = driver
        self.reactor = reactor
        self.call_timeout = call_timeout
        self.suspect_after = suspect_after
        self.failure_threshold = failure_threshold
        self.retry_after = retry_after
        self.state = CLOSED
        self.reason = ""
        self.trips = 0
        self._failures_in_a_row = 0
        self._in_flight: set[_Call] = set()
        self._checking: list[Deferred[None]] | None = None
        self._last_answer = reactor.seconds()
        self._last_check = float("-inf")  # when the last check ended
        self._watch = LoopingCall(self._tick)
        self._watch.clock = reactor

    def close(self) -> Deferred[None]:
        return self.driver.close()  # unguarded: closing a dead backend's pool must not wait on it

    def __repr__(self) -> str:
        return f"BreakerDriver({self.driver!r}, {self.state})"

    def unavailable(self, reason: str) -> StorageUnavailable:
        return StorageUnavailable(f"the storage does not answer ({reason})", retry_after=self.retry_after)

    def stop(self) -> None:
        """No more checks (the service stops)."""
        self._watching(False)

    # -- state ---------------------------------------------------------------------------------------

    def trip(self, reason: str) -> None:
        """Open: every call in flight and every new one fails at once, until a check answers."""
        if self.state != OPEN:
            self.state, self.reason = OPEN, reason
            self.trips += 1
            log.warn("storage does not answer ({reason}): failing requests fast until it does", reason=reason)
        for call in list(self._in_flight):
            call.end(reason)
        self._watching(True)

    def _close(self) -> None:
        if self.state == OPEN:
            log.info("storage answers again: serving requests")
        self.state, self.reason = CLOSED, ""
        self._failures_in_a_row = 0

    def _answered(self) -> None:
        self._failures_in_a_row = 0
        self._last_answer = self.reactor.seconds()

    def _silent_for(self) -> float:
        """Seconds since the backend last answered anything."""
        return self.reactor.seconds() - self._last_answer

    def _settled(self, call: _Call) -> None:
        self._in_flight.discard(call)
        if self.state == CLOSED and not self._in_flight:
            self._watching(False)

    def _failed(self, reason: str) -> None:
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= self.failure_threshold:
            self.trip(reason)

    # -- the check (health probes call it too) -------------------------------------------------------

    def check(self) -> Deferred[None]:
        """Whether the backend answers, within ``call_timeout``; the result opens or closes the breaker.

        Never refused by the breaker itself (it is how an open breaker learns that the storage is
        back). The driver's own check when it has one (S3's HeadBucket), else a listing of the root.
        A check that times out while other calls are being answered (a busy thread pool) proves
        nothing and changes nothing.
        """
        waiter: Deferred[None] = Deferred()
        if self._checking is None:
            self._checking = [waiter]
            running = maybeDeferred(self.driver.check)
            running.addTimeout(self.call_timeout, self.reactor)
            running.addBoth(self._checked)
        else:
            self._checking.append(waiter)
        return waiter

    def _checked(self, result: Any) -> None:
        waiting, self._checking = self._checking or [], None
        self._last_check = self.reactor.seconds()
        if not isinstance(result, Failure):
            self._answered()
            self._close()
            for waiter in waiting:
                waiter.callback(None)
            return
        if result.check(TimeoutError):
            reason = f"no answer within {self.call_timeout:g} s"
            if self._silent_for() < self.call_timeout:
                reason = "busy: " + reason  # other calls are answered: slow, not hung
            else:
                self.trip(reason)
        else:
            reason = result.getErrorMessage()[:300] or result.type.__name__
            self.trip(reason)
        for waiter in waiting:
            waiter.errback(Failure(self.unavailable(reason)))

    def _watching(self, on: bool) -> None:
        if on and not self._watch.running:
            self._watch.start(min(1.0, self.suspect_after / 2), now=False)
        elif not on and self._watch.running:
            self._watch.stop()

    def _tick(self) -> None:
        """Check while open (probing), or while a call has waited long enough to be suspect."""
        if self.state == CLOSED and not self._in_flight:
            self._watching(False)
            return
        if self._checking is not None:
            return
        now = self.reactor.seconds()
        if self.state == OPEN:
            self.check().addErrback(lambda _: None)  # probing: again as soon as the last one ended
        elif now - self._last_check >= self.suspect_after and any(
            now - call.started >= self.suspect_after for call in self._in_flight
        ):
            self.check().addErrback(lambda _: None)  # a long call: once per suspect_after at most

    # -- guarded calls -------------------------------------------------------------------------------

    def _guard(self, call: Callable[[], Deferred[Any]], small: bool) -> Deferred[Any]:
        if self.state == OPEN:
            return fail(self.unavailable(self.reason))
        inner = maybeDeferred(call)
        if inner.called:
            return inner  # answered at once (a cached result, an argument refused): nothing to guard
        guarded = _Call(self, inner, self.reactor.seconds())
        self._in_flight.add(guarded)
        if small:
            guarded.deadline = self.reactor.callLater(self.call_timeout, self._expired, guarded)
        self._watching(True)
        return guarded.outer

    def _expired(self, call: _Call) -> None:
        """A small call's time is up: it fails if the backend answered nothing meanwhile, else it
        waits on (a busy backend is slow, not gone; the S3 client's own timeout still bounds it)."""
        silent = self._silent_for()
        if silent < self.call_timeout:
            call.deadline = self.reactor.callLater(self.call_timeout - silent, self._expired, call)
            return
        reason = f"no answer within {self.call_timeout:g} s"
        call.deadline = None
        call.end(reason)
        self._failed(reason)

    def get_content(self, path: str) -> Deferred[bytes]:
        return self._guard(lambda: self.driver.get_content(path), small=True)

    def put_content(self, path: str, data: bytes) -> Deferred[None]:
        return self._guard(lambda: self.driver.put_content(path, data), small=True)

    def stat(self, path: str) -> Deferred[Any]:
        return self._guard(lambda: self.driver.stat(path), small=True)

    def size(self, path: str) -> Deferred[int]:
        return self._guard(lambda: self.driver.size(path), small=True)

    def list(self, path: str) -> Deferred[Any]:
        return self._guard(lambda: self.driver.list(path), small=True)

    def append(self, path: str, source: Any, hasher: Any = None) -> Deferred[int]:
        return self._guard(lambda: self.driver.append(path, source, hasher), small=False)

    def write(self, path: str, source: Any, hasher: Any, expected: str) -> Deferred[int]:
        return self._guard(lambda: self.driver.write(path, source, hasher, expected), small=False)

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> Deferred[Any]:
        opening = self._guard(lambda: self.driver.reader(path, offset, length), small=True)
        return opening.addCallback(_GuardedReader, self)

    def move(self, source: str, destination: str) -> Deferred[None]:
        return self._guard(lambda: self.driver.move(source, destination), small=False)

    def copy(self, source: str, destination: str) -> Deferred[None]:
        return self._guard(lambda: self.driver.copy(source, destination), small=False)

    def delete(self, path: str) -> Deferred[None]:
        return self._guard(lambda: self.driver.delete(path), small=False)

    def hash(self, path: str, algorithm: str) -> Deferred[str]:
        return self._guard(lambda: self.driver.hash(path, algorithm), small=False)

    def delete_many(self, paths: list[str]) -> Deferred[None]:
        return self._guard(lambda: self.driver.delete_many(paths), small=False)

    def multipart_uploads(self, path: str) -> Deferred[list[tuple[str, str, float | None]]]:
        return self._guard(lambda: self.driver.multipart_uploads(path), small=True)

    def abort_multipart(self, path: str, upload_id: str) -> Deferred[None]:
        return self._guard(lambda: self.driver.abort_multipart(path, upload_id), small=True)

    def redirect_url(self, path: str) -> Deferred[str | None]:
        return self._guard(lambda: self.driver.redirect_url(path), small=True)
