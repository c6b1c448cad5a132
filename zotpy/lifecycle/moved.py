"""Per-instance storage after a resize: the previous owner drops a repository its new owner holds.

A repository whose owner changed stays on the previous owner's disk once the new owner has copied
it (:mod:`zotpy.sync.moves`). With ``cluster.rebalance.dropMoved`` the previous owner's garbage
collection removes that copy, and only when all of this holds:

- the members agree (no member still writes by an older list) and ``gcDelay`` has passed since this
  replica's member list last changed (or since it started), and nothing in the local copy's
  ``index.json`` was written within ``gcDelay`` (a late write is left to settle first);
- the owner, asked over the member connections with ``X-Zotpy-Scope: local`` (its own storage, not
  a forward back here), lists every tag this copy has, and a HEAD of each names the same digest.

An owner that cannot be asked, or that answers anything else, keeps the copy here (logged): dropping
is only ever the result of a positive answer. Untagged manifests are not compared: garbage collection
would remove them on the owner too.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import attrs
from treq.client import HTTPClient
from twisted.logger import Logger

from zotpy.cluster.membership import SCOPE_HEADER, Membership
from zotpy.lifecycle.listing import blob_digest, stored_blobs
from zotpy.oci.digest import Digest
from zotpy.storage.driver import PathNotFound
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.layout import RepositoryIndex, index_path
from zotpy.sync.client import UpstreamClient, UpstreamNotFound
from zotpy.sync.settings import RegistrySettings

log = Logger()

#: What a repository's directory holds of its own (not a nested repository's): removed one by one.
_OWN_ENTRIES = ("index.json", "oci-layout", "blobs", ".uploads")

#: (owner, repository, tags) -> tag -> the digest the owner names for it (None: it has no such tag).
OwnerTags = Callable[[str, str, list[str]], Awaitable[dict[str, Digest | None]]]


def owner_agrees(local: dict[str, Digest], asked: dict[str, Digest | None]) -> bool:
    """Whether the owner's answer covers every local tag with the same digest (the decision)."""
    return bool(local) and all(asked.get(tag) == digest for tag, digest in local.items())


@attrs.define(eq=False)
class MovedDropper:
    """Drops, during a GC pass, the repositories this replica no longer owns and whose owner has them."""

    membership: Membership
    store: ImageStore
    clock: Any
    gc_delay: float
    ask: OwnerTags
    changed_at: float = attrs.field(init=False)
    dropped: int = 0

    def __attrs_post_init__(self) -> None:
        self.changed_at = self.clock.seconds()
        self.membership.listeners.append(lambda membership: setattr(self, "changed_at", self.clock.seconds()))

    async def pass_over(self, repositories: list[str]) -> list[str]:
        """Drop each of ``repositories`` that may go; the names dropped."""
        if not self.membership.settled or self.clock.seconds() - self.changed_at < self.gc_delay:
            return []
        gone = []
        for repository in repositories:
            if self.membership.owns(repository):
                continue
            try:
                if await self.consider(repository):
                    gone.append(repository)
            except Exception as error:  # one repository's trouble must not stop the pass
                log.warn("gc {repository}: not dropping the moved copy: {error}",
                         repository=repository, error=str(error)[:300])
        return gone

    async def consider(self, repository: str) -> bool:
        owner = self.membership.view.owner(repository)
        index, written = await self._local(repository)
        if index is None or self.clock.seconds() - written < self.gc_delay:
            return False
        local = {tag: entry.digest for entry in index.entries if (tag := entry.tag)}
        try:
            asked = await self.ask(owner, repository, sorted(local))
        except Exception as error:
            log.warn("gc {repository}: keeping the moved copy: its owner {owner} cannot be asked: {error}",
                     repository=repository, owner=owner, error=str(error)[:300])
            return False
        if not owner_agrees(local, asked):
            differing = sorted(tag for tag, digest in local.items() if asked.get(tag) != digest)
            log.warn("gc {repository}: keeping the moved copy: its owner {owner} lacks or differs on tags {tags}",
                     repository=repository, owner=owner, tags=differing[:10])
            return False
        return await self.store.locked(repository, lambda: self._drop(repository, owner, index))

    async def _local(self, repository: str) -> tuple[RepositoryIndex | None, float]:
        path = index_path(repository)
        try:
            info = await self.store.driver.stat(path)
            index = RepositoryIndex.parse(await self.store.driver.get_content(path), repository)
        except PathNotFound:
            return None, 0.0
        if info.modified is None:
            return None, 0.0  # an age the driver does not give: never dropped, as GC does
        return index, info.modified

    async def _drop(self, repository: str, owner: str, checked: RepositoryIndex) -> bool:
        driver = self.store.driver
        try:
            now = RepositoryIndex.parse(await driver.get_content(index_path(repository)), repository)
        except PathNotFound:
            return False
        if now.serialize() != checked.serialize():
            return False  # written since it was checked: the next pass looks again
        locator = self.store.blobs
        if locator is not None:  # dedupe must not link a new push to a blob about to go
            for name in await stored_blobs(driver, repository):
                digest = blob_digest(name)
                if digest is not None:
                    locator.forget(repository, digest)
        for entry in _OWN_ENTRIES:  # index.json first: from then on it is no repository
            try:
                await driver.delete(f"{repository}/{entry}")
            except PathNotFound:
                pass
        self.dropped += 1
        log.info("gc {repository}: dropped the moved copy: its owner {owner} holds all {count} tags with the same digests",
                 repository=repository, owner=owner, count=len([e for e in checked.entries if e.tag]))
        return True


def owner_client(http: HTTPClient, clock: Any, scheme: str) -> OwnerTags:
    """Asks a member for its own copy's tags and their digests (``X-Zotpy-Scope: local``)."""

    async def ask(owner: str, repository: str, tags: list[str]) -> dict[str, Digest | None]:
        client = UpstreamClient(
            RegistrySettings(urls=(f"{scheme}://{owner}",), max_retries=1, retry_delay=0.5),
            http, clock, user_agent="zotpy-gc", headers={SCOPE_HEADER.decode(): "local"},
        )
        try:
            there = set(await client.tags(repository))
        except UpstreamNotFound:
            return {}
        answer: dict[str, Digest | None] = {}
        for tag in tags:
            answer[tag] = await client.manifest_digest(repository, tag) if tag in there else None
        return answer

    return ask

