"""The local filesystem driver: the embedded default.

Bulk work (copying request bodies into upload files, hashing, copying blobs)
runs in a thread pool so the reactor keeps serving; small metadata operations
(stat, rename, a directory listing) are cheap enough to run inline except where
they may touch many files. Every object appears atomically: written to a
temporary file in the same directory, flushed to disk, then renamed.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import shutil
import stat as stat_module
import tempfile
from typing import BinaryIO, Callable, TypeVar

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer, IPullProducer, IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
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
    StorageError,
    check_path,
)
from zotpy.storage.streamed import is_streamed, read_batch

T = TypeVar("T")

COPY_CHUNK = 1024 * 1024
SEND_CHUNK = 256 * 1024


@attrs.define(eq=False)
class _Temporary:
    """A temporary sibling of ``target``, written, flushed to disk, then renamed over ``target``
    (or removed): how every object appears whole. Its methods run in the thread pool."""

    target: str
    path: str
    stream: BinaryIO

    @classmethod
    def beside(cls, target: str) -> _Temporary:
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        return cls(target, path, os.fdopen(fd, "wb"))

    def commit(self) -> int:
        """Make it ``target``; the size written."""
        self.stream.flush()
        os.fsync(self.stream.fileno())
        size = self.stream.tell()
        self.stream.close()
        os.replace(self.path, self.target)
        return size

    def discard(self) -> None:
        self.stream.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _write_atomically(target: str, write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` into a temporary sibling of ``target``, fsync, then rename over ``target``."""
    temporary = _Temporary.beside(target)
    try:
        write(temporary.stream)
        temporary.commit()
    except BaseException:
        temporary.discard()
        raise


@implementer(IPullProducer, IByteReader)
@attrs.define(eq=False)
class _FileReader:
    """Streams part of an open file into a consumer, one chunk each time the consumer asks."""

    stream: BinaryIO
    size: int
    _remaining: int = 0
    _consumer: IConsumer | None = None
    _done: Deferred[None] | None = None

    def send(self, consumer: IConsumer, length: int) -> Deferred[None]:
        self._remaining = length
        self._consumer = consumer
        self._done = Deferred()
        if length == 0:
            self._finish(None)
            return self._done
        consumer.registerProducer(self, False)
        return self._done

    def resumeProducing(self) -> None:
        if self._consumer is None:
            return
        try:
            chunk = self.stream.read(min(SEND_CHUNK, self._remaining))
        except OSError as error:
            self._finish(StorageError(f"read failed: {error}"))
            return
        if not chunk:
            self._finish(StorageError("object is shorter than its recorded size"))
            return
        self._remaining -= len(chunk)
        self._consumer.write(chunk)
        if self._remaining <= 0:
            self._finish(None)

    def stopProducing(self) -> None:
        self._finish(StorageError("the consumer stopped reading"), unregister=False)

    def _finish(self, failure: Exception | None, unregister: bool = True) -> None:
        consumer, done = self._consumer, self._done
        self._consumer = None
        self.close()
        if consumer is not None and unregister:
            consumer.unregisterProducer()
        if done is not None and not done.called:
            if failure is None:
                done.callback(None)
            else:
                done.errback(failure)

    def close(self) -> None:
        self.stream.close()


