"""OCI semantics over a storage driver: repositories, blobs, uploads, manifests, tags, referrers.

The store is where the registry's promises are kept:
- a blob becomes visible only after its digest was verified (it is written as an
  upload session and moved into ``blobs/`` only when it hashes correctly);
- every object appears atomically (the driver's contract), so a crash leaves no
  partial blob or broken ``index.json`` behind;
- ``index.json`` updates of one repository are serialised, so concurrent pushes
  never lose a tag;
- bulk hashing happens in the driver, off the reactor thread, in the same pass
  that writes the bytes whenever the upload arrives in one process in order.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from collections import OrderedDict
from typing import Any, Awaitable, Callable, TypeVar

import attrs

from zotpy.oci.digest import CANONICAL_ALGORITHM, Digest, Hasher, digest_of, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import MAX_MANIFEST_BYTES, OCI_INDEX, Manifest, parse_manifest, too_large
from zotpy.oci.names import is_valid_tag, validate_name
from zotpy.storage.events import IBlobLocator, IStoreEvents, NoEvents
from zotpy.storage.driver import ContentMismatch, IByteReader, IStorageDriver, PathNotFound, Source
from zotpy.storage.layout import (
    EMPTY_INDEX,
    OCI_LAYOUT,
    RepositoryIndex,
    blob_path,
    index_path,
    layout_path,
    upload_path,
)
from zotpy.storage.locks import KeyedLocks, Locks

T = TypeVar("T")

_SESSION_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_LAYOUT_DIRECTORIES = frozenset({"blobs", ".uploads"})


@attrs.frozen
class StoredManifest:
    """A manifest as served: its bytes and the headers that describe them."""

    media_type: str
    digest: Digest
    body: bytes


@attrs.frozen
class PushedManifest:
    digest: Digest
    manifest: Manifest


@attrs.define
class _UploadProgress:
    """A running hash of an upload session, valid while the session's size equals ``size``."""

    size: int
    hasher: Hasher


class _LRU(OrderedDict):  # type: ignore[type-arg]
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def remember(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


def parse_reference(reference: str) -> Digest | str:
    """A manifest reference to store under: a digest or a valid tag, else 400 before storage sees it."""
    if ":" in reference:
        return parse_digest(reference)
    if not is_valid_tag(reference):
        raise RegistryError("MANIFEST_INVALID", "invalid tag", detail={"tag": reference[:200]}, status=400)
    return reference


def lookup_reference(repo: str, reference: str) -> Digest | str:
    """A manifest reference to read or delete: a string outside the tag grammar names no manifest (404)."""
    if ":" not in reference and not is_valid_tag(reference):
        raise RegistryError("MANIFEST_UNKNOWN", detail={"name": repo, "reference": reference[:200]})
    return parse_reference(reference)


def check_session(session: str) -> str:
    """Session ids are UUIDv4s minted here; anything else names no session (and no path)."""
    if not _SESSION_PATTERN.fullmatch(session):
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"session": session[:100]})
    return session


