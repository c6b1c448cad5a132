"""The S3 calls the driver makes, one method each, typed: keys in, values and ETags out.

Only what a call means lives here (which status is success, which reply document to read, that a
copy may fail inside a 200); how a request is signed, sent and retried is :mod:`zotpy.storage.s3.client`'s.
"""

from __future__ import annotations

import base64
import hashlib
import math
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import attrs
from twisted.internet.defer import Deferred
from twisted.web.iweb import IBodyProducer, IResponse

from zotpy.storage.s3.client import Reply, S3Client, S3Error
from zotpy.storage.s3.xml import (
    ListedObject,
    Listing,
    Part,
    PendingUpload,
    complete_body,
    delete_body,
    parse_copy_etag,
    parse_delete_failures,
    parse_listing,
    parse_parts,
    parse_upload_id,
    parse_uploads,
)

#: S3's limits: the smallest part but the last, the largest part (and single copy), most parts.
MIN_PART = 5 * 1024 * 1024
MAX_PART = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
_DELETE_BATCH = 1000
#: The folder name SeaweedFS hides from listings of the folders above it (its own multipart state
#: folder's name, which is also zot's name for a repository's upload sessions).
HIDDEN_FOLDER = ".uploads"


def split_ranges(size: int, largest: int = MAX_PART) -> list[tuple[int, int]]:
    """Inclusive byte ranges covering ``size`` bytes in as few equal pieces of at most ``largest``
    as possible (equal pieces keep every part but the last above S3's minimum)."""
    if size <= 0:
        return []
    step = math.ceil(size / math.ceil(size / largest))
    return [(start, min(start + step, size) - 1) for start in range(0, size, step)]


def _optional(error: S3Error, *codes: str) -> bool:
    return error.not_found or error.code in codes