@implementer(IStorageDriver)
@attrs.define(eq=False)
class LocalDriver:
    """Objects are files under ``root``; directories are created on demand."""

    root: str
    reactor: IReactorThreads
    threadpool: ThreadPool

    def _full(self, path: str) -> str:
        return os.path.join(self.root, check_path(path))

    def _in_thread(self, path: str, work: Callable[[], T]) -> Deferred[T]:
        return deferToThreadPool(self.reactor, self.threadpool, _translate, path, work)

    def get_content(self, path: str) -> Deferred[bytes]:
        full = self._full(path)

        def read() -> bytes:
            with open(full, "rb") as stream:
                return stream.read()

        return self._in_thread(path, read)

    def put_content(self, path: str, data: bytes) -> Deferred[None]:
        full = self._full(path)
        return self._in_thread(path, lambda: _write_atomically(full, lambda s: s.write(data)))

    def check(self) -> Deferred[None]:
        """The root can be listed (in the pool: a stale NFS mount blocks); an empty registry whose
        root was not created yet is fine."""
        return self.list("").addCallbacks(lambda _: None, lambda failure: failure.trap(PathNotFound) and None)

    def close(self) -> Deferred[None]:
        """Nothing is held open between calls."""
        return succeed(None)

    def stat(self, path: str) -> Deferred[FileInfo]:
        full = self._full(path)

        def stat() -> FileInfo:
            result = os.stat(full)
            return FileInfo(path, result.st_size, stat_module.S_ISDIR(result.st_mode), result.st_mtime)

        return _run_now(path, stat)

    def size(self, path: str) -> Deferred[int]:
        full = self._full(path)

        def size() -> int:
            result = os.stat(full)
            if stat_module.S_ISDIR(result.st_mode):
                raise PathNotFound(path)
            return result.st_size

        return _run_now(path, size)

    def list(self, path: str) -> Deferred[list[FileInfo]]:
        full = self._full(path) if path else self.root
        prefix = f"{path}/" if path else ""

        def children() -> list[FileInfo]:
            with os.scandir(full) as entries:
                return [_info(prefix + entry.name, entry) for entry in entries]

        return self._in_thread(path, children)

    def append(self, path: str, source: Source, hasher: Hasher | None = None) -> Deferred[int]:
        if is_streamed(source):
            return Deferred.fromCoroutine(self._append_streamed(path, source, hasher))
        full = self._full(path)

        def copy() -> int:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "ab") as target:
                while chunk := source.read(COPY_CHUNK):
                    target.write(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
                return target.tell()

        return self._in_thread(path, copy)

    async def _append_streamed(self, path: str, source: IStreamedSource, hasher: Hasher | None) -> int:
        """Written batch by batch as the body arrives; cut back to the old end if it stops short."""
        full = self._full(path)

        def open_end() -> BinaryIO:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            return open(full, "ab")  # positioned at the end

        target = await self._in_thread(path, open_end)
        start = target.tell()
        try:
            while batch := await read_batch(source):
                await self._in_thread(path, functools.partial(_write_hashed, target, batch, hasher))
            return await self._in_thread(path, functools.partial(_close, target))
        except BaseException:
            await self._in_thread(path, functools.partial(_close, target, start))
            raise

    async def _write_streamed(self, path: str, source: IStreamedSource, hasher: Hasher, expected: str) -> int:
        """Written beside its path batch by batch as the body arrives, hashed on the way, and
        renamed into place only if the digest matches."""
        full = self._full(path)
        temporary = await self._in_thread(path, functools.partial(_Temporary.beside, full))
        try:
            while batch := await read_batch(source):
                await self._in_thread(path, functools.partial(_write_hashed, temporary.stream, batch, hasher))
            if hasher.hexdigest() != expected:
                raise ContentMismatch(path, hasher.hexdigest())
            return await self._in_thread(path, temporary.commit)
        except BaseException:
            await self._in_thread(path, temporary.discard)
            raise

    def write(self, path: str, source: Source, hasher: Hasher, expected: str) -> Deferred[int]:
        if is_streamed(source):
            return Deferred.fromCoroutine(self._write_streamed(path, source, hasher, expected))
        full = self._full(path)

        def fill(target: BinaryIO) -> None:
            while chunk := source.read(COPY_CHUNK):
                target.write(chunk)
                hasher.update(chunk)
            if hasher.hexdigest() != expected:  # before the rename: the temporary file is removed
                raise ContentMismatch(path, hasher.hexdigest())

        def write() -> int:
            _write_atomically(full, fill)
            return os.stat(full).st_size

        return self._in_thread(path, write)

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> Deferred[IByteReader]:
        full = self._full(path)

        def open_at() -> IByteReader:
            stream = open(full, "rb")
            size = os.fstat(stream.fileno()).st_size
            stream.seek(offset)
            return _FileReader(stream, size)

        return _run_now(path, open_at)

    def move(self, source: str, destination: str) -> Deferred[None]:
        source_full, destination_full = self._full(source), self._full(destination)

        def move() -> None:
            os.makedirs(os.path.dirname(destination_full), exist_ok=True)
            os.replace(source_full, destination_full)

        return _run_now(source, move)

    def copy(self, source: str, destination: str) -> Deferred[None]:
        source_full, destination_full = self._full(source), self._full(destination)

        def copy() -> None:
            # Blobs are immutable, so a hard link is a complete, atomic copy.
            os.makedirs(os.path.dirname(destination_full), exist_ok=True)
            temporary = os.path.join(os.path.dirname(destination_full), f".tmp-link-{os.urandom(8).hex()}")
            try:
                os.link(source_full, temporary)
            except OSError as error:
                if error.errno in (errno.ENOENT,):
                    raise
                with open(source_full, "rb") as stream:
                    _write_atomically(destination_full, lambda target: shutil.copyfileobj(stream, target, COPY_CHUNK))
                return
            # A copy is new: its age (what garbage collection measures gcDelay from) starts now.
            # The link shares the source's inode, so the source looks younger too: collected later.
            os.utime(temporary)
            os.replace(temporary, destination_full)

        return self._in_thread(source, copy)

    def delete(self, path: str) -> Deferred[None]:
        full = self._full(path)

        def delete() -> None:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)

        return self._in_thread(path, delete)

    def delete_many(self, paths: list[str]) -> Deferred[None]:
        """One thread hop for the lot: a file already gone is no error."""
        full = [self._full(path) for path in paths]

        def delete() -> None:
            for each in full:
                try:
                    os.unlink(each)
                except FileNotFoundError:
                    pass

        return self._in_thread(",".join(paths[:3]), delete)

    def multipart_uploads(self, path: str) -> Deferred[list[tuple[str, str, float | None]]]:
        """A file on disk is written in place: there are no multipart uploads to list."""
        return succeed([])

    def abort_multipart(self, path: str, upload_id: str) -> Deferred[None]:
        return succeed(None)  # none is ever listed (above): gone already

    def redirect_url(self, path: str) -> Deferred[str | None]:
        """A file on disk has no URL of its own: the registry sends its bytes."""
        return succeed(None)

    def hash(self, path: str, algorithm: str) -> Deferred[str]:
        full = self._full(path)

        def digest() -> str:
            hasher = hashlib.new(algorithm)
            with open(full, "rb") as stream:
                while chunk := stream.read(COPY_CHUNK):
                    hasher.update(chunk)
            return hasher.hexdigest()

        return self._in_thread(path, digest)


