"""Per-key mutual exclusion for read-modify-write sequences: within a process on the reactor
thread (:class:`KeyedLocks`), and across the worker processes of one replica (:class:`HostLocks`)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.task import deferLater

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


#: Lock files per namespace: keys are hashed onto these, so the directory stays small however many
#: repositories and upload sessions there are. Two keys on one stripe only wait for each other.
STRIPES = 4096
#: Seconds between tries while another process holds a stripe: first, and at most.
FIRST_RETRY = 0.001
LONGEST_RETRY = 0.05


class HostLocks:
    """:class:`KeyedLocks` that also hold across the processes sharing ``directory``: the worker
    processes of one replica (``twistd zotpy --workers``), which serve one repository's writes in
    whichever of them accepted the request.

    After the in-process lock (so one request per process waits on a key), an exclusive ``flock``
    on a file of ``directory`` chosen by the key's hash. It is taken without blocking, and retried
    on the reactor's clock while another process holds it (a blocking ``flock`` in the thread pool
    could fill the pools of two processes with waits on each other). The kernel drops a lock when
    its process dies, so a crashed worker never leaves a repository locked. Lock files are never
    removed: removing one that another process has open would let two processes lock "it" at once.
    """

    def __init__(self, directory: str, namespace: str, clock: Any) -> None:
        self.directory = directory
        self.namespace = namespace
        self.clock = clock
        self._local = KeyedLocks()

    def _path(self, key: str) -> str:
        stripe = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % STRIPES
        return os.path.join(self.directory, f"{self.namespace}-{stripe:04d}.lock")

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        async def across_processes() -> T:
            fd = await self._acquire(self._path(key))
            try:
                return await work()
            finally:
                os.close(fd)  # releases the flock

        return await self._local.run(key, across_processes)

    async def _acquire(self, path: str) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        wait = FIRST_RETRY
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except OSError as error:
                    if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                await deferLater(self.clock, wait, lambda: None)
                wait = min(wait * 2, LONGEST_RETRY)
        except BaseException:
            os.close(fd)
            raise

    def __len__(self) -> int:
        return len(self._local)


Locks = KeyedLocks | HostLocks


def locks_for(directory: str | None, namespace: str, clock: Any) -> Locks:
    """Host-wide locks in ``directory`` when the replica runs several workers, else in-process ones."""
    return KeyedLocks() if directory is None else HostLocks(directory, namespace, clock)


def deferred(coroutine: Awaitable[T]) -> Deferred[T]:
    return Deferred.fromCoroutine(coroutine)  # type: ignore[arg-type]
