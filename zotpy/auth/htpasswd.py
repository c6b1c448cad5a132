"""An htpasswd file of bcrypt entries (``user:$2y$...``), zot's ``http.auth.htpasswd``.

The file is re-read when it changes (checked at most once a second, by its size, modification time
and inode), so an operator adds a user without a restart. A file that changes into something that
is not an htpasswd file (a half-written copy, a wrong file) is logged and the last good contents stay
in force: locking every user out because of a bad edit would be worse than serving the old list a
little longer.

bcrypt runs in a thread pool, never on the reactor. A user name that is not in the file is checked
against a fixed dummy hash of the same cost, so the time of the answer does not tell whether the
name exists.
"""

from __future__ import annotations

import os
import re
from typing import Callable

import bcrypt
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from zotpy.auth.identity import AuthenticationFailed, Identity, IPasswordChecker

log = Logger()

_BCRYPT = re.compile(rb"\$2[abxy]?\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{53}\Z")
RECHECK_SECONDS = 1.0


class HtpasswdError(Exception):
    """The file cannot be read or does not hold bcrypt htpasswd entries."""


def parse_htpasswd(data: bytes) -> dict[str, bytes]:
    """User name -> bcrypt hash. Blank lines and ``#`` comments are skipped; any other line must be
    ``name:bcrypt-hash`` (zot accepts bcrypt only), else the whole file is refused, naming the line."""
    entries: dict[str, bytes] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        name, colon, hashed = line.partition(b":")
        if not colon or not name or _BCRYPT.match(hashed) is None:
            raise HtpasswdError(f"line {number} is not 'user:bcrypt-hash'")
        try:
            entries[name.decode("utf-8")] = hashed
        except UnicodeDecodeError:
            raise HtpasswdError(f"line {number}: the user name is not UTF-8") from None
    return entries


def read_htpasswd(path: str) -> dict[str, bytes]:
    try:
        with open(path, "rb") as stream:
            return parse_htpasswd(stream.read())
    except OSError as error:
        raise HtpasswdError(f"cannot read {path!r}: {error.strerror}") from None


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


@implementer(IPasswordChecker)
class HtpasswdChecker:
    """Checks passwords against the file at ``path``; ``on_change`` runs after each reload (the
    credential cache is emptied then, so a removed user or changed password takes effect at once)."""

    def __init__(
        self,
        path: str,
        reactor: IReactorTime | IReactorThreads,
        pool: ThreadPool,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self.description = f"htpasswd {path}"
        self.reactor = reactor
        self.pool = pool
        self.on_change = on_change
        self.entries = read_htpasswd(path)  # at start a bad file is a config error (raised)
        self._signature = _signature(path)
        self._checked_at = reactor.seconds()  # type: ignore[union-attr]
        self._dummy: bytes | None = None  # made in the pool on first need: bcrypt never runs on the reactor

    def _dummy_hash(self) -> bytes:
        """A hash of the file's usual cost, checked for unknown users (runs in the pool)."""
        dummy = self._dummy
        if dummy is None:
            dummy = self._dummy = bcrypt.hashpw(b"not a password", bcrypt.gensalt(self._typical_cost()))
        return dummy

    def _typical_cost(self) -> int:
        for hashed in self.entries.values():
            match = _BCRYPT.match(hashed)
            if match is not None:
                return max(4, min(int(match.group("cost")), 14))
        return 10

    def refresh(self) -> None:
        """Re-read the file if it changed (at most once per :data:`RECHECK_SECONDS`)."""
        now = self.reactor.seconds()  # type: ignore[union-attr]
        if now - self._checked_at < RECHECK_SECONDS:
            return
        self._checked_at = now
        signature = _signature(self.path)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            entries = read_htpasswd(self.path)
        except HtpasswdError as error:
            log.error(
                "htpasswd file changed but cannot be used ({reason}); keeping the {count} users read before",
                reason=str(error), count=len(self.entries),
            )
            return
        self.entries = entries
        self._dummy = None
        log.info("htpasswd file {path} re-read: {count} users", path=self.path, count=len(entries))
        self.on_change()

    def check(self, username: str, password: str) -> Deferred[Identity]:
        self.refresh()
        hashed = self.entries.get(username)
        known = hashed is not None
        secret = password.encode("utf-8")

        def verify() -> bool:
            return bcrypt.checkpw(secret, hashed if hashed is not None else self._dummy_hash())

        def decide(matched: bool) -> Identity:
            if matched and known:
                return Identity(username)
            raise AuthenticationFailed("wrong credentials")

        return deferToThreadPool(self.reactor, self.pool, verify).addCallback(decide)  # type: ignore[arg-type]


