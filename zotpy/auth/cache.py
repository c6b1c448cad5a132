"""Verified credentials, so bcrypt and LDAP are paid once per client and not once per request.

Keyed by the SHA-256 of the whole ``Authorization`` value (the header itself is never kept, so a
memory dump does not hand out passwords); entries expire after a short time, so a password changed
at the source stops working soon even when nobody empties the cache, and the number of entries is
bounded (least recently used out first), so a flood of distinct headers cannot grow memory.
Failures are remembered too: repeating a wrong header costs a dictionary look-up, not a bcrypt.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import attrs
from twisted.internet.interfaces import IReactorTime

from zotpy.auth.identity import Identity

DEFAULT_TTL_SECONDS = 60.0
DEFAULT_CAPACITY = 4096


@attrs.frozen
class Verdict:
    """What checking one header gave: the identity, or None when the credentials were wrong."""

    identity: Identity | None
    expires: float


class CredentialCache:
    def __init__(
        self, clock: IReactorTime, ttl: float = DEFAULT_TTL_SECONDS, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.capacity = capacity
        self._entries: OrderedDict[bytes, Verdict] = OrderedDict()

    @staticmethod
    def key(header: bytes) -> bytes:
        return hashlib.sha256(header).digest()

    def get(self, key: bytes) -> Verdict | None:
        verdict = self._entries.get(key)
        if verdict is None:
            return None
        if verdict.expires <= self.clock.seconds():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return verdict

    def put(self, key: bytes, identity: Identity | None) -> None:
        """Remember ``identity`` (None: wrong credentials), no longer than the credentials are valid."""
        expires = self.clock.seconds() + self.ttl
        if identity is not None and identity.expires is not None:
            expires = min(expires, identity.expires)
        self._entries[key] = Verdict(identity, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
