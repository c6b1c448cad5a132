"""Garbage collection of one repository, on its owner, under its write lock.

One pass, in zot's order:

1. manifests: a tagged manifest is kept, with every manifest an index it keeps lists and every
   referrer whose subject it keeps. An untagged manifest goes once older than ``retention.delay``
   (a multi-arch push uploads its children untagged, before the index that lists them); so does a
   referrer whose subject is gone (``deleteReferrers``), tagged or not. Retention policies decide
   per repository whether either rule applies (without policies both do, as in zot).
2. blobs no kept manifest references, once older than ``gcDelay`` (a push uploads its blobs before
   the manifest that references them, so a young blob is a push in progress);
3. upload sessions untouched for ``gcDelay``; ``.tmp-*`` leftovers of interrupted writes as old,
   and never younger than the API's idle timeout (a stalled client's write is still in progress
   until its connection is closed as idle, however low ``gcDelay`` is set);
   on S3, multipart uploads of the repository initiated before that (an interrupted write's parts).

Ages come from the driver's listing (:attr:`FileInfo.modified`); an object whose age the driver
does not give is never collected. The whole pass holds the repository's write lock, so no push
can check a blob and then lose it; the work between two driver calls is small, and the pass gives
the reactor a turn every :data:`BATCH` objects, so other repositories' requests keep flowing.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import attrs
from twisted.internet.task import deferLater
from twisted.logger import Logger

from zotpy.api.site import IDLE_TIMEOUT_SECONDS
from zotpy.lifecycle.listing import TEMPORARY_PREFIX, blob_digest, stored_blobs
from zotpy.lifecycle.retention import retained_tags, retained_untagged
from zotpy.lifecycle.settings import LifecycleSettings
from zotpy.meta.keeper import MetaKeeper
from zotpy.meta.model import RepositoryMeta
from zotpy.oci.digest import Digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import Manifest, parse_manifest
from zotpy.storage.driver import FileInfo, IStorageDriver, PathNotFound
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.layout import RepositoryIndex, index_path

log = Logger()

#: Objects handled between two turns given back to the reactor.
BATCH = 256

@attrs.define
class Removed:
    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size


@attrs.define
class GCReport:
    """What one pass removed from one repository (or would have, with ``dry_run``)."""

    repo: str
    dry_run: bool = False
    manifests: list[str] = attrs.field(factory=list)
    #: Tags removed by a retention policy's ``keepTags``.
    tags: list[str] = attrs.field(factory=list)
    #: retention.dryRun: tags and manifests are reported, index.json is left as it was.
    retention_dry_run: bool = False
    blobs: Removed = attrs.field(factory=Removed)
    uploads: Removed = attrs.field(factory=Removed)
    temporary: Removed = attrs.field(factory=Removed)
    #: S3 multipart uploads aborted.
    multipart: int = 0
    #: Bytes under ``blobs/`` after the pass (what the repository occupies).
    stored_bytes: int = 0

    @property
    def bytes_freed(self) -> int:
        return self.blobs.bytes + self.uploads.bytes + self.temporary.bytes

    @property
    def removed_anything(self) -> bool:
        return bool(self.manifests or self.tags or self.blobs.count or self.uploads.count or self.temporary.count or self.multipart)

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        retention = "would remove" if self.dry_run or self.retention_dry_run else verb
        return (
            f"retention {retention} {len(self.tags)} tags and {len(self.manifests)} manifests; "
            f"{verb} {self.blobs.count} blobs, {self.uploads.count} upload "
            f"sessions, {self.temporary.count} temporary files, {self.multipart} multipart uploads: "
            f"{self.bytes_freed} bytes"
        )


def _yield_to_reactor() -> Awaitable[None]:
    from twisted.internet import reactor

    return deferLater(reactor, 0, lambda: None)


@attrs.define(eq=False)
class Collector:
    """Collects one repository at a time; ``clock`` gives the time ages are measured against."""

    store: ImageStore
    settings: LifecycleSettings
    clock: Any  # IReactorTime
    dry_run: bool = False
    #: Where retention reads push and pull times: the daemon's live keeper (pulls not flushed yet
    #: included); by default one reading the stored metadata, or rebuilding it from the layout.
    metadata: MetaKeeper | None = None
    pause: Callable[[], Awaitable[None]] = _yield_to_reactor

    async def _metadata(self, repo: str) -> RepositoryMeta:
        keeper = self.metadata or MetaKeeper(self.driver, self.clock)
        return await keeper.get(repo)

    @property
    def driver(self) -> IStorageDriver:
        return self.store.driver

    async def collect(self, repo: str) -> GCReport:
        report = GCReport(repo, self.dry_run)
        await self.store.locked(repo, lambda: self._collect(repo, report))
        return report

    async def _collect(self, repo: str, report: GCReport) -> None:
        try:
            index = RepositoryIndex.parse(await self.driver.get_content(index_path(repo)), repo)
        except PathNotFound:
            return  # removed since it was listed: nothing to collect
        now = self.clock.seconds()
        blobs = await stored_blobs(self.driver, repo)
        parsed = await self._manifests(repo, index)
        stored = RepositoryIndex(list(index.entries), dict(index.extra))
        policy = self.settings.policy_for(repo)
        protected: set[str] = set()
        if policy is not None and (policy.keep_tags or policy.keep_untagged is not None):
            meta = await self._metadata(repo)
            tags = index.tags()
            kept_tags = retained_tags(self.settings, repo, meta, tags, now)
            report.tags = [tag for tag in tags if tag not in kept_tags]
            for tag in report.tags:
                index.remove_tag(tag)
            untagged = {str(e.digest) for e in index.entries if not any(o.tag for o in index.entries if o.digest == e.digest)}
            protected = retained_untagged(self.settings, repo, meta, untagged, now)
        removed = self._removed_manifests(repo, index, parsed, blobs, now, protected)
        report.manifests = [str(digest) for digest in removed]
        for digest in removed:
            index.remove_digest(digest)
        # retention.dryRun (zot): report what retention would remove, keep index.json as it is.
        report.retention_dry_run = self.settings.dry_run
        if (report.tags or removed) and not (self.dry_run or self.settings.dry_run):
            await self.driver.put_content(index_path(repo), index.serialize())
            for tag in report.tags:
                self.store.events.untagged(repo, tag)
            if removed:
                self.store.events.deleted(repo, tuple(removed))
        listed = stored if self.settings.dry_run else index
        referenced: set[str] = set()
        for entry in listed.manifests():
            referenced.add(str(entry.digest))
            manifest = parsed.get(entry.digest)
            if manifest is not None:
                parts = manifest.required_blobs() + manifest.required_manifests()
                if manifest.subject is not None:
                    parts.append(manifest.subject)  # zot keeps a referrer's subject blob too
                referenced.update(str(d.digest) for d in parts)
        done = 0
        doomed: list[FileInfo] = []
        for name, info in blobs.items():
            done += 1
            if done % BATCH == 0:
                await self.pause()
            if name in referenced or not self._older(info, self._delay(info), now):
                report.stored_bytes += info.size
                self._located(repo, name, True)
                continue
            doomed.append(info)
            self._located(repo, name, False)
        await self._remove_all(doomed, report.blobs)
        live_sessions = await self._sweep(f"{repo}/.uploads", now, report.uploads, lambda name: True)
        await self._sweep(repo, now, report.temporary, lambda name: name.startswith(TEMPORARY_PREFIX))
        await self._abort_multipart(repo, now, live_sessions, report)

    async def _abort_multipart(self, repo: str, now: float, live_sessions: set[str], report: GCReport) -> None:
        """S3: multipart uploads of this repository initiated more than ``gcDelay`` ago, except
        those of an upload session still in use (the driver appends to sessions in parts)."""
        mine = (f"{repo}/blobs/", f"{repo}/.uploads/")  # not a nested repository's
        for path, upload_id, initiated in await self.driver.multipart_uploads(repo):  # none on disk
            if not path.startswith(mine) or path in live_sessions:
                continue
            if initiated is None or now - initiated < self.settings.gc_delay:
                continue
            if not self.dry_run:
                await self.driver.abort_multipart(path, upload_id)
            report.multipart += 1

    def _located(self, repo: str, name: str, present: bool) -> None:
        """Tell dedupe's locator what the listing showed (it learns the blobs stored before start)."""
        locator = self.store.blobs
        digest = blob_digest(name)
        if locator is None or digest is None or self.dry_run:
            return
        if present:
            locator.stored(repo, digest)
        else:
            locator.forget(repo, digest)

    async def _manifests(self, repo: str, index: RepositoryIndex) -> dict[Digest, Manifest | None]:
        """Each listed manifest parsed; None for one whose blob is missing or unreadable (kept, as
        zot does: collecting cannot make it readable, and its tag is an operator's to remove)."""
        parsed: dict[Digest, Manifest | None] = {}
        for position, entry in enumerate(index.manifests()):
            if position and position % BATCH == 0:
                await self.pause()
            try:
                body = await self.driver.get_content(f"{repo}/blobs/{entry.digest.algorithm}/{entry.digest.encoded}")
                parsed[entry.digest] = parse_manifest(body, entry.media_type)
            except (PathNotFound, RegistryError):
                parsed[entry.digest] = None
        return parsed

    def _removed_manifests(
        self,
        repo: str,
        index: RepositoryIndex,
        parsed: dict[Digest, Manifest | None],
        blobs: dict[str, FileInfo],
        now: float,
        protected: set[str],
    ) -> list[Digest]:
        """zot's loop, until a round removes nothing: referrers whose subject is no longer listed
        (``deleteReferrers``), then untagged manifests (``deleteUntagged``) that no listed index
        lists and that are not referrers; both only once older than ``retention.delay``."""
        delete_untagged = self.settings.deletes_untagged(repo)
        delete_referrers = self.settings.deletes_referrers(repo)
        tagged = {entry.digest for entry in index.entries if entry.tag is not None}
        removed: list[Digest] = []

        def old(digest: Digest) -> bool:
            info = blobs.get(str(digest))
            return info is not None and self._older(info, self.settings.retention_delay, now)

        while True:
            present = [digest for digest in parsed if digest not in removed]
            listed = set(present)
            children = {
                child.digest
                for digest in present
                if parsed[digest] is not None
                for child in parsed[digest].required_manifests()  # type: ignore[union-attr]
            }
            doomed = []
            for digest in present:
                manifest = parsed[digest]
                if manifest is None or not old(digest):
                    continue  # unreadable manifests stay (collecting cannot make them readable)
                if manifest.subject is not None:
                    if delete_referrers and manifest.subject.digest not in listed:
                        doomed.append(digest)
                elif delete_untagged and digest not in tagged and digest not in children:
                    if str(digest) not in protected:
                        doomed.append(digest)
            if not doomed:
                return removed
            removed.extend(doomed)

    def _delay(self, info: FileInfo) -> float:
        """The age at which ``info`` may go: ``gcDelay``; for a ``.tmp-`` file at least the idle
        timeout, since its writer's bytes may only be slow to arrive."""
        if info.path.rsplit("/", 1)[-1].startswith(TEMPORARY_PREFIX):
            return max(self.settings.gc_delay, IDLE_TIMEOUT_SECONDS)
        return self.settings.gc_delay

    def _older(self, info: FileInfo, delay: float, now: float) -> bool:
        return info.modified is not None and now - info.modified >= delay

    async def _sweep(self, directory: str, now: float, removed: Removed, chosen: Callable[[str], bool]) -> set[str]:
        """Remove the old files of ``directory`` that ``chosen`` names; the paths of those kept."""
        kept: set[str] = set()
        try:
            children = await self.driver.list(directory)
        except PathNotFound:
            return kept
        for position, child in enumerate(children):
            if position and position % BATCH == 0:
                await self.pause()
            name = child.path.rsplit("/", 1)[-1]
            if child.is_dir or not chosen(name) or not self._older(child, self._delay(child), now):
                kept.add(child.path)
                continue
            await self._remove(child, removed)
        return kept

    async def _remove_all(self, doomed: list[FileInfo], removed: Removed) -> None:
        """Remove objects in batches (S3's DeleteObjects: 1,000 keys a request)."""
        if self.dry_run:
            for info in doomed:
                await self._remove(info, removed)
            return
        for start in range(0, len(doomed), 1000):
            batch = doomed[start : start + 1000]
            await self.driver.delete_many([info.path for info in batch])
            for info in batch:
                removed.add(info.size)

    async def _remove(self, info: FileInfo, removed: Removed) -> None:
        if not self.dry_run:
            try:
                await self.driver.delete(info.path)
            except PathNotFound:
                return
        removed.add(info.size)