class S3Bucket:
    def __init__(self, client: S3Client) -> None:
        self.client = client

    # -- objects ---------------------------------------------------------------------------------------

    async def head(self, key: str) -> Reply | None:
        """The object's headers, or None if there is no such object."""
        try:
            return await self.client.request("HeadObject", "HEAD", key)
        except S3Error as error:
            if error.not_found:
                return None
            raise

    async def get(self, key: str) -> Reply | None:
        """A small object whole (callers know it is small), or None if missing."""
        try:
            return await self.client.request("GetObject", "GET", key)
        except S3Error as error:
            if error.not_found:
                return None
            raise

    async def get_range(self, key: str, first: int, last: int) -> IResponse:
        """The unbuffered response for bytes ``first`` to ``last`` inclusive, to stream."""
        return await self.client.request(
            "GetObject", "GET", key, headers={"Range": f"bytes={first}-{last}"}, ok=(200, 206), stream=True
        )

    async def open(self, key: str, first: int = 0, last: int | None = None) -> IResponse:
        """The unbuffered response for the object from ``first`` (to ``last`` inclusive, or its end):
        its headers tell the object's size, so no HEAD is needed before it."""
        if first == 0 and last is None:
            return await self.get_stream(key)
        wanted = f"bytes={first}-{'' if last is None else last}"
        return await self.client.request("GetObject", "GET", key, headers={"Range": wanted}, ok=(200, 206), stream=True)

    async def get_stream(self, key: str) -> IResponse:
        return await self.client.request("GetObject", "GET", key, stream=True)

    async def put(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        await self.client.request("PutObject", "PUT", key, headers=metadata or {}, body=body)

    async def delete(self, key: str) -> None:
        await self.client.request("DeleteObject", "DELETE", key, ok=(200, 204))

    async def delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            body = delete_body(keys[start : start + _DELETE_BATCH])
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")
            reply = await self.client.request(
                "DeleteObjects", "POST", None, query=[("delete", "")], body=body,
                headers={"Content-MD5": md5, "Content-Type": "application/xml"},
            )
            failures = [failure for failure in parse_delete_failures(reply.body) if failure.code != "NoSuchKey"]
            if failures:
                first = failures[0]
                raise S3Error("DeleteObjects", first.message, reply.status, first.code, f"{len(failures)} keys not deleted")

    async def list_page(self, prefix: str, delimiter: str | None, token: str | None, limit: int = 1000) -> Listing:
        """One page of ListObjectsV2. The first page of a "directory" (a prefix ending in ``/``)
        starts after the prefix itself: on S3 that changes nothing (every key under the prefix
        sorts after it; only a folder marker equal to it is left out, which no caller wants), but
        SeaweedFS then lists the directory's own entries instead of looking the directory up in
        its parent, and a directory named ``.uploads`` (zot's upload sessions, and SeaweedFS's own
        multipart state folder) is skipped wherever SeaweedFS finds it in a parent's entries: it
        would otherwise list as empty, and garbage collection could never see a stale session."""
        query = [("list-type", "2"), ("prefix", prefix), ("encoding-type", "url"), ("max-keys", str(limit))]
        if delimiter:
            query.append(("delimiter", delimiter))
        if token:
            query.append(("continuation-token", token))
        elif prefix.endswith("/"):
            query.append(("start-after", prefix))
        reply = await self.client.request("ListObjectsV2", "GET", None, query=query)
        return parse_listing(reply.body, url_encoded=True)

    async def list_all(self, prefix: str, delimiter: str | None) -> tuple[list[tuple[str, int]], list[str]]:
        """Every (key, size) and common prefix under ``prefix``, across pages."""
        objects, prefixes = await self.list_objects(prefix, delimiter)
        return [(entry.key, entry.size) for entry in objects], prefixes

    async def list_tree(self, prefix: str) -> list[str]:
        """Every key under the "directory" ``prefix``, at any depth, including those in folders
        named ``.uploads``: SeaweedFS leaves such a folder out of a listing of any folder above it,
        recursive or not (see :meth:`list_page`), so the tree is walked one folder at a time with
        ``/`` as delimiter and each folder's ``.uploads`` is asked for by name. On S3 the walk finds
        the same keys; it costs two requests a folder, which a repository has a handful of."""
        keys: dict[str, None] = {}
        folders = [prefix]
        while folders:
            folder = folders.pop()
            objects, prefixes = await self.list_all(folder, "/")
            keys.update((key, None) for key, _ in objects)
            folders += prefixes
            hidden = folder + HIDDEN_FOLDER + "/"
            if not folder.endswith("/" + HIDDEN_FOLDER + "/") and hidden not in prefixes:
                folders.append(hidden)
        return list(keys)

    async def list_objects(self, prefix: str, delimiter: str | None) -> tuple[list[ListedObject], list[str]]:
        """Every object (key, size, last modified) and common prefix under ``prefix``, across pages."""
        objects: list[ListedObject] = []
        prefixes: list[str] = []
        token: str | None = None
        while True:
            page = await self.list_page(prefix, delimiter, token)
            objects.extend(page.objects)
            prefixes.extend(page.prefixes)
            token = page.continuation
            if token is None:
                return objects, prefixes

    async def copy(self, source: str, destination: str, size: int) -> None:
        """A server-side copy that appears whole: CopyObject up to 5 GiB, a multipart copy beyond."""
        if size <= MAX_PART:
            await self.client.request(
                "CopyObject", "PUT", destination, errors_in_body=True,
                headers={"x-amz-copy-source": self.client.copy_source(source), "x-amz-metadata-directive": "REPLACE"},
            )
            return

        async def copy_range(upload_id: str, number: int, first: int, last: int) -> str:
            return await self.copy_part(destination, upload_id, number, source, first, last)

        await self.multipart(destination, split_ranges(size), copy_range)

    async def check(self) -> None:
        """HeadBucket: the cheapest call that proves the bucket answers and the keys are accepted."""
        await self.client.request("HeadBucket", "HEAD", None)

    # -- multipart uploads -------------------------------------------------------------------------------

    async def create_upload(self, key: str) -> str:
        # Retried like the idempotent calls: an upload created twice leaves an invisible orphan that
        # delete() (or a bucket lifecycle rule) aborts; failing the client's chunk would be worse.
        reply = await self.client.request("CreateMultipartUpload", "POST", key, query=[("uploads", "")], body=b"")
        return parse_upload_id(reply.body)

    @asynccontextmanager
    async def parts(self, key: str, upload_id: str | None = None) -> AsyncIterator[UploadInProgress]:
        """Parts sent for ``key`` inside the block: to ``upload_id`` (an upload something already
        records, left alone whatever happens) or to one created on first need
        (:meth:`UploadInProgress.ensure`). An upload created here is abandoned if the block fails,
        cancellation included, so no parts are left billed that nothing records. Every multipart
        upload the driver makes is made here: :meth:`multipart` and the appends of
        :mod:`zotpy.storage.s3.multipart`."""
        upload = UploadInProgress(self, key, upload_id)
        try:
            yield upload
        except BaseException:
            if upload.made and upload.upload_id is not None:
                await self.abandon(key, upload.upload_id)
            raise

    async def multipart(
        self, key: str, ranges: Iterable[tuple[int, int]], send: Callable[[str, int, int, int], Awaitable[str]]
    ) -> None:
        """An object made whole from parts in one go: create the upload, ``send(upload_id, number,
        first, last)`` each byte range in order (it returns the part's ETag), complete; abandoned
        on any failure (:meth:`parts`)."""
        async with self.parts(key) as upload:
            upload_id = await upload.ensure()
            parts = [(number, await send(upload_id, number, *span)) for number, span in enumerate(ranges, 1)]
            await self.complete(key, upload_id, parts)

    async def put_stream(self, key: str, body: Callable[[], IBodyProducer], length: int) -> None:
        """One PutObject streamed from ``body()`` (made anew for a retry): the object appears whole."""
        await self.client.request("PutObject", "PUT", key, body=body, length=length)

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: Callable[[], IBodyProducer], length: int
    ) -> str:
        reply = await self.client.request(
            "UploadPart", "PUT", key, query=[("partNumber", str(number)), ("uploadId", upload_id)],
            body=body, length=length,
        )
        etag = reply.header("ETag")
        if not etag:
            raise S3Error("UploadPart", key, reply.status, "", "reply without an ETag")
        return etag

    async def copy_part(self, key: str, upload_id: str, number: int, source: str, first: int, last: int) -> str:
        reply = await self.client.request(
            "UploadPartCopy", "PUT", key, query=[("partNumber", str(number)), ("uploadId", upload_id)],
            headers={
                "x-amz-copy-source": self.client.copy_source(source),
                "x-amz-copy-source-range": f"bytes={first}-{last}",
            },
            errors_in_body=True,
        )
        return parse_copy_etag(reply.body)

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        parts: list[Part] = []
        marker: int | None = None
        while True:
            query = [("uploadId", upload_id)] + ([("part-number-marker", str(marker))] if marker else [])
            page = parse_parts((await self.client.request("ListParts", "GET", key, query=query)).body)
            parts.extend(page.parts)
            if page.next_marker is None:
                return parts
            marker = page.next_marker

    async def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        await self.client.request(
            "CompleteMultipartUpload", "POST", key, query=[("uploadId", upload_id)], body=complete_body(parts),
            headers={"Content-Type": "application/xml"}, errors_in_body=True,
        )

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort an upload; one already gone is fine."""
        try:
            await self.client.request(
                "AbortMultipartUpload", "DELETE", key, query=[("uploadId", upload_id)], ok=(200, 204)
            )
        except S3Error as error:
            if not _optional(error, "NoSuchUpload"):
                raise

    async def abandon(self, key: str, upload_id: str) -> None:
        """Abort an upload whose object will not be made, even as the caller is being cancelled
        (its client left, and Klein cancels the handler): the abort goes on by itself. Its own
        failure is dropped: the caller's matters, and a lifecycle rule or ``delete`` of the
        repository removes what an orphan upload holds."""
        aborting = Deferred.fromCoroutine(self.abort(key, upload_id))
        aborting.addErrback(lambda _: None)
        done: Deferred[None] = Deferred()
        aborting.addBoth(lambda _: None if done.called else done.callback(None))
        await done

    async def list_uploads(self, prefix: str) -> list[PendingUpload]:
        uploads: list[PendingUpload] = []
        markers: list[tuple[str, str]] = []
        while True:
            query: list[tuple[str, Any]] = [("uploads", ""), ("prefix", prefix), ("encoding-type", "url")] + markers
            page = parse_uploads(
                (await self.client.request("ListMultipartUploads", "GET", None, query=query)).body, url_encoded=True
            )
            uploads.extend(page.uploads)
            if page.next_key_marker is None:
                return uploads
            markers = [("key-marker", page.next_key_marker)]
            if page.next_upload_id_marker:
                markers.append(("upload-id-marker", page.next_upload_id_marker))



@attrs.define
class UploadInProgress:
    """The multipart upload one :meth:`S3Bucket.parts` block sends parts to."""

    bucket: S3Bucket
    key: str
    upload_id: str | None
    #: Whether the block created the upload (so it is the block's to abandon when it fails).
    made: bool = False

    async def ensure(self) -> str:
        """The upload's id, created now if the block has none yet."""
        if self.upload_id is None:
            self.upload_id = await self.bucket.create_upload(self.key)
            self.made = True
        return self.upload_id
