"""Who is using a local storage root: the daemons serving it, or one offline ``zotpy gc``.

Garbage collection relies on the repository's write lock, which lives in the daemon's memory: an
offline ``zotpy gc`` beside a running daemon could remove a blob a push has just checked and is
about to reference. So every daemon serving a root holds a *shared* ``flock`` on
``<root>/.zotpy.lock`` while it runs (several may: replicas on one shared disk), and ``zotpy gc``
takes it *exclusive* without waiting: it fails at once while any daemon serves the root, and a
daemon started during an offline pass refuses to start until the pass is over. The kernel drops the
lock with the process, so a daemon killed with SIGKILL leaves nothing stale behind. (zot's root
holds its own ``cache.db``, locked the same way by boltdb.)
"""

from __future__ import annotations

import fcntl
import os

LOCK_NAME = ".zotpy.lock"


class RootBusy(Exception):
    """Another process holds the root in a way this one cannot share; the message says who."""


class RootLock:
    """A held lock on one root; :meth:`release` (or the process ending) lets it go."""

    def __init__(self, root: str, exclusive: bool) -> None:
        self.path = os.path.join(root, LOCK_NAME)
        self.exclusive = exclusive
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holders = lock_holders(self._fd)
            self.release()
            raise RootBusy(self._refusal(root, holders)) from None

    def _refusal(self, root: str, holders: list[int]) -> str:
        who = f" (pid {', '.join(map(str, holders))})" if holders else ""
        if self.exclusive:
            return (
                f"a zotpy daemon{who} is serving {root}: garbage collection there is the daemon's "
                "(storage.gc, gcInterval); stop it first, or use --dry-run to see what would go"
            )
        return f"an offline zotpy gc{who} is collecting {root}: start again once it is done"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def lock_holders(fd: int) -> list[int]:
    """The processes holding a flock on ``fd``'s file, from Linux's /proc/locks (empty elsewhere,
    or when they run in another pid namespace)."""
    stat = os.fstat(fd)
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    holders = []
    try:
        with open("/proc/locks") as stream:
            for line in stream:
                fields = line.split()
                if "->" in fields:  # a waiter, not a holder
                    continue
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    holders.append(int(fields[4]))
    except (OSError, ValueError):
        return []
    return sorted(set(holders) - {os.getpid()})
