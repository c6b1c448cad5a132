"""Appendable objects on S3: OCI upload sessions as S3 multipart uploads, with their state in S3.

S3 objects cannot grow, and every part of a multipart upload but the last must hold at least
5 MiB, while OCI clients may send chunks of any size. An object being appended to is therefore:

- the *parts* of a multipart upload for its own key, each at least 5 MiB, holding its first bytes;
- the object at the key itself, the *tail*: the remainder (under 5 MiB) not yet in a part, with
  user metadata naming the upload, how many parts it counts and how many bytes they hold.

Rewriting the tail (one PUT) is the commit point of every append: parts sent by an append that
failed before it are beyond the recorded count, ignored and overwritten later. So the state is
always whole in S3, a new process finds it with a single HEAD (stat gives the right size, further
appends continue), and nothing about an upload needs to be kept in memory. An object without that
metadata is plain: small appends just rewrite it whole while it stays under 5 MiB.

Reading an object with parts (to hash or copy it at commit) first *seals* it: the tail becomes the
last part (a server-side UploadPartCopy) and CompleteMultipartUpload turns the key into the whole,
plain object, atomically. Memory stays bounded: a tail is under 5 MiB, parts stream from the
spooled request body, or straight from the client while it arrives when the chunk can be a part
by itself (:meth:`Appender.append_streamed`).
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer

from zotpy.oci.digest import Hasher
from zotpy.storage.driver import IStreamedSource, StorageError
from zotpy.storage.s3.bucket import MAX_PART, MAX_PARTS, MIN_PART, S3Bucket, UploadInProgress, split_ranges
from zotpy.storage.s3.client import MemoryBody, S3Error
from zotpy.storage.s3.stream import HashingSource, WindowBody
from zotpy.storage.streamed import HashFeed, StreamedPart, read_batch

#: The parts a chunk of undeclared length is cut into, gathered in memory while it arrives.
GATHERED_PART = 8 * 1024 * 1024

META_UPLOAD = "x-amz-meta-zotpy-upload-id"
META_PARTS = "x-amz-meta-zotpy-parts"
META_PARTS_SIZE = "x-amz-meta-zotpy-parts-size"


@attrs.frozen
class ObjectState:
    """What one HEAD tells about an object: ``stored`` bytes at the key itself and, while an
    append is in progress, the multipart upload holding the ``parts_size`` bytes before them."""

    stored: int
    upload_id: str | None = None
    parts: int = 0
    parts_size: int = 0

    @property
    def size(self) -> int:
        return self.parts_size + self.stored

    @property
    def pending(self) -> bool:
        return self.upload_id is not None

    def metadata(self) -> dict[str, str]:
        if self.upload_id is None:
            return {}
        return {META_UPLOAD: self.upload_id, META_PARTS: str(self.parts), META_PARTS_SIZE: str(self.parts_size)}

    @classmethod
    def from_headers(cls, headers: Headers, key: str) -> ObjectState:
        def one(name: str) -> str | None:
            values = headers.getRawHeaders(name)
            return values[0] if values else None

        stored = int(one("Content-Length") or 0)
        upload_id = one(META_UPLOAD)
        if upload_id is None:
            return cls(stored)
        try:
            return cls(stored, upload_id, int(one(META_PARTS) or ""), int(one(META_PARTS_SIZE) or ""))
        except ValueError:
            raise StorageError(f"{key}: unreadable append state in its metadata") from None


@attrs.define
class Appender:
    """Appends and seals objects of one bucket; ``reactor`` and ``threadpool`` read request bodies."""

    bucket: S3Bucket
    reactor: Any
    threadpool: ThreadPool

    async def _read(self, source: HashingSource, offset: int, size: int) -> bytes:
        if size <= 0:
            return b""
        data = await deferToThreadPool(self.reactor, self.threadpool, source.read_at, offset, size)
        if len(data) != size:
            raise StorageError("the request body is shorter than it said")
        return data

    async def _stored_bytes(self, key: str, state: ObjectState) -> bytes:
        """The bytes at the key itself (under 5 MiB, the callers make sure)."""
        if not state.stored:
            return b""
        reply = await self.bucket.get(key)
        if reply is None or len(reply.body) != state.stored:
            raise StorageError(f"{key} changed while it was being appended to")
        return reply.body

    async def append(self, key: str, state: ObjectState | None, source: HashingSource) -> int:
        """Append all of ``source`` to the object at ``key`` (``state`` None: it does not exist yet);
        return the new size."""
        state = state or ObjectState(0)
        if state.stored + source.length < MIN_PART:
            data = await self._stored_bytes(key, state) + await self._read(source, 0, source.length)
            await self.bucket.put(key, data, state.metadata())
            return state.parts_size + len(data)

        async with self.bucket.parts(key, state.upload_id) as upload:
            parts, parts_size = await self._parts_so_far(key, state, upload)
            prefix = b"" if state.stored >= MIN_PART else await self._stored_bytes(key, state)

            position = 0
            while len(prefix) + source.length - position >= MIN_PART:
                take = min(source.length - position, MAX_PART - len(prefix))
                parts += 1
                if parts > MAX_PARTS:
                    raise StorageError(f"{key}: the upload would exceed S3's {MAX_PARTS} parts; send larger chunks")

                def body(offset: int = position, size: int = take, head: bytes = prefix) -> WindowBody:
                    return WindowBody(self.reactor, self.threadpool, source, offset, size, head)

                await self.bucket.upload_part(key, await upload.ensure(), parts, body, len(prefix) + take)
                parts_size += len(prefix) + take
                position += take
                prefix = b""

            tail = prefix + await self._read(source, position, source.length - position)
        # The tail's PUT commits the append: outside the block, which would abandon an upload it made
        # on failure, and a PUT that failed only as far as this process knows may have recorded it.
        await self.bucket.put(key, tail, ObjectState(len(tail), upload.upload_id, parts, parts_size).metadata())
        return parts_size + len(tail)

    async def _parts_so_far(self, key: str, state: ObjectState, upload: UploadInProgress) -> tuple[int, int]:
        """How many parts and bytes the upload holds before the tail. A plain object of 5 MiB or
        more appended to first has its bytes made parts, server-side."""
        upload_id = await upload.ensure()
        parts, parts_size = state.parts, state.parts_size
        if state.stored >= MIN_PART:
            for first, last in split_ranges(state.stored):
                parts += 1
                await self.bucket.copy_part(key, upload_id, parts, key, first, last)
            parts_size += state.stored
        return parts, parts_size

    @staticmethod
    def streams(state: ObjectState | None, length: int | None) -> bool:
        """Whether a chunk still arriving can be appended without spooling it: as one whole part,
        so it must be a valid part (5 MiB to 5 GiB) with no tail under 5 MiB to go before it."""
        stored = state.stored if state is not None else 0
        parts = state.parts if state is not None else 0
        if length is None:  # a part's length goes before its first byte
            return False
        return MIN_PART <= length <= MAX_PART and (stored == 0 or stored >= MIN_PART) and parts < MAX_PARTS

    async def append_streamed(
        self, key: str, state: ObjectState | None, source: IStreamedSource, hasher: Hasher | None
    ) -> int:
        """Append a chunk that :meth:`streams` accepts: it goes to S3 as it arrives, as the next
        part, then the (empty) tail records it. If the chunk stops short, the tail is not
        rewritten and the part sent is beyond the recorded count: the object is as it was."""
        state = state or ObjectState(0)
        async with self.bucket.parts(key, state.upload_id) as upload:
            parts, parts_size = await self._parts_so_far(key, state, upload)
            part = StreamedPart(source, source.length, self.reactor, self.threadpool, hasher)
            upload_id = await upload.ensure()
            await part.send(lambda body: self.bucket.upload_part(key, upload_id, parts + 1, body, source.length))
        after = ObjectState(0, upload_id, parts + 1, parts_size + source.length)
        await self.bucket.put(key, b"", after.metadata())
        return after.size

    async def append_gathered(
        self, key: str, state: ObjectState | None, source: IStreamedSource, hasher: Hasher | None
    ) -> int:
        """Append a chunk of a length nobody declared (chunked transfer coding, as docker and
        containerd send a layer) while it arrives: gathered in memory into parts of
        :data:`GATHERED_PART` bytes, each sent as soon as it is full; what is left at the end
        (under 5 MiB) is the new tail. The tail's PUT commits the append, as in :meth:`append`:
        parts sent before the body stopped short are beyond the recorded count."""
        state = state or ObjectState(0)
        parts, parts_size = state.parts, state.parts_size
        pending = bytearray()
        hashing = HashFeed(self.reactor, self.threadpool, hasher)
        async with self.bucket.parts(key, state.upload_id) as upload:
            if state.stored >= MIN_PART:  # a plain object's bytes become parts first
                parts, parts_size = await self._parts_so_far(key, state, upload)
            else:
                pending += await self._stored_bytes(key, state)
            while True:
                batch = await read_batch(source)
                if batch:
                    await hashing.feed(batch)
                    pending += batch
                while len(pending) >= GATHERED_PART or (not batch and len(pending) >= MIN_PART):
                    part = bytes(pending[:GATHERED_PART])
                    del pending[:GATHERED_PART]
                    parts += 1
                    if parts > MAX_PARTS:
                        raise StorageError(f"{key}: the upload would exceed S3's {MAX_PARTS} parts")
                    await self.bucket.upload_part(key, await upload.ensure(), parts, _in_memory(part), len(part))
                    parts_size += len(part)
                if not batch:
                    break
            await hashing.done()
        tail = bytes(pending)
        await self.bucket.put(key, tail, ObjectState(len(tail), upload.upload_id, parts, parts_size).metadata())
        return parts_size + len(tail)

    async def seal(self, key: str, state: ObjectState) -> None:
        """Make the object with parts at ``key`` a plain object holding all its bytes."""
        assert state.upload_id is not None
        listed = {part.number: part for part in await self.bucket.list_parts(key, state.upload_id)}
        chosen = [listed.get(number) for number in range(1, state.parts + 1)]
        if any(part is None for part in chosen) or sum(part.size for part in chosen if part) != state.parts_size:
            raise StorageError(f"{key}: the parts of its upload do not match its recorded state")
        parts = [(part.number, part.etag) for part in chosen if part]
        if state.stored:
            number = state.parts + 1
            parts.append((number, await self.bucket.copy_part(key, state.upload_id, number, key, 0, state.stored - 1)))
        try:
            await self.bucket.complete(key, state.upload_id, parts)
        except S3Error as error:
            # A retried completion whose first attempt went through: the object is already whole.
            if error.code != "NoSuchUpload" or not await self._is_sealed(key, state.size):
                raise

    async def _is_sealed(self, key: str, size: int) -> bool:
        reply = await self.bucket.head(key)
        if reply is None:
            return False
        now = ObjectState.from_headers(reply.headers, key)
        return not now.pending and now.size == size


def _in_memory(data: bytes) -> Callable[[], IBodyProducer]:
    """A part's body from memory, made anew for a retry."""
    return lambda: MemoryBody(data)