def _write_hashed(target: BinaryIO, data: bytes, hasher: Hasher | None) -> None:
    target.write(data)
    if hasher is not None:
        hasher.update(data)


def _close(target: BinaryIO, size: int | None = None) -> int:
    """Close an appended file, first cut back to ``size`` if given; its size."""
    try:
        if size is not None:
            target.truncate(size)
        target.flush()
        return os.fstat(target.fileno()).st_size
    finally:
        target.close()


def _translate(path: str, work: Callable[[], T]) -> T:
    """Run ``work``, turning OS errors into the driver's typed errors."""
    try:
        return work()
    except FileNotFoundError:
        raise PathNotFound(path) from None
    except NotADirectoryError:
        raise PathNotFound(path) from None
    except OSError as error:
        raise StorageError(f"{path}: {error.strerror or error}") from error


def _run_now(path: str, work: Callable[[], T]) -> Deferred[T]:
    """Run a cheap metadata operation inline, with the same error translation as threaded work."""
    try:
        return succeed(_translate(path, work))
    except StorageError as error:
        return fail(error)


def _info(path: str, entry: os.DirEntry[str]) -> FileInfo:
    if entry.is_dir():
        return FileInfo(path, 0, True)
    result = entry.stat()
    return FileInfo(path, result.st_size, False, result.st_mtime)
