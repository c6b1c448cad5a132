"""Garbage collection of one repository, on its owner, under its write lock.

One pass, in zot's order:

1. manifests: a tagged manifest is kept, with every manifest an index it keeps lists and every
   referrer whose subject it keeps. An untagged manifest goes once older than ``retention.delay``
   (a multi-arch push uploads its children untagged, before the index that lists them); so does a
   referrer whose subject is gone (``deleteReferrers``), tagged or not. Retention policies decide
   per repository whether either rule applies (without policies both do, as in zot).
2. blobs no kept manifest references, once older than ``gcDelay`` (a push uploads its blobs before
   the manifest that references them, so a young blob is a push in progress);
3. upload sessions untouched for ``gcDelay``; ``.tmp-*`` leftovers of interrupted writes as old;
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

from zotpy.lifecycle.settings import LifecycleSettings
from zotpy.oci.digest import Digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import Manifest, parse_manifest
from zotpy.storage.driver import FileInfo, IStorageDriver, PathNotFound
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.layout import RepositoryIndex, index_path

log = Logger()

#: Objects handled between two turns given back to the reactor.
BATCH = 256

TEMPORARY_PREFIX = ".tmp-"


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
        return bool(self.manifests or self.blobs.count or self.uploads.count or self.temporary.count or self.multipart)

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {len(self.manifests)} manifests, {self.blobs.count} blobs, {self.uploads.count} upload "
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
    pause: Callable[[], Awaitable[None]] = _yield_to_reactor

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
        blobs = await self._blobs(repo)
        parsed = await self._manifests(repo, index)
        kept = self._kept_manifests(repo, index, parsed, blobs, now)
        removed = [entry.digest for entry in index.manifests() if entry.digest not in kept]
        if removed:
            report.manifests = [str(digest) for digest in removed]
            for digest in removed:
                index.remove_digest(digest)
            if not self.dry_run:
                await self.driver.put_content(index_path(repo), index.serialize())
                self.store.events.deleted(repo, tuple(removed))
        referenced = {str(digest) for digest in kept}
        for digest in kept:
            manifest = parsed.get(digest)
            if manifest is not None:
                referenced.update(str(d.digest) for d in manifest.required_blobs() + manifest.required_manifests())
        done = 0
        for name, info in blobs.items():
            done += 1
            if done % BATCH == 0:
                await self.pause()
            if name in referenced or not self._older(info, self.settings.gc_delay, now):
                report.stored_bytes += info.size
                continue
            await self._remove(info, report.blobs)
        live_sessions = await self._sweep(f"{repo}/.uploads", now, report.uploads, lambda name: True)
        await self._sweep(repo, now, report.temporary, lambda name: name.startswith(TEMPORARY_PREFIX))
        await self._abort_multipart(repo, now, live_sessions, report)

    async def _abort_multipart(self, repo: str, now: float, live_sessions: set[str], report: GCReport) -> None:
        """S3: multipart uploads of this repository initiated more than ``gcDelay`` ago, except
        those of an upload session still in use (the driver appends to sessions in parts)."""
        listing = getattr(self.driver, "multipart_uploads", None)
        if listing is None:
            return
        mine = (f"{repo}/blobs/", f"{repo}/.uploads/")  # not a nested repository's
        for path, upload_id, initiated in await listing(repo):
            if not path.startswith(mine) or path in live_sessions:
                continue
            if initiated is None or now - initiated < self.settings.gc_delay:
                continue
            if not self.dry_run:
                await self.driver.abort_multipart(path, upload_id)  # type: ignore[attr-defined]
            report.multipart += 1

    async def _blobs(self, repo: str) -> dict[str, FileInfo]:
        """Every object under ``blobs/``, by digest (``sha256:<hex>``); leftovers of interrupted
        writes (``.tmp-*``) by their path."""
        found: dict[str, FileInfo] = {}
        try:
            algorithms = await self.driver.list(f"{repo}/blobs")
        except PathNotFound:
            return found
        for algorithm in algorithms:
            if not algorithm.is_dir:
                continue
            try:
                children = await self.driver.list(algorithm.path)
            except PathNotFound:
                continue
            name = algorithm.path.rsplit("/", 1)[-1]
            for child in children:
                encoded = child.path.rsplit("/", 1)[-1]
                if not child.is_dir:
                    found[child.path if encoded.startswith(TEMPORARY_PREFIX) else f"{name}:{encoded}"] = child
        return found

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

    def _kept_manifests(
        self,
        repo: str,
        index: RepositoryIndex,
        parsed: dict[Digest, Manifest | None],
        blobs: dict[str, FileInfo],
        now: float,
    ) -> set[Digest]:
        delay = self.settings.retention_delay
        delete_untagged = self.settings.deletes_untagged(repo)
        delete_referrers = self.settings.deletes_referrers(repo)
        tagged = {entry.digest for entry in index.entries if entry.tag is not None}

        def young(digest: Digest) -> bool:
            info = blobs.get(str(digest))
            return info is None or not self._older(info, delay, now)

        def subject(digest: Digest) -> Digest | None:
            manifest = parsed.get(digest)
            return None if manifest is None or manifest.subject is None else manifest.subject.digest

        # What stays whatever else is kept: tagged images, young or protected untagged ones, and
        # manifests that cannot be read; referrers are decided by their subject below.
        kept: set[Digest] = set()
        for digest in parsed:
            if subject(digest) is not None:
                continue
            if digest in tagged or parsed[digest] is None or not delete_untagged or young(digest):
                kept.add(digest)
        while True:
            grown = set(kept)
            for digest in kept:
                manifest = parsed.get(digest)
                if manifest is not None:
                    grown.update(d.digest for d in manifest.required_manifests() if d.digest in parsed)
            for digest in parsed:
                target = subject(digest)
                if target is None or digest in grown:
                    continue
                if target in grown:
                    grown.add(digest)  # a referrer of a kept manifest stays
                elif young(digest) or (not delete_referrers and (digest in tagged or not delete_untagged)):
                    grown.add(digest)
            if grown == kept:
                return kept
            kept = grown

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
            if child.is_dir or not chosen(name) or not self._older(child, self.settings.gc_delay, now):
                kept.add(child.path)
                continue
            await self._remove(child, removed)
        return kept

    async def _remove(self, info: FileInfo, removed: Removed) -> None:
        if not self.dry_run:
            try:
                await self.driver.delete(info.path)
            except PathNotFound:
                return
        removed.add(info.size)

