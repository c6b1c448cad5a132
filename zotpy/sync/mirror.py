"""Copy images from an upstream registry into the store, exactly (same bytes, same digests).

Everything goes through :class:`~zotpy.storage.imagestore.ImageStore`, the way a push would: blobs
are streamed into an upload session and only become visible once their digest checks out, and a
manifest is stored only after everything it references is present, so a copy cut short leaves no
tag pointing at a partial image. An index brings every platform's manifest. What is already there
(a blob, a child manifest) is not fetched again; an image's missing blobs are fetched a few at a time.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import DeferredList, DeferredSemaphore

from zotpy.oci.digest import Digest, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import Descriptor, parse_manifest
from zotpy.storage.imagestore import ImageStore
from zotpy.sync.client import FetchedManifest, UpstreamClient, UpstreamInvalid
from zotpy.sync.coalesce import Coalescer

#: How deep indexes may nest (an index of indexes of manifests is 2).
MAX_DEPTH = 4
#: Blobs transferred at once from one upstream (an image's layers arrive side by side).
PARALLEL_BLOBS = 4


async def local_manifest_digest(store: ImageStore, repo: str, reference: str) -> Digest | None:
    """The digest ``reference`` names in ``repo`` here, or None."""
    try:
        return (await store.get_manifest(repo, reference)).digest
    except RegistryError:
        return None


@attrs.define(eq=False)
class Mirror:
    """Copies from one upstream into the store. Concurrent copies of one blob share one transfer."""

    client: UpstreamClient
    store: ImageStore
    _blobs: Coalescer[None] = attrs.field(factory=Coalescer, init=False)
    _transfers: DeferredSemaphore = attrs.field(factory=lambda: DeferredSemaphore(PARALLEL_BLOBS), init=False)
    #: Counters for logs and tests: what was actually transferred.
    blobs_copied: int = 0
    bytes_copied: int = 0
    manifests_copied: int = 0

    async def image(self, upstream: str, local: str, reference: str) -> Digest:
        """Copy manifest ``reference`` (a tag or a digest) of ``upstream`` into ``local`` with all it
        needs, then record it (under the tag, when ``reference`` is one)."""
        fetched = await self.client.manifest(upstream, reference)
        return await self.store_image(upstream, local, reference, fetched)

    async def store_image(self, upstream: str, local: str, reference: str, fetched: FetchedManifest) -> Digest:
        """:meth:`image` for a manifest already fetched."""
        await self._store(upstream, local, reference, fetched, 0)
        return fetched.digest

    async def _store(self, upstream: str, local: str, reference: str, fetched: FetchedManifest, depth: int) -> None:
        try:
            manifest = parse_manifest(fetched.body, fetched.media_type)
        except RegistryError as error:
            raise UpstreamInvalid(f"{upstream}:{reference}: the upstream's manifest is not valid: {error}") from None
        if manifest.is_index:
            if depth >= MAX_DEPTH:
                raise UpstreamInvalid(f"{upstream}:{reference}: indexes nested more than {MAX_DEPTH} deep")
            for child in manifest.references:
                if await local_manifest_digest(self.store, local, str(child.digest)) is None:
                    child_fetched = await self.client.manifest(upstream, str(child.digest))
                    await self._store(upstream, local, str(child.digest), child_fetched, depth + 1)
        else:
            missing = [blob for blob in manifest.required_blobs() if not await self.store.has_blob(local, blob.digest)]
            copies = [
                self._transfers.run(self._blobs.run, (local, blob.digest), lambda blob=blob: self._blob(upstream, local, blob))
                for blob in missing
            ]
            for ok, result in await DeferredList(copies, consumeErrors=True):  # all end before any error is raised
                if not ok:
                    result.raiseException()
        try:
            await self.store.put_manifest(local, reference, fetched.body, fetched.media_type)
        except RegistryError as error:
            raise UpstreamInvalid(f"{upstream}:{reference}: the store refused the manifest: {error}") from None
        self.manifests_copied += 1

    async def _blob(self, upstream: str, local: str, descriptor: Descriptor) -> None:
        async def copy() -> None:
            writer = await self.store.blob_writer(local, descriptor.digest)
            try:
                size = await self.client.blob(upstream, descriptor.digest, writer.write)
                if size != descriptor.size:
                    raise UpstreamInvalid(
                        f"blob {descriptor.digest} of {upstream}: the upstream sent {size} bytes, "
                        f"the manifest says {descriptor.size}"
                    )
                try:
                    await writer.commit()
                except RegistryError as error:
                    raise UpstreamInvalid(
                        f"blob {descriptor.digest} of {upstream}: the bytes do not match the digest ({error})"
                    ) from None
            except BaseException:
                await writer.cancel()
                raise
            self.blobs_copied += 1
            self.bytes_copied += size

        await self.client.retrying(f"copying blob {descriptor.digest} of {upstream}", copy)

    async def referrers(self, upstream: str, local: str, subject: Digest, depth: int = 0) -> int:
        """Copy the manifests that refer to ``subject`` upstream (signatures, SBOMs...) and, in turn,
        theirs; how many were new. Nothing when the upstream has no referrers API."""
        descriptors = await self.client.referrers(upstream, subject)
        copied = 0
        for descriptor in descriptors or ():
            try:
                digest = parse_digest(str(descriptor["digest"]))
            except RegistryError:
                continue
            if await local_manifest_digest(self.store, local, str(digest)) is None:
                await self.image(upstream, local, str(digest))
                copied += 1
            if depth < MAX_DEPTH:
                copied += await self.referrers(upstream, local, digest, depth + 1)
        return copied
