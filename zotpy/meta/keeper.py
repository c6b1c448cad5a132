"""The metadata keeper: applies the store's events to each repository's metadata and stores it.

Only a repository's owner keeps its metadata (``owns``), so two replicas never write one file: a
replica that answers a pull for a repository it does not own (a local read on shared storage)
hands it to ``elsewhere``, which reports it to the owner in a batch. Pushes and deletions are
queued and pulls are counted in memory; :meth:`flush` (every ``interval`` seconds while running,
and at stop) writes each changed repository's document once, atomically, beside
its ``index.json``: never a storage write per pull. A replica that becomes owner (restart,
resize) reads that file, or rebuilds it from the layout when it is missing or unreadable.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any, Callable

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from zotpy.meta.model import ImageMeta, RepositoryMeta
from zotpy.oci.digest import Digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import Manifest, parse_manifest
from zotpy.storage.driver import IStorageDriver, PathNotFound, StorageError
from zotpy.storage.events import IStoreEvents
from zotpy.storage.layout import RepositoryIndex, blob_path, index_path
from zotpy.storage.locks import KeyedLocks, Locks

log = Logger()

#: Beside index.json; a name no repository path component can take (they never start with a dot).
META_FILE = ".zotpy-meta.json"

#: Repositories whose last read :meth:`MetaKeeper.recent` keeps.
RECENT_CAPACITY = 20_000

#: Seconds between flushes: how many pulls a crash can lose, and how stale a reader's counts are.
DEFAULT_FLUSH_INTERVAL = 5.0


def meta_path(repo: str) -> str:
    return f"{repo}/{META_FILE}"


Change = Callable[[RepositoryMeta], None]


@implementer(IStoreEvents)
@attrs.define(eq=False)
class MetaKeeper:
    driver: IStorageDriver
    clock: Any  # IReactorTime
    owns: Callable[[str], bool] = lambda repo: True
    #: told of each pull of a repository another member owns (a read answered here on shared
    #: storage): the cluster sends those counts to the owner in batches (:mod:`zotpy.cluster.pulls`)
    elsewhere: Callable[[str, Digest], None] | None = None
    _changes: dict[str, list[Change]] = attrs.field(factory=lambda: defaultdict(list), init=False)
    _pulls: dict[tuple[str, str], tuple[int, float]] = attrs.field(factory=dict, init=False)
    #: In-process locks, or host-wide ones when the replica runs several worker processes: each
    #: worker counts its own pulls and flushes them, reading the stored document under the lock.
    locks: Locks = attrs.field(factory=KeyedLocks, kw_only=True)
    #: Events seen per repository: a copy read before the latest event is stale (:meth:`recent`).
    _events: dict[str, int] = attrs.field(factory=lambda: defaultdict(int), init=False)
    _recent: OrderedDict[str, tuple[RepositoryMeta, float, int]] = attrs.field(factory=OrderedDict, init=False)

    # -- IStoreEvents: called on the reactor thread, never blocking -------------------------------------

    def pushed(self, repo: str, digest: Digest, size: int, tags: tuple[str, ...], manifest: Manifest) -> None:
        if self.owns(repo):
            image = image_meta(digest, size, tags, manifest, self.clock.seconds())
            self._changes[repo].append(lambda meta: meta.pushed(image))
            self._events[repo] += 1

    def pulled(self, repo: str, digest: Digest) -> None:
        if self.owns(repo):
            self.count_pulls(repo, str(digest), 1, self.clock.seconds())
        elif self.elsewhere is not None:
            self.elsewhere(repo, digest)

    def count_pulls(self, repo: str, digest: str, count: int, when: float) -> bool:
        """Count ``count`` pulls of ``repo@digest``, the last at ``when``: this member's own, or
        those another member answered and reported. False (nothing counted) for a repository this
        member does not own."""
        if not self.owns(repo):
            return False
        before, last = self._pulls.get((repo, digest), (0, 0.0))
        self._pulls[(repo, digest)] = (before + count, max(last, when))
        self._events[repo] += 1
        return True

    def untagged(self, repo: str, tag: str) -> None:
        if self.owns(repo):
            self._changes[repo].append(lambda meta: meta.untag(tag))
            self._events[repo] += 1

    def deleted(self, repo: str, digests: tuple[Digest, ...]) -> None:
        if self.owns(repo):
            names = [str(digest) for digest in digests]
            self._changes[repo].append(lambda meta: meta.remove(names))
            self._events[repo] += 1

    # -- reading ------------------------------------------------------------------------------------------

    async def get(self, repo: str) -> RepositoryMeta:
        """``repo``'s metadata with every event so far applied (written first if any was pending)."""
        return await self.locks.run(repo, lambda: self._apply(repo))

    async def recent(self, repo: str, max_age: float) -> RepositoryMeta:
        """``repo``'s metadata as read at most ``max_age`` seconds ago, if no event for it came
        since; else :meth:`get`'s. For listings that read every repository on each request (the
        search API), which would otherwise read two files per repository per request. Events this
        member sees are never missed; what a kept copy can miss, for at most ``max_age``, is a
        change made behind the keeper's back (an offline ``zotpy gc``, zot, another worker
        process of this replica), which :meth:`get` heals. The copy is shared: callers must not change it."""
        kept = self._recent.get(repo)
        now = self.clock.seconds()
        events = self._events.get(repo, 0)
        if kept is not None and kept[2] == events and now - kept[1] <= max_age:
            self._recent.move_to_end(repo)
            return kept[0]
        meta = await self.get(repo)
        self._recent[repo] = (meta, now, events)
        self._recent.move_to_end(repo)
        while len(self._recent) > RECENT_CAPACITY:
            self._recent.popitem(last=False)
        return meta

    def seen(self) -> set[str]:
        """Every repository this keeper has seen an event for since it started (it owns them)."""
        return set(self._events)

    # -- writing ------------------------------------------------------------------------------------------

    def pending(self) -> set[str]:
        return set(self._changes) | {repo for repo, _ in self._pulls}

    async def flush(self) -> None:
        """Store every repository with pending events; one that fails keeps them for the next flush."""
        for repo in sorted(self.pending()):
            try:
                await self.locks.run(repo, lambda: self._apply(repo))
            except (StorageError, RegistryError) as error:
                log.warn("metadata of {repo} not stored yet: {error}", repo=repo, error=str(error))

    async def _apply(self, repo: str) -> RepositoryMeta:
        changes = self._changes.pop(repo, [])
        pulls = {digest: value for (name, digest), value in self._pulls.items() if name == repo}
        for digest in pulls:
            del self._pulls[(repo, digest)]
        try:
            meta = await self._load(repo)
            if not changes and not pulls:
                return meta
            for change in changes:
                change(meta)
            for digest, (count, when) in pulls.items():
                meta.pulled(digest, when, count)
            await self.driver.put_content(meta_path(repo), meta.serialize())
        except BaseException:
            self._changes[repo][:0] = changes  # retried at the next flush, in order
            for digest, (count, when) in pulls.items():
                more, later = self._pulls.get((repo, digest), (0, when))
                self._pulls[(repo, digest)] = (count + more, max(when, later))
            raise
        return meta

    async def _load(self, repo: str) -> RepositoryMeta:
        try:
            data = await self.driver.get_content(meta_path(repo))
        except PathNotFound:
            return await self.rebuild(repo)
        try:
            stored = RepositoryMeta.parse(data, repo)
        except ValueError as error:
            log.warn("metadata of {repo} unreadable ({error}): rebuilt from the layout", repo=repo, error=str(error))
            return await self.rebuild(repo)
        return await self.rebuild(repo, stored)

    async def rebuild(self, repo: str, known: RepositoryMeta | None = None) -> RepositoryMeta:
        """Metadata for what ``index.json`` lists now: what ``known`` says of a manifest is kept
        (its push and pull history), with the index's tags; a manifest it does not know (written
        by another tool, or before this file existed) gets its blob's write time as push time
        (now where the driver does not say) and no pull history. So a file left stale by an
        offline ``zotpy gc`` or by zot heals on the next read."""
        meta = RepositoryMeta(repo)
        try:
            index = RepositoryIndex.parse(await self.driver.get_content(index_path(repo)), repo)
        except PathNotFound:
            return meta
        tags: dict[Digest, list[str]] = defaultdict(list)
        for entry in index.entries:
            if entry.tag is not None:
                tags[entry.digest].append(entry.tag)
        for entry in index.manifests():
            image = known.images.get(str(entry.digest)) if known is not None else None
            if image is not None:
                image.tags = sorted(set(tags[entry.digest]))
                meta.images[image.digest] = image
                continue
            try:
                body = await self.driver.get_content(blob_path(repo, entry.digest))
                info = await self.driver.stat(blob_path(repo, entry.digest))
                manifest = parse_manifest(body, entry.media_type)
            except (PathNotFound, RegistryError):
                continue  # listed but missing or unreadable: nothing to describe
            when = info.modified if info.modified is not None else self.clock.seconds()
            meta.images[str(entry.digest)] = image_meta(entry.digest, len(body), tuple(tags[entry.digest]), manifest, when)
        return meta


def image_meta(digest: Digest, size: int, tags: tuple[str, ...], manifest: Manifest, when: float) -> ImageMeta:
    parts = {str(d.digest): d.size for d in manifest.required_blobs() + manifest.required_manifests()}
    return ImageMeta(
        digest=str(digest),
        media_type=manifest.media_type,
        size=size + sum(parts.values()),
        pushed_at=when,
        tags=sorted(set(tags)),
        subject=None if manifest.subject is None else str(manifest.subject.digest),
        parts=parts,
    )


class MetaFlushService(Service):
    """Flushes the keeper every ``interval`` seconds while the registry runs. The last flush, at
    stop, is the storage pool's to run (it must happen before the pool stops)."""

    def __init__(self, keeper: MetaKeeper, interval: float, clock: Any) -> None:
        self.keeper = keeper
        self.loop = LoopingCall(lambda: Deferred.fromCoroutine(keeper.flush()))
        self.loop.clock = clock
        self.interval = interval

    def startService(self) -> None:
        super().startService()
        self.loop.start(self.interval, now=False).addErrback(
            lambda failure: log.failure("metadata flush loop stopped", failure)
        )

    def stopService(self) -> None:
        super().stopService()
        if self.loop.running:
            self.loop.stop()
