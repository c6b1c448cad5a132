"""The storage circuit breaker (zotpy.storage.breaker) on a driver the test controls, with a fake clock.

The whole path with a real S3 server that freezes is in tests/integration/test_hung_storage.py.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from zotpy.storage.breaker import CLOSED, OPEN, BreakerDriver
from zotpy.storage.driver import PathNotFound, StorageUnavailable


class ControlledDriver:
    """Each call waits until the test answers it; ``check`` is the backend's own check."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Deferred[Any]]] = []
        self.cancelled: list[str] = []

    def _call(self, name: str) -> Deferred[Any]:
        waiting: Deferred[Any] = Deferred(lambda _: self.cancelled.append(name))
        self.calls.append((name, waiting))
        return waiting

    def get_content(self, path: str) -> Deferred[bytes]:
        return self._call(f"get_content {path}")

    def append(self, path: str, source: Any, hasher: Any = None) -> Deferred[int]:
        return self._call(f"append {path}")

    def check(self) -> Deferred[None]:
        return self._call("check")

    def pending(self, name: str) -> Deferred[Any]:
        return next(waiting for called, waiting in self.calls if called == name and not waiting.called)


class BreakerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.driver = ControlledDriver()
        self.breaker = BreakerDriver(self.driver, self.clock, call_timeout=5, suspect_after=2, retry_after=7)  # type: ignore[arg-type]

    def test_answers_pass_through(self) -> None:
        got = self.breaker.get_content("a")
        self.driver.pending("get_content a").callback(b"bytes")
        self.assertEqual(self.successResultOf(got), b"bytes")
        missing = self.breaker.get_content("b")
        self.driver.pending("get_content b").errback(PathNotFound("b"))
        self.failureResultOf(missing, PathNotFound)
        self.assertEqual(self.breaker.state, CLOSED)
        self.assertFalse(self.clock.getDelayedCalls(), "nothing in flight, yet timers remain")

    def test_small_call_fails_after_the_timeout_when_nothing_answers(self) -> None:
        got = self.breaker.get_content("a")
        self.clock.advance(4.9)
        self.assertNoResult(got)
        self.clock.advance(0.2)
        failure = self.failureResultOf(got, StorageUnavailable)
        self.assertEqual(failure.value.retry_after, 7)
        self.assertEqual(self.driver.cancelled, ["get_content a"])

    def test_a_busy_backend_is_not_a_hung_one(self) -> None:
        """A small call waits on while other calls are being answered (a queue, not a hang)."""
        slow = self.breaker.get_content("slow")
        for step in range(8):
            self.clock.advance(1)
            other = self.breaker.get_content(f"other{step}")
            self.driver.pending(f"get_content other{step}").callback(b"")
            self.successResultOf(other)
        self.assertNoResult(slow)
        self.driver.pending("get_content slow").callback(b"late")
        self.assertEqual(self.successResultOf(slow), b"late")

    def test_a_failed_check_ends_bulk_calls_and_refuses_new_ones(self) -> None:
        upload = self.breaker.append("upload", None)
        self.clock.advance(2)  # the call is suspect: the backend is checked
        self.driver.pending("check")
        self.clock.advance(5)  # the check gets no answer
        self.assertEqual(self.breaker.state, OPEN)
        self.failureResultOf(upload, StorageUnavailable)
        self.assertIn("append upload", self.driver.cancelled)
        refused = self.breaker.get_content("x")
        self.failureResultOf(refused, StorageUnavailable)
        self.assertEqual([name for name, _ in self.driver.calls].count("get_content x"), 0)

    def test_a_slow_transfer_to_a_live_backend_goes_on(self) -> None:
        upload = self.breaker.append("upload", None)
        for _ in range(5):
            self.clock.advance(2)
            self.driver.pending("check").callback(None)
        self.assertNoResult(upload)
        self.driver.pending("append upload").callback(10)
        self.assertEqual(self.successResultOf(upload), 10)
        self.assertEqual(self.breaker.state, CLOSED)

    def test_probing_closes_the_breaker_when_the_backend_answers(self) -> None:
        self.breaker.trip("test")
        self.clock.advance(1)
        self.driver.pending("check").errback(StorageUnavailable("still down"))
        self.assertEqual(self.breaker.state, OPEN)
        self.clock.advance(1)
        self.driver.pending("check").callback(None)
        self.assertEqual(self.breaker.state, CLOSED)
        got = self.breaker.get_content("a")
        self.driver.pending("get_content a").callback(b"back")
        self.assertEqual(self.successResultOf(got), b"back")
        self.clock.advance(1)
        self.assertFalse(self.clock.getDelayedCalls(), "the probing goes on after the breaker closed")

    def test_failures_in_a_row_trip_it(self) -> None:
        for name in ("a", "b", "c"):
            got = self.breaker.get_content(name)
            self.driver.pending(f"get_content {name}").errback(StorageUnavailable("no answer"))
            self.failureResultOf(got, StorageUnavailable)
        self.assertEqual(self.breaker.state, OPEN)
        self.breaker.stop()

    def test_the_caller_giving_up_cancels_the_call(self) -> None:
        got = self.breaker.get_content("a")
        got.cancel()
        self.failureResultOf(got, CancelledError)
        self.assertEqual(self.driver.cancelled, ["get_content a"])
        self.assertEqual(self.breaker.state, CLOSED)
        self.assertFalse(self.clock.getDelayedCalls())

    def test_answered_at_once(self) -> None:
        self.driver.get_content = lambda path: succeed(b"cached")  # type: ignore[method-assign]
        self.assertEqual(self.successResultOf(self.breaker.get_content("a")), b"cached")
        self.assertFalse(self.clock.getDelayedCalls())
