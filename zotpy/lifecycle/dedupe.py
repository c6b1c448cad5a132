"""Dedupe: a blob stored in one repository is not stored again for another.

zot keeps a cache database (boltdb, DynamoDB, Redis) from digest to the blob's first path; zotpy
keeps that map in memory, learnt from the layout in the background when the daemon starts
(:mod:`zotpy.lifecycle.warmup`), then from what this replica stores, what its clients check (HEAD)
and what its garbage collection lists. The map is a hint: the store checks the source exists
before it links from it, and a miss only means the blob is uploaded (or written) as without dedupe.

- A client's check for a blob its repository lacks (HEAD) is answered by linking the blob from
  the repository that has it, so the client skips the upload, as after a cross-repository mount.
- On local disk a blob that arrives anyway (a client that does not check) is replaced, once
  verified, by a hard link to the stored copy: one inode whatever the number of repositories.
  Collecting a repository unlinks its path only; the other links keep the bytes.
- On S3 the link is a server-side copy: the upload is skipped (no bytes through zotpy) but each
  repository's object is its own. zot dedupes S3 by storing the blob once and leaving empty
  placeholder objects in the other repositories, resolved through its cache database; zotpy does
  not (it keeps the layout readable without that database).

Only the owner of a repository writes into it: :meth:`source` answers None for a repository this
replica does not own, so a read answered on another replica never links.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import attrs
from zope.interface import implementer

from zotpy.oci.digest import Digest
from zotpy.storage.events import IBlobLocator

#: Digests remembered (about 200 bytes each): past it the least recently seen are forgotten.
DEFAULT_CAPACITY = 1_000_000


@implementer(IBlobLocator)
@attrs.define(eq=False)
class BlobLocator:
    owns: Callable[[str], bool] = lambda repo: True
    link_duplicates: bool = True
    capacity: int = DEFAULT_CAPACITY
    _where: OrderedDict[str, str] = attrs.field(factory=OrderedDict, init=False)

    def source(self, repo: str, digest: Digest) -> str | None:
        if not self.owns(repo):
            return None
        where = self._where.get(str(digest))
        return None if where == repo else where

    def stored(self, repo: str, digest: Digest) -> None:
        key = str(digest)
        self._where.setdefault(key, repo)  # the first copy seen stays the source: links pile on one inode
        self._where.move_to_end(key)
        while len(self._where) > self.capacity:
            self._where.popitem(last=False)

    def forget(self, repo: str, digest: Digest) -> None:
        if self._where.get(str(digest)) == repo:
            del self._where[str(digest)]

    def __len__(self) -> int:
        return len(self._where)
