"""The S3 driver: :class:`IStorageDriver` over one bucket, with zot's key layout.

Keys are zot's, so a bucket written by zot is served by zotpy and the other way round. zot builds
its image store on ``storageDriver.rootdirectory`` *and* hands the same ``rootdirectory`` to
distribution's S3 driver, which prefixes it again: with ``"rootdirectory": "/zot"`` zot's
index of ``library/alpine`` is at ``zot/zot/library/alpine/index.json`` (see zot issue 4336, where a
maintainer calls the doubled prefix expected). zotpy uses the same doubled prefix; without a
``rootdirectory`` keys start at the bucket's root, as with zot.

How appends, uploads and commits map onto S3 is :mod:`zotpy.storage.s3.multipart`'s story; streaming is
:mod:`zotpy.storage.s3.stream`'s; the wire (signing, retries, error mapping) is :mod:`zotpy.storage.s3.client`'s. Objects appear
atomically (a PUT, a copy or a multipart completion is all-or-nothing in S3); ``move`` is a copy then
a delete, so a crash between them leaves the source behind, never a partial destination.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections import OrderedDict
from typing import Any, BinaryIO, Coroutine, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IResponse
from zope.interface import implementer

from zotpy.oci.digest import Hasher
from zotpy.storage.driver import (
    ContentMismatch,
    FileInfo,
    IByteReader,
    IStorageDriver,
    IStreamedSource,
    PathNotFound,
    Source,
    check_path,
)
from zotpy.storage.s3.bucket import MAX_PART, MIN_PART, S3Bucket, split_ranges
from zotpy.storage.s3.client import S3Client, S3Error
from zotpy.storage.s3.settings import S3Settings
from zotpy.storage.s3.stream import HashingSource, S3Reader, WindowBody, discard, hash_response, opened_size
from zotpy.storage.s3.multipart import META_UPLOAD, Appender, ObjectState
from zotpy.storage.streamed import StreamedPart, is_streamed, spool

T = TypeVar("T")


def key_prefix(root_directory: str) -> str:
    """The prefix of every key for a ``rootdirectory``: doubled, as zot writes it (module docstring)."""
    inner = root_directory.strip("/")
    return f"{inner}/{inner}/" if inner else ""


def _deferred(coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
    return Deferred.fromCoroutine(coroutine)


def _spool(source: BinaryIO) -> BinaryIO:
    """A seekable copy of a stream that is not (request bodies are: this is for other callers)."""
    if source.seekable():
        return source
    copy = tempfile.TemporaryFile()
    shutil.copyfileobj(source, copy, 1024 * 1024)
    copy.seek(0)
    return copy


@implementer(IStorageDriver)
class S3Driver:
    """Objects are S3 objects under :func:`key_prefix`; directories are key prefixes."""

    #: The largest object :meth:`write` sends in one PUT (S3's limit); larger ones go in parts.
    largest_put = MAX_PART
    #: How long the state a size check read may stand in for the HEAD of the step after it.
    reuse_seconds = 0.5
    #: How long a presigned blob URL (:meth:`redirect_url`) stays valid: distribution's S3 driver's
    #: 20 minutes, which zot's ``redirectBlobURL`` uses; long enough to start a large download
    #: behind a slow client, short enough that a leaked URL soon stops working.
    redirect_seconds = 20 * 60

    def __init__(self, settings: S3Settings, reactor: Any, threadpool: ThreadPool, client: S3Client | None = None):
        self.settings = settings
        self.reactor = reactor
        self.threadpool = threadpool
        self.client = client or S3Client(settings, reactor, threadpool)
        self.bucket = S3Bucket(self.client)
        self.appender = Appender(self.bucket, reactor, threadpool)
        self.prefix = key_prefix(settings.root_directory)
        #: What :meth:`size` last read of each path: the registry checks an upload session's size
        #: and then appends to it, or commits it, under its lock; the append or the copy takes the
        #: state from here, once, instead of asking S3 again. Writes to a path drop its entry.
        self._checked: OrderedDict[str, tuple[float, ObjectState]] = OrderedDict()

    def _key(self, path: str) -> str:
        return self.prefix + check_path(path)

    async def _state(self, path: str, reuse: bool = False) -> ObjectState:
        """The object's state from one HEAD; PathNotFound if there is no object at ``path``. With
        ``reuse``, the state a size check has just read, if there is one (see ``_checked``)."""
        checked = self._checked.pop(path, None) if reuse else None
        if checked is not None and self.reactor.seconds() - checked[0] <= self.reuse_seconds:
            return checked[1]
        key = self._key(path)
        reply = await self.bucket.head(key)
        if reply is None:
            raise PathNotFound(path)
        return ObjectState.from_headers(reply.headers, key)

    async def _plain(self, path: str) -> ObjectState:
        """The object's state after sealing any append in progress (to read or copy it whole)."""
        state = await self._state(path, reuse=True)
        if state.pending:
            await self.appender.seal(self._key(path), state)
            state = ObjectState(state.size)
        return state

    # -- IStorageDriver ----------------------------------------------------------------------------------

    def get_content(self, path: str) -> Deferred[bytes]:
        return _deferred(self._get_content(path))

    async def _get_content(self, path: str) -> bytes:
        reply = await self.bucket.get(self._key(path))
        if reply is None:
            raise PathNotFound(path)
        if reply.header(META_UPLOAD) is None:
            return reply.body
        await self._plain(path)
        return await self._get_content(path)

    def put_content(self, path: str, data: bytes) -> Deferred[None]:
        self._checked.pop(path, None)
        return _deferred(self.bucket.put(self._key(path), data))

    def stat(self, path: str) -> Deferred[FileInfo]:
        return _deferred(self._stat(path))

    async def _stat(self, path: str) -> FileInfo:
        try:
            return FileInfo(path, (await self._state(path)).size, False)
        except PathNotFound:
            page = await self.bucket.list_page(self._key(path) + "/", None, None, limit=1)
            if page.objects:
                return FileInfo(path, 0, True)
            raise

    def size(self, path: str) -> Deferred[int]:
        return _deferred(self._size(path))

    async def _size(self, path: str) -> int:
        state = await self._state(path)
        self._checked[path] = (self.reactor.seconds(), state)
        while len(self._checked) > 64:
            self._checked.popitem(last=False)
        return state.size

    def list(self, path: str) -> Deferred[list[FileInfo]]:
        return _deferred(self._list(path))

    async def _list(self, path: str) -> list[FileInfo]:
        """Immediate children. An object being appended to is listed with the bytes of its tail
        only (a listing has no metadata); :meth:`stat` gives its full size."""
        prefix = self._key(path) + "/" if path else self.prefix
        objects, prefixes = await self.bucket.list_objects(prefix, "/")
        base = f"{path}/" if path else ""
        children = [
            FileInfo(base + entry.key[len(prefix):], entry.size, False, entry.modified)
            for entry in objects
            if entry.key != prefix and not entry.key.endswith("/")  # folder markers some tools create
        ]
        children += [FileInfo(base + common[len(prefix):].rstrip("/"), 0, True) for common in prefixes]
        if not children:
            raise PathNotFound(path)
        return children

    def append(self, path: str, source: Source, hasher: Hasher | None = None) -> Deferred[int]:
        return _deferred(self._append(path, source, hasher))

    async def _append(self, path: str, source: Source, hasher: Hasher | None) -> int:
        key = self._key(path)
        try:
            state: ObjectState | None = await self._state(path, reuse=True)
        except PathNotFound:
            state = None
        if is_streamed(source):
            if self.appender.streams(state, source.length):
                return await self.appender.append_streamed(key, state, source, hasher)
            if source.length is None:
                return await self.appender.append_gathered(key, state, source, hasher)
            source = await spool(source, self.reactor, self.threadpool)

        def wrap() -> HashingSource:
            return HashingSource(_spool(source), hasher)

        wrapped = await deferToThreadPool(self.reactor, self.threadpool, wrap)
        return await self.appender.append(key, state, wrapped)

    def write(self, path: str, source: Source, hasher: Hasher, expected: str) -> Deferred[int]:
        return _deferred(self._write(path, source, hasher, expected))

    async def _write(self, path: str, source: Source, hasher: Hasher, expected: str) -> int:
        """A body spooled (or small) is hashed first and nothing reaches S3 unless it matches.
        Then one PUT writes it at its key, where it appears whole and at once: no upload object,
        no copy, no multipart upload to create and complete. Beyond S3's largest PUT, a multipart
        upload at the key, completed once every part was sent (aborted otherwise). A body still
        arriving goes on to S3 as it comes: :meth:`_write_streamed`."""
        self._checked.pop(path, None)
        if is_streamed(source):
            if source.length is not None and 0 < source.length <= self.largest_put:
                return await self._write_streamed(path, source, hasher, expected)
            source = await spool(source, self.reactor, self.threadpool)
        key = self._key(path)

        def verified() -> HashingSource:
            body = HashingSource(_spool(source), hasher)
            body.hash_through()
            if hasher.hexdigest() != expected:
                raise ContentMismatch(path, hasher.hexdigest())
            return body

        body = await deferToThreadPool(self.reactor, self.threadpool, verified)

        def window(offset: int = 0, size: int = body.length) -> WindowBody:
            return WindowBody(self.reactor, self.threadpool, body, offset, size)

        if body.length < MIN_PART:
            data = await deferToThreadPool(self.reactor, self.threadpool, body.read_at, 0, body.length)
            await self.bucket.put(key, data)
            return body.length
        if body.length <= self.largest_put:
            await self.bucket.put_stream(key, window, body.length)
            return body.length

        async def send(upload_id: str, number: int, first: int, last: int) -> str:
            part = functools.partial(window, first, last - first + 1)
            return await self.bucket.upload_part(key, upload_id, number, part, last - first + 1)

        await self.bucket.multipart(key, split_ranges(body.length, self.largest_put), send)
        return body.length

    async def _write_streamed(self, path: str, source: IStreamedSource, hasher: Hasher, expected: str) -> int:
        """The body is sent as it arrives, one PUT at its key, hashed on the way; its last byte is
        sent only once the digest matched. S3 creates nothing from a PUT cut short of its
        Content-Length, so the object never appears with other bytes, and there is nothing to
        clean up (a multipart upload, which this was before, needed two more calls and an abort,
        and was left behind by a crash)."""
        assert source.length is not None

        def verify() -> None:
            if hasher.hexdigest() != expected:
                raise ContentMismatch(path, hasher.hexdigest())

        body = StreamedPart(source, source.length, self.reactor, self.threadpool, hasher, verify)
        await body.send(lambda once: self.bucket.put_stream(self._key(path), once, source.length))
        return source.length

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> Deferred[IByteReader]:
        return _deferred(self._reader(path, offset, length))

    async def _reader(self, path: str, offset: int, length: int | None) -> IByteReader:
        """The GET is sent at once, its headers telling the object's size: one request, not a HEAD
        and then a GET. An object being appended to is sealed first (then read as a whole object)."""
        key = self._key(path)

        async def get_range(first: int, last: int) -> IResponse:
            return await self.bucket.get_range(key, first, last)

        last = None if length is None else offset + length - 1
        try:
            response: IResponse | None = await self.bucket.open(key, offset, last)
        except S3Error as error:
            if error.not_found:
                raise PathNotFound(path) from None
            if error.status != 416:
                raise
            response = None  # nothing at or after ``offset``: the size comes from a HEAD below
        if response is not None:
            size = opened_size(response)
            if size is not None and not response.headers.hasHeader(META_UPLOAD):
                return S3Reader(size, offset, get_range, self.reactor, response)
            discard(response)
        state = await self._plain(path)
        return S3Reader(state.size, offset, get_range, self.reactor)

    def move(self, source: str, destination: str) -> Deferred[None]:
        return _deferred(self._move(source, destination))

    async def _move(self, source: str, destination: str) -> None:
        await self._copy(source, destination)
        await self.bucket.delete(self._key(source))

    def copy(self, source: str, destination: str) -> Deferred[None]:
        return _deferred(self._copy(source, destination))

    async def _copy(self, source: str, destination: str) -> None:
        self._checked.pop(destination, None)
        state = await self._plain(source)
        try:
            await self.bucket.copy(self._key(source), self._key(destination), state.size)
        except S3Error as error:
            if error.not_found:
                raise PathNotFound(source) from None
            raise

    def delete(self, path: str) -> Deferred[None]:
        return _deferred(self._delete(path))

    async def _delete(self, path: str) -> None:
        key = self._key(path)
        try:
            state = await self._state(path, reuse=True)
        except PathNotFound:
            await self._delete_tree(path, key + "/")
            return
        await self.bucket.delete(key)
        if state.upload_id is not None:
            await self.bucket.abort(key, state.upload_id)

    async def _delete_tree(self, path: str, prefix: str) -> None:
        keys = await self.bucket.list_tree(prefix)
        if not keys:
            raise PathNotFound(path)
        await self.bucket.delete_many(keys)
        for upload in await self.bucket.list_uploads(prefix):
            await self.bucket.abort(upload.key, upload.upload_id)

    def hash(self, path: str, algorithm: str) -> Deferred[str]:
        return _deferred(self._hash(path, algorithm))

    async def _hash(self, path: str, algorithm: str) -> str:
        await self._plain(path)
        try:
            response = await self.bucket.get_stream(self._key(path))
        except S3Error as error:
            if error.not_found:
                raise PathNotFound(path) from None
            raise
        return await hash_response(self.reactor, self.threadpool, response, algorithm)

    # -- housekeeping (garbage collection) ------------------------------------------------------------------

    def multipart_uploads(self, path: str) -> Deferred[list[tuple[str, str, float | None]]]:
        """The multipart uploads in progress under directory ``path``: (path, upload id, initiated).
        Garbage collection aborts those an interrupted write left behind."""
        return _deferred(self._multipart_uploads(path))

    async def _multipart_uploads(self, path: str) -> list[tuple[str, str, float | None]]:
        prefix = self._key(path) + "/"
        return [
            (upload.key[len(self.prefix):], upload.upload_id, upload.initiated)
            for upload in await self.bucket.list_uploads(prefix)
        ]

    def delete_many(self, paths: list[str]) -> Deferred[None]:
        """Delete objects (not directories) in DeleteObjects batches; a missing one is no error.
        Garbage collection removes a repository's unreferenced blobs this way."""
        for path in paths:
            self._checked.pop(path, None)
        return _deferred(self.bucket.delete_many([self._key(path) for path in paths]))

    def abort_multipart(self, path: str, upload_id: str) -> Deferred[None]:
        self._checked.pop(path, None)
        return _deferred(self.bucket.abort(self._key(path), upload_id))

    def redirect_url(self, path: str) -> Deferred[str | None]:
        """A presigned GET of the object, valid for :attr:`redirect_seconds` (``storage.redirectBlobURL``)."""
        return _deferred(self.client.presigned_get(self._key(path), self.redirect_seconds))

    def check(self) -> Deferred[None]:
        """Readiness: the bucket answers a HeadBucket with these credentials."""
        return _deferred(self.bucket.check())

    def close(self) -> Deferred[None]:
        """Close the pooled connections (tests, and the service stopping)."""
        return self.client.close()

    def __repr__(self) -> str:
        return f"S3Driver(bucket={self.settings.bucket!r}, prefix={self.prefix!r})"

