"""Which member owns a repository: zot's SipHash-2-4 ring.

Ownership must agree with zot's bit for bit, so that zot and zotpy replicas (and
operators' tools) route a repository to the same member: SipHash-2-4 keyed with the
16 ``hashKey`` bytes, over the repository name exactly as it appears in the URL,
read as an unsigned 64-bit integer, modulo the number of members. Plain modulo
means resizing the cluster moves almost every repository; that is zot's choice too.
"""

from __future__ import annotations

import attrs
from siphash24 import siphash24


def repository_hash(name: str, hash_key: bytes) -> int:
    """The unsigned SipHash-2-4 of ``name`` (``siphash24``'s ``intdigest`` is signed: use the bytes)."""
    return int.from_bytes(siphash24(name.encode(), key=hash_key).digest(), "little")


@attrs.frozen
class Ring:
    members: tuple[str, ...]
    hash_key: bytes = attrs.field()

    @hash_key.validator
    def _sixteen_bytes(self, attribute: object, value: bytes) -> None:
        if len(value) != 16:
            raise ValueError("hashKey for scale out cluster must have 16 characters")

    def owner_index(self, repository: str) -> int:
        return repository_hash(repository, self.hash_key) % len(self.members)

    def owner(self, repository: str) -> str:
        return self.members[self.owner_index(repository)]
