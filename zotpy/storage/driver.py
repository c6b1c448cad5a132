"""The storage driver boundary: dumb byte storage with Deferred-returning verbs.

Modelled on CNCF distribution's ``StorageDriver``: the image store above knows
OCI semantics and nothing about disks or buckets; a driver knows bytes under
``/``-separated relative paths and nothing about OCI. Every verb returns a
Deferred so that a network-backed driver fits the same shape as the local one.
"""

from __future__ import annotations

import posixpath
from typing import BinaryIO

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from zope.interface import Attribute, Interface

from zotpy.oci.digest import Hasher


class StorageError(Exception):
    """A driver failed for a reason other than a missing path (I/O error, backend unreachable)."""


class StorageUnavailable(StorageError):
    """The backend did not answer (unreachable, timed out, or known to be down): worth retrying later.

    ``retry_after``: seconds a client is told to wait before it tries again."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PathNotFound(StorageError):
    """The path does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class ContentMismatch(StorageError):
    """A :meth:`IStorageDriver.write` whose bytes did not hash to the expected digest: nothing was stored."""

    def __init__(self, path: str, actual: str) -> None:
        super().__init__(f"{path}: the content hashes to {actual}")
        self.path = path
        self.actual = actual


class InvalidPath(StorageError):
    """A path that is not a clean relative path; never produced by the image store."""


@attrs.frozen
class FileInfo:
    path: str
    size: int
    is_dir: bool
    #: When the object was last written (POSIX seconds), where the backend says so in the same
    #: call; None when it does not. Garbage collection reads ages from it (``gcDelay``).
    modified: float | None = None


def check_path(path: str) -> str:
    """Refuse absolute paths, ``..`` and empty components: drivers never leave their root."""
    if (
        not path
        or path.startswith("/")
        or posixpath.normpath(path) != path
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise InvalidPath(path)
    return path


class IByteReader(Interface):
    """An open object, positioned at an offset, that streams into a consumer with backpressure."""

    size = Attribute("Total size of the object in bytes (not only what is left after the offset).")

    def send(consumer: IConsumer, length: int) -> Deferred[None]:
        """Write ``length`` bytes into ``consumer``, pausing when it asks; fire when all were written."""

    def close() -> None:
        """Release the object; safe to call more than once."""


class IStreamedSource(Interface):
    """Bytes read once, in order, while they arrive: a request body still coming in.

    A driver given one stores the bytes as they come (no spool, no second pass to hash them),
    or spools them first with :func:`zotpy.storage.streamed.spool` where it needs to read them
    more than once. Memory stays bounded: the source stops its sender while nobody reads.
    """

    length = Attribute("How many bytes it gives in all, declared before the first arrived; None if not declared.")

    def read() -> Deferred[bytes]:
        """The bytes that came since the last call, waiting for some; ``b""`` once all came.
        Fails with :class:`StorageError` when the sender went away before the end."""


Source = BinaryIO | IStreamedSource  # what write() and append() take


class IStorageDriver(Interface):
    """Byte storage addressed by relative ``/``-separated paths."""

    def get_content(path: str) -> Deferred[bytes]:
        """The whole content of a small object (index.json, a manifest). PathNotFound if missing."""

    def put_content(path: str, data: bytes) -> Deferred[None]:
        """Atomically create or replace a small object; readers see the old or the new bytes, never a mix."""

    def stat(path: str) -> Deferred[FileInfo]:
        """Size and kind of a path. PathNotFound if missing."""

    def size(path: str) -> Deferred[int]:
        """The size of the object at ``path``. PathNotFound if there is none, a directory included:
        cheaper than :meth:`stat` where that takes a second look (on S3, a LIST after the HEAD)."""

    def list(path: str) -> Deferred[list[FileInfo]]:
        """The immediate children of a directory (or key prefix; ``""`` is the root). PathNotFound if none."""

    def append(path: str, source: Source, hasher: Hasher | None = None) -> Deferred[int]:
        """Append everything readable from ``source`` to ``path`` (created if missing), feeding
        ``hasher`` with the same bytes; fire with the new total size. Runs off the reactor thread.
        All or nothing: when ``source`` fails midway, ``path`` keeps its old bytes."""

    def write(path: str, source: Source, hasher: Hasher, expected: str) -> Deferred[int]:
        """Create ``path`` from everything readable from ``source``, feeding ``hasher``; the object
        appears (atomically, replacing any previous one) only if ``hasher.hexdigest()`` then equals
        ``expected``, else ContentMismatch and nothing is left. Fire with the size. A blob pushed
        whole is stored this way, without an upload object to copy from."""

    def reader(path: str, offset: int = 0, length: int | None = None) -> Deferred[IByteReader]:
        """Open ``path`` for streaming from ``offset``. PathNotFound if missing. ``length``: how many
        bytes :meth:`IByteReader.send` will be asked for, when known (None: up to the end), so a
        driver that fetches over the network can ask for exactly those while it opens."""

    def move(source: str, destination: str) -> Deferred[None]:
        """Move an object; ``destination`` appears atomically, replacing any previous object."""

    def copy(source: str, destination: str) -> Deferred[None]:
        """Copy an object; ``destination`` appears atomically, complete."""

    def delete(path: str) -> Deferred[None]:
        """Delete an object or a whole directory tree. PathNotFound if missing."""

    def hash(path: str, algorithm: str) -> Deferred[str]:
        """The lowercase hex digest of an object's content, computed off the reactor thread."""

    def delete_many(paths: list[str]) -> Deferred[None]:
        """Delete objects (not directories); a missing one is no error. Garbage collection removes
        a repository's unreferenced blobs this way: S3 in batches (DeleteObjects), disk one by one."""

    def multipart_uploads(path: str) -> Deferred[list[tuple[str, str, float | None]]]:
        """Multipart uploads in progress under directory ``path``: (path, upload id, initiated, in
        POSIX seconds or None). Only S3 has them (an interrupted write leaves its parts billed);
        on disk the list is empty. Garbage collection aborts the old ones."""

    def abort_multipart(path: str, upload_id: str) -> Deferred[None]:
        """Abort one of :meth:`multipart_uploads`; one already gone is no error."""

    def redirect_url(path: str) -> Deferred[str | None]:
        """A URL a client may GET the object at ``path`` from directly, for a short while (a
        presigned S3 URL carrying no secret), or None where the storage has no such URL (disk).
        Asks the storage nothing: the caller checked the object exists."""

    def check() -> Deferred[None]:
        """Fail if the storage does not answer (readiness probes): kept cheap, it runs often."""

    def close() -> Deferred[None]:
        """Release what the driver holds open (connection pools) when the service stops."""