@attrs.define(eq=False)
class ImageStore:
    """The registry's storage semantics, over any :class:`IStorageDriver`."""

    driver: IStorageDriver
    #: Told of pushes, pulls and deletions (the metadata keeper); never waited on.
    events: IStoreEvents = attrs.field(factory=NoEvents, kw_only=True)
    #: Dedupe: where else a blob is stored (None: every repository stores its own copy).
    blobs: IBlobLocator | None = attrs.field(default=None, kw_only=True)
    #: The locks of a namespace ("repository", "session"): in-process ones, or host-wide ones when
    #: the replica runs several worker processes (:func:`zotpy.storage.locks.locks_for`).
    locks: Callable[[str], Locks] = attrs.field(default=lambda namespace: KeyedLocks(), kw_only=True)
    _repository_locks: Locks = attrs.field(init=False)
    _session_locks: Locks = attrs.field(init=False)
    _uploads: _LRU = attrs.field(factory=lambda: _LRU(4096), init=False)
    _parsed: _LRU = attrs.field(factory=lambda: _LRU(8192), init=False)
    #: Repositories seen with an index.json: nothing in the API removes a layout, so once seen it
    #: need not be looked for again (on S3 that was a HEAD before every upload and manifest push).
    _laid_out: _LRU = attrs.field(factory=lambda: _LRU(8192), init=False)

    @_repository_locks.default
    def _repository_locks_default(self) -> Locks:
        return self.locks("repository")

    @_session_locks.default
    def _session_locks_default(self) -> Locks:
        return self.locks("session")

    # -- repositories -------------------------------------------------------------------------

    async def _read_index(self, repo: str) -> RepositoryIndex | None:
        try:
            data = await self.driver.get_content(index_path(repo))
        except PathNotFound:
            return None
        return RepositoryIndex.parse(data, repo)

    async def _index_or_unknown(self, repo: str) -> RepositoryIndex:
        index = await self._read_index(validate_name(repo))
        if index is None:
            raise RegistryError("NAME_UNKNOWN", detail={"name": repo})
        return index

    async def _ensure_layout(self, repo: str) -> None:
        """Make ``repo`` an OCI layout (as zot does when an upload starts); caller holds the repo lock."""
        if repo in self._laid_out:
            return
        try:
            await self.driver.size(index_path(repo))
        except PathNotFound:
            await self.driver.put_content(layout_path(repo), OCI_LAYOUT)
            await self.driver.put_content(index_path(repo), EMPTY_INDEX)
        self._laid_out.remember(repo, True)

    async def _update_index(
        self,
        repo: str,
        edit: Callable[[RepositoryIndex], tuple[bool, T]],
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """Under the repository lock: run ``before``, then ``edit(index)``, and write index.json
        back if the edit says it changed. One lock section, so what ``before`` checked or
        wrote (a manifest's blobs) cannot change before the index records it."""

        async def locked() -> T:
            if before is not None:
                await before()  # first: a refused push must not create the repository
            await self._ensure_layout(repo)
            index = await self._read_index(repo) or RepositoryIndex([])
            changed, result = edit(index)
            if changed:
                await self.driver.put_content(index_path(repo), index.serialize())
            return result

        return await self._repository_locks.run(repo, locked)

    async def locked(self, repo: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` holding ``repo``'s write lock: no push, delete or mount of the repository
        runs meanwhile (garbage collection and retention edit the repository this way)."""
        return await self._repository_locks.run(repo, work)

    async def repositories(self) -> list[str]:
        """Every repository under the root, sorted. Walks the tree: meant for the catalog only."""
        found: list[str] = []

        async def visit(prefix: str | None) -> None:
            try:
                children = await self.driver.list(prefix or "")
            except PathNotFound:
                return
            names = {child.path.rsplit("/", 1)[-1] for child in children}
            if prefix and "index.json" in names:
                found.append(prefix)
            for child in children:
                name = child.path.rsplit("/", 1)[-1]
                if child.is_dir and name not in _LAYOUT_DIRECTORIES and not name.startswith("."):
                    await visit(child.path)

        await visit(None)
        return sorted(name for name in found if _is_valid_name(name))

    async def tags(self, repo: str) -> list[str]:
        return (await self._index_or_unknown(repo)).tags()

    # -- blobs ----------------------------------------------------------------------------------

    async def blob_size(self, repo: str, digest: Digest) -> int:
        try:
            size = await self.driver.size(blob_path(validate_name(repo), digest))
        except PathNotFound:
            if not await self._link_from_elsewhere(repo, digest):
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
            size = await self.driver.size(blob_path(repo, digest))
        if self.blobs is not None:
            self.blobs.stored(repo, digest)
        return size

    async def _link_from_elsewhere(self, repo: str, digest: Digest) -> bool:
        """Dedupe: a blob another repository holds is linked (or copied server-side) into
        ``repo`` instead of being uploaded again, as a cross-repository mount would."""
        source = self.blobs.source(repo, digest) if self.blobs is not None else None
        if source is None:
            return False
        if await self.mount_blob(repo, digest, source):
            return True
        self.blobs.forget(source, digest)  # type: ignore[union-attr]
        return False

    async def _stored(self, repo: str, digest: Digest) -> None:
        """A blob just became visible in ``repo``: with dedupe on local disk, replace it by a link
        to the copy another repository holds (one inode for all)."""
        if self.blobs is None:
            return
        source = self.blobs.source(repo, digest)
        if source is not None and self.blobs.link_duplicates:
            try:
                await self.driver.copy(blob_path(source, digest), blob_path(repo, digest))
            except PathNotFound:
                self.blobs.forget(source, digest)
        self.blobs.stored(repo, digest)

    async def open_blob(self, repo: str, digest: Digest, offset: int = 0, length: int | None = None) -> IByteReader:
        try:
            return await self.driver.reader(blob_path(validate_name(repo), digest), offset, length)
        except PathNotFound:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None

    async def blob_url(self, repo: str, digest: Digest) -> str | None:
        """Where a client may download the blob from directly (a presigned S3 URL), or None; the
        caller checked that ``repo`` holds it (:meth:`blob_size`)."""
        return await self.driver.redirect_url(blob_path(validate_name(repo), digest))

    async def delete_blob(self, repo: str, digest: Digest) -> None:
        """Delete a blob, under the repository lock so a manifest push cannot check it and lose it."""

        async def delete() -> None:
            index = await self._index_or_unknown(repo)
            if index.by_digest(digest) is not None:
                raise RegistryError(
                    "UNSUPPORTED",
                    "the blob is a manifest of this repository: delete the manifest instead",
                    detail={"digest": str(digest)},
                )
            try:
                await self.driver.delete(blob_path(repo, digest))
            except PathNotFound:
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None

        await self._repository_locks.run(validate_name(repo), delete)

    async def mount_blob(self, repo: str, digest: Digest, source_repo: str) -> bool:
        """Make ``source_repo``'s blob available in ``repo``; False when there is nothing to mount."""
        validate_name(repo)
        validate_name(source_repo)
        try:
            await self.driver.size(blob_path(source_repo, digest))
        except PathNotFound:
            return False

        async def mount() -> bool:
            await self._ensure_layout(repo)
            try:
                await self.driver.size(blob_path(repo, digest))
            except PathNotFound:
                await self.driver.copy(blob_path(source_repo, digest), blob_path(repo, digest))
            return True

        try:
            return await self._repository_locks.run(repo, mount)
        except PathNotFound:  # the source vanished between stat and copy
            return False

    # -- uploads ---------------------------------------------------------------------------------

    async def start_upload(self, repo: str) -> str:
        validate_name(repo)
        session = str(uuid.uuid4())

        async def start() -> None:
            await self._ensure_layout(repo)
            await self.driver.put_content(upload_path(repo, session), b"")

        await self._repository_locks.run(repo, start)
        self._uploads.remember(session, _UploadProgress(0, hashlib.new(CANONICAL_ALGORITHM)))
        return session

    async def upload_size(self, repo: str, session: str) -> int:
        path = upload_path(validate_name(repo), check_session(session))
        try:
            return await self.driver.size(path)
        except PathNotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"session": session}) from None

    async def append_upload(self, repo: str, session: str, source: Source, start: int | None) -> int:
        """Append a chunk; ``start`` (from Content-Range) must equal the current size, else 416."""

        async def append() -> int:
            size = await self.upload_size(repo, session)
            if start is not None and start != size:
                raise RegistryError(
                    "BLOB_UPLOAD_INVALID",
                    "chunk does not start where the upload ends",
                    status=416,
                    detail={"expected": size, "got": start},
                    headers=_progress_headers(repo, session, size),
                )
            return await self._append(repo, session, source, size)

        return await self._session_locks.run(session, append)

    async def _append(self, repo: str, session: str, source: Source, size: int) -> int:
        progress = self._uploads.pop(session, None)
        hasher = progress.hasher if progress is not None and progress.size == size else None
        new_size = await self.driver.append(upload_path(repo, session), source, hasher)
        if hasher is not None:
            self._uploads.remember(session, _UploadProgress(new_size, hasher))
        return new_size

    async def finish_upload(self, repo: str, session: str, digest: Digest, source: Source | None) -> None:
        """Append the last chunk, verify the digest, and only then make the blob visible."""

        async def finish() -> None:
            size = await self.upload_size(repo, session)
            if source is not None and size == 0 and await self._write_whole(repo, session, digest, source):
                return
            if source is not None:
                size = await self._append(repo, session, source, size)
            await self._commit(repo, session, digest, size)

        await self._session_locks.run(session, finish)

    async def _write_new(self, repo: str, digest: Digest, source: Source) -> bool:
        """Store a blob that arrives whole straight at ``blobs/``, verified as it is written (no
        upload object, no move: on S3 a move is a server-side copy of every byte). False, without
        reading ``source``, when the blob is already stored (then it goes the usual way, which
        checks the body's digest just the same)."""
        try:
            await self.driver.size(blob_path(repo, digest))
            return False
        except PathNotFound:
            pass
        try:
            await self.driver.write(blob_path(repo, digest), source, digest.hasher(), digest.encoded)
        except ContentMismatch as error:
            raise RegistryError(
                "DIGEST_INVALID", detail={"expected": str(digest), "actual": f"{digest.algorithm}:{error.actual}"}
            ) from None
        await self._stored(repo, digest)
        return True

    async def _write_whole(self, repo: str, session: str, digest: Digest, source: Source) -> bool:
        """A session's only bytes, sent with its digest: :meth:`_write_new`, and the session is
        over (refused bytes end it too, as they always did)."""
        try:
            written = await self._write_new(repo, digest, source)
        except RegistryError:
            await self._end_session(repo, session)
            raise
        if written:
            await self._end_session(repo, session)
        return written

    async def _end_session(self, repo: str, session: str) -> None:
        self._uploads.pop(session, None)
        await self._discard(upload_path(repo, session))

    async def _commit(self, repo: str, session: str, digest: Digest, size: int) -> None:
        path = upload_path(repo, session)
        progress = self._uploads.pop(session, None)
        if digest.algorithm == CANONICAL_ALGORITHM and progress is not None and progress.size == size:
            actual = progress.hasher.hexdigest()
        else:
            actual = await self.driver.hash(path, digest.algorithm)
        if actual != digest.encoded:
            await self._discard(path)
            raise RegistryError(
                "DIGEST_INVALID",
                detail={"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"},
            )
        try:
            await self.driver.size(blob_path(repo, digest))
        except PathNotFound:
            await self.driver.move(path, blob_path(repo, digest))
            await self._stored(repo, digest)
        else:
            await self._discard(path)

    async def cancel_upload(self, repo: str, session: str) -> None:
        async def cancel() -> None:
            await self.upload_size(repo, session)
            await self._end_session(repo, session)

        await self._session_locks.run(session, cancel)

    async def put_blob(self, repo: str, digest: Digest, source: Source) -> None:
        """A monolithic upload (POST with ``digest``). A new blob needs no upload session: it is
        written at its place, verified on the way (:meth:`_write_new`). One already stored goes
        through a session of its own, which checks the body all the same."""
        validate_name(repo)
        await self._repository_locks.run(repo, lambda: self._ensure_layout(repo))
        if await self._write_new(repo, digest, source):
            return
        session = await self.start_upload(repo)
        try:
            await self.finish_upload(repo, session, digest, source)
        except BaseException:  # the session is this call's own: nobody can resume it
            await self._end_session(repo, session)
            raise

    async def has_blob(self, repo: str, digest: Digest) -> bool:
        try:
            await self.blob_size(repo, digest)
        except RegistryError:
            return False
        return True

    async def blob_writer(self, repo: str, digest: Digest) -> BlobWriter:
        """Receive blob ``digest`` of known digest in pieces (from an upstream registry, say): see
        :class:`BlobWriter`. Nothing is held in memory beyond the piece being written."""
        return BlobWriter(self, repo, await self.start_upload(repo), digest)

    async def _discard(self, path: str) -> None:
        try:
            await self.driver.delete(path)
        except PathNotFound:
            pass

    # -- manifests ---------------------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: str, pull: bool = False) -> StoredManifest:
        """The manifest ``reference`` names; ``pull``: a client's GET, counted as a download."""
        target = lookup_reference(repo, reference)
        index = await self._read_index(validate_name(repo))
        if index is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"name": repo, "reference": reference})
        entry = index.by_tag(target) if isinstance(target, str) else index.by_digest(target)
        if entry is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"name": repo, "reference": reference})
        try:
            body = await self.driver.get_content(blob_path(repo, entry.digest))
        except PathNotFound:
            raise RegistryError(
                "MANIFEST_UNKNOWN", "manifest is listed but its blob is missing", detail={"digest": str(entry.digest)}
            ) from None
        if pull:
            self.events.pulled(repo, entry.digest)
        return StoredManifest(entry.media_type, entry.digest, body)

    async def put_manifest(
        self, repo: str, reference: str, body: bytes, content_type: str | None, tags: tuple[str, ...] = ()
    ) -> PushedManifest:
        """Validate and store a manifest, then record it (and its tags) in index.json."""
        validate_name(repo)
        target = parse_reference(reference)
        for tag in tags:
            if not is_valid_tag(tag):
                raise RegistryError("MANIFEST_INVALID", "invalid tag", detail={"tag": tag[:200]})
        if len(body) > MAX_MANIFEST_BYTES:
            raise too_large(len(body))
        manifest = parse_manifest(body, content_type)
        digest = digest_of(body, target.algorithm if isinstance(target, Digest) else CANONICAL_ALGORITHM)
        if isinstance(target, Digest) and digest != target:
            raise RegistryError(
                "DIGEST_INVALID",
                "manifest content does not match the digest in the URL",
                detail={"expected": str(target), "actual": str(digest)},
            )
        all_tags = ((target,) if isinstance(target, str) else ()) + tuple(tags)

        async def check_and_store() -> None:
            await self._check_references(repo, manifest)
            await self.driver.put_content(blob_path(repo, digest), body)

        def record(index: RepositoryIndex) -> tuple[bool, None]:
            changed = False
            for tag in all_tags or (None,):
                changed = index.add(manifest.media_type, digest, len(body), tag) or changed
            return changed, None

        await self._update_index(repo, record, before=check_and_store)
        self._parsed.remember(digest, manifest)
        self.events.pushed(repo, digest, len(body), all_tags, manifest)
        return PushedManifest(digest, manifest)

    async def _check_references(self, repo: str, manifest: Manifest) -> None:
        missing = []
        for descriptor in manifest.required_blobs() + manifest.required_manifests():
            try:
                await self.driver.size(blob_path(repo, descriptor.digest))
            except PathNotFound:
                missing.append(str(descriptor.digest))
        if missing:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"digests": missing})

    async def delete_manifest(self, repo: str, reference: str) -> None:
        """Delete by tag removes the tag; delete by digest removes the manifest and all its tags."""
        target = lookup_reference(repo, reference)
        await self._index_or_unknown(repo)

        def remove(index: RepositoryIndex) -> tuple[bool, bool]:
            changed = index.remove_tag(target) if isinstance(target, str) else index.remove_digest(target)
            return changed, changed

        if not await self._update_index(repo, remove):
            raise RegistryError("MANIFEST_UNKNOWN", detail={"name": repo, "reference": reference})
        if isinstance(target, str):
            self.events.untagged(repo, target)
        else:
            self.events.deleted(repo, (target,))

    # -- referrers ----------------------------------------------------------------------------------

    async def referrers(self, repo: str, subject: Digest, artifact_type: str | None) -> dict[str, Any]:
        """The image index of manifests whose ``subject`` is ``subject`` (empty when none or no repo)."""
        index = await self._read_index(validate_name(repo))
        descriptors = []
        for entry in index.manifests() if index is not None else ():
            manifest = await self._parsed_manifest(repo, entry.digest, entry.media_type)
            if manifest is None or manifest.subject is None or manifest.subject.digest != subject:
                continue
            if artifact_type is not None and manifest.artifact_type != artifact_type:
                continue
            descriptor: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(entry.digest), "size": entry.size}
            if manifest.artifact_type is not None:
                descriptor["artifactType"] = manifest.artifact_type
            if manifest.annotations:
                descriptor["annotations"] = manifest.annotations
            descriptors.append(descriptor)
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}

    async def _parsed_manifest(self, repo: str, digest: Digest, media_type: str) -> Manifest | None:
        """Manifests are immutable by digest, so their parsed facts are cached across requests."""
        cached = self._parsed.get(digest)
        if cached is not None:
            return cached
        try:
            body = await self.driver.get_content(blob_path(repo, digest))
            manifest = parse_manifest(body, media_type)
        except (PathNotFound, RegistryError):
            return None
        self._parsed.remember(digest, manifest)
        return manifest

    async def check(self) -> None:
        """Raise if the storage does not answer (used by readiness probes): the driver's own cheap
        check (the S3 driver's HeadBucket, a listing of the local root)."""
        await self.driver.check()


@attrs.define(eq=False)
class BlobWriter:
    """A blob written piece by piece as an upload session of ``repo``: :meth:`commit` verifies the
    digest (hashed as the pieces are appended) and only then makes the blob visible; :meth:`cancel`
    throws the pieces away."""

    store: ImageStore
    repo: str
    session: str
    digest: Digest
    size: int = 0

    async def write(self, data: bytes) -> None:
        self.size = await self.store.append_upload(self.repo, self.session, io.BytesIO(data), None)

    async def commit(self) -> None:
        await self.store.finish_upload(self.repo, self.session, self.digest, None)

    async def cancel(self) -> None:
        try:
            await self.store.cancel_upload(self.repo, self.session)
        except RegistryError:
            pass


def _progress_headers(repo: str, session: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{repo}/blobs/uploads/{session}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": session,
    }


def _is_valid_name(name: str) -> bool:
    try:
        validate_name(name)
    except RegistryError:
        return False
    return True

