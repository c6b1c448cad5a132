"""Concurrent requests for the same work share one run of it (txacme's shape).

:meth:`Coalescer.run` starts the work for a key unless it is already running, and gives every caller
a Deferred of its own: cancelling it (a client that hung up) detaches that caller only, while the
work goes on for the others and for the store. Results and failures reach every waiter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.python.failure import Failure

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self) -> None:
        self._waiters: dict[Hashable, list[Deferred[T]]] = {}
        self._work: dict[Hashable, Deferred[None]] = {}

    def running(self, key: Hashable) -> bool:
        return key in self._waiters

    def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        waiters = self._waiters.get(key)
        started = waiters is None
        if waiters is None:
            waiters = self._waiters[key] = []

        def detach(mine: Deferred[T]) -> None:
            if mine in waiters:
                waiters.remove(mine)

        mine: Deferred[T] = Deferred(detach)
        waiters.append(mine)
        if started:
            shared: Deferred[Any] = ensureDeferred(work())  # type: ignore[arg-type]
            shared.addBoth(self._finished, key)
            if key in self._waiters:  # still running
                self._work[key] = shared
        return mine

    def _finished(self, result: T | Failure, key: Hashable) -> None:
        waiters = self._waiters.pop(key, [])
        self._work.pop(key, None)
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
        return None  # a failure nobody waits for any more is dropped: the work logs its own

    def cancel_all(self) -> Deferred[list[Any]]:
        """Stop every running piece of work (on shutdown); fires when they have all ended."""
        running = list(self._work.values())
        for work in running:
            work.cancel()
        return DeferredList(running, consumeErrors=True)
