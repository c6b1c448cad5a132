"""Per-key mutual exclusion for read-modify-write sequences on the reactor thread."""

from __future__ import annotations

from typing import Awaitable, Callable, TypeVar

from twisted.internet.defer import Deferred, DeferredLock

T = TypeVar("T")


class KeyedLocks:
    """One ``DeferredLock`` per key, created on first use and dropped when idle.

    Two pushes to one repository must not both read ``index.json``, each add their
    tag and write it back (the second write would lose the first tag): updates of
    one repository run one at a time, while other repositories proceed.
    """

    def __init__(self) -> None:
        self._locks: dict[str, DeferredLock] = {}
        self._users: dict[str, int] = {}

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        lock = self._locks.setdefault(key, DeferredLock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await lock.acquire()
            try:
                return await work()
            finally:
                lock.release()
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


def deferred(coroutine: Awaitable[T]) -> Deferred[T]:
    return Deferred.fromCoroutine(coroutine)  # type: ignore[arg-type]
