"""The hot reads on local disk, answered with the least work: GET/HEAD of a blob by digest and of a
manifest by tag or digest.

Pulls are most of a registry's requests, and most pulls are small: a manifest and a few layers of
tens of KiB. Through the Klein app each costs werkzeug's routing, a coroutine, the name checked
again by the store, and for a manifest two reads in the thread pool (``index.json`` parsed anew,
then the manifest). :class:`HotReads` sits in front of the app and answers those requests itself
when everything they need is at hand: the route is already matched (:mod:`zotpy.api.routes`, the
name checked once there), a blob is opened and read inline (the local driver opens blobs inline
too), and a manifest comes from the repository's parsed ``index.json`` and the manifest's bytes,
both kept in memory (read in the thread pool, once each, when not kept yet). Anything else (a
range, a missing blob or manifest, an error, a repository fetched on demand, a large blob) goes to
the app unchanged, which answers as it always did: nothing differs on the wire.

A kept ``index.json`` is trusted while the file's inode, size and modification time are those
it was read with. A write replaces the file (written beside it, then renamed), so its inode or
time changes; to be safe from timestamps coarser than the writes, a file changed in the last
:data:`SETTLE_SECONDS` is never kept. The check is one ``stat``, so other processes writing the
same directory (zotpy verify, a second worker) are seen as well. Manifest bytes are kept by
digest: the digest is their content, and the index says whether the repository still has them.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from zotpy.api.registry import IOnDemand
from zotpy.api.routes import BLOB, MANIFEST, READ_BY_TAG, match_request
from zotpy.oci.digest import Digest, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.layout import RepositoryIndex, blob_path, index_path
from zotpy.storage.local import LocalDriver
from zotpy.transport.twisted_private import request_disconnected

log = Logger()

#: Blobs up to this size are read and sent in one piece; larger ones go through the app's streaming.
INLINE_BLOB = 1024 * 1024
#: An index.json written more recently than this is read anew each time, never kept.
SETTLE_SECONDS = 0.1
#: At most this many repositories' indexes holding this many entries in all, and this many bytes
#: of manifests, are kept.
KEPT_INDEXES = 4096
KEPT_INDEX_ENTRIES = 256 * 1024
KEPT_MANIFEST_BYTES = 64 * 1024 * 1024

_OCTET_STREAM = b"application/octet-stream"


@attrs.frozen
class _Manifest:
    media_type: bytes
    digest: Digest
    digest_text: bytes


@attrs.frozen
class _Index:
    """One repository's index.json as it was when read: ``version`` is the file's identity then."""

    version: tuple[int, int, int]
    by_tag: dict[str, _Manifest]
    by_digest: dict[str, _Manifest]

    @classmethod
    def of(cls, version: tuple[int, int, int], index: RepositoryIndex) -> _Index:
        by_tag: dict[str, _Manifest] = {}
        by_digest: dict[str, _Manifest] = {}
        for entry in index.entries:
            text = str(entry.digest)
            manifest = _Manifest(entry.media_type.encode(), entry.digest, text.encode())
            by_digest.setdefault(text, manifest)  # the first entry wins, as in RepositoryIndex
            if entry.tag is not None:
                by_tag.setdefault(entry.tag, manifest)
        return cls(version, by_tag, by_digest)

    def lookup(self, reference: str, kind: str | None) -> _Manifest | None:
        return (self.by_tag if kind == READ_BY_TAG else self.by_digest).get(reference)


class _Kept(OrderedDict[str, Any]):
    """Least recently used first out, by count and by a size each value is given."""

    def __init__(self, count: int, size: int, size_of: Callable[[Any], int]) -> None:
        super().__init__()
        self._count, self._size, self._size_of, self._total = count, size, size_of, 0

    def get_fresh(self, key: str) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def keep(self, key: str, value: Any) -> None:
        old = self.pop(key, None)
        if old is not None:
            self._total -= self._size_of(old)
        self[key] = value
        self._total += self._size_of(value)
        while len(self) > self._count or self._total > self._size:
            _, dropped = self.popitem(last=False)
            self._total -= self._size_of(dropped)


def local_root(store: ImageStore) -> str | None:
    """The directory blobs and indexes live in, when the store is on local disk (under the
    decorators the daemon puts around its driver: the circuit breaker, the meter)."""
    driver = store.driver
    while not isinstance(driver, LocalDriver) and hasattr(driver, "driver"):
        driver = driver.driver
    return driver.root if type(driver) is LocalDriver else None


@implementer(IResource)
class HotReads:
    """In front of the registry app (``app``): answers the hot reads it can, hands it the rest."""

    isLeaf = True

    def __init__(
        self, app: IResource, store: ImageStore, root: str, on_demand: IOnDemand | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.store = store
        self.root = root
        self.on_demand = on_demand
        self.clock = clock
        self._indexes = _Kept(KEPT_INDEXES, KEPT_INDEX_ENTRIES, lambda index: 1 + len(index.by_digest))
        self._manifests = _Kept(1 << 30, KEPT_MANIFEST_BYTES, len)

    # -- IResource: a leaf --------------------------------------------------------------------------

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the registry's routes are fixed")

    def render(self, request: IRequest) -> Any:
        found = match_request(request)
        if (
            found is not None and found.repository is not None and found.method in ("GET", "HEAD")
            and (self.on_demand is None or not self.on_demand.handles(found.repository))
        ):
            if found.route is BLOB:
                answer = self._blob(request, found.repository, found.params["digest"])
            elif found.route is MANIFEST:
                answer = self._manifest(request, found.repository, found.params["reference"], found.kind)
            else:
                answer = None
            if answer is not None:
                return answer
        return self.app.render(request)

    # -- blobs ------------------------------------------------------------------------------------

    def _blob(self, request: IRequest, repo: str, reference: str) -> bytes | None:
        if request.requestHeaders.hasHeader(b"range"):
            return None
        try:
            digest = parse_digest(reference)
        except RegistryError:
            return None
        try:
            fd = os.open(os.path.join(self.root, blob_path(repo, digest)), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None  # missing (the app says BLOB_UNKNOWN), or anything odd: the app's way
        try:
            size = os.fstat(fd).st_size
            if size > INLINE_BLOB:
                return None
            body = b"" if request.method == b"HEAD" else os.read(fd, size)
        except OSError:
            return None
        finally:
            os.close(fd)
        if request.method == b"GET" and len(body) != size:
            return None
        if request.method == b"HEAD" and self.store.blobs is not None:
            self.store.blobs.stored(repo, digest)  # as the store's blob_size tells dedupe
        text = str(digest).encode()
        headers = request.responseHeaders
        headers.setRawHeaders(b"Content-Type", [_OCTET_STREAM])
        headers.setRawHeaders(b"Docker-Content-Digest", [text])
        headers.setRawHeaders(b"Accept-Ranges", [b"bytes"])
        headers.setRawHeaders(b"ETag", [b'"' + text + b'"'])
        headers.setRawHeaders(b"Content-Length", [b"%d" % size])
        return body

    # -- manifests --------------------------------------------------------------------------------

    def _manifest(self, request: IRequest, repo: str, reference: str, kind: str | None) -> Any:
        """Kept: answered at once. Else the index and the manifest are read (in the thread pool, once
        each, as the app would read them) and the answer follows; a miss goes to the app."""
        try:
            found = os.stat(os.path.join(self.root, index_path(repo)))
        except OSError:
            return None  # no such repository: the app says so
        version = (found.st_ino, found.st_size, found.st_mtime_ns)
        kept: _Index | None = self._indexes.get_fresh(repo)
        if kept is not None and kept.version == version:
            manifest = kept.lookup(reference, kind)
            if manifest is None:
                return None  # the app answers MANIFEST_UNKNOWN (or refuses the reference)
            body: bytes | None = self._manifests.get_fresh(manifest.digest_text.decode())
            if body is not None:
                return self._answer(request, repo, manifest, body)
            reading = succeed(kept)
        else:
            settled = self.clock() - found.st_mtime >= SETTLE_SECONDS
            reading = self.store.driver.get_content(index_path(repo))
            reading.addCallback(self._parsed, repo, version, settled)
        reading.addCallback(self._manifest_of, repo, reference, kind)
        reading.addCallbacks(self._answer_later, self._failed, (request, repo), None, (request,))
        return NOT_DONE_YET

    def _parsed(self, data: bytes, repo: str, version: tuple[int, int, int], settled: bool) -> _Index:
        index = _Index.of(version, RepositoryIndex.parse(data, repo))
        if settled:  # else a write in the same tick of the file's clock could go unseen
            self._indexes.keep(repo, index)
        return index

    def _manifest_of(
        self, index: _Index, repo: str, reference: str, kind: str | None
    ) -> Deferred[tuple[_Manifest, bytes] | None]:
        manifest = index.lookup(reference, kind)
        if manifest is None:
            return succeed(None)
        key = manifest.digest_text.decode()
        body = self._manifests.get_fresh(key)
        if body is not None:
            return succeed((manifest, body))

        def read(body: bytes) -> tuple[_Manifest, bytes]:
            self._manifests.keep(key, body)
            return manifest, body

        return self.store.driver.get_content(blob_path(repo, manifest.digest)).addCallback(read)

    def _answer(self, request: IRequest, repo: str, manifest: _Manifest, body: bytes) -> bytes:
        headers = request.responseHeaders
        headers.setRawHeaders(b"Content-Type", [manifest.media_type])
        headers.setRawHeaders(b"Docker-Content-Digest", [manifest.digest_text])
        headers.setRawHeaders(b"ETag", [b'"' + manifest.digest_text + b'"'])
        headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        if request.method == b"HEAD":
            return b""
        self.store.events.pulled(repo, manifest.digest)
        return body

    def _answer_later(self, found: tuple[_Manifest, bytes] | None, request: IRequest, repo: str) -> None:
        if request_disconnected(request):
            return  # nobody to answer
        if found is None:
            self._to_the_app(request)
            return
        body = self._answer(request, repo, *found)
        request.write(body)
        request.finish()

    def _failed(self, failure: Failure, request: IRequest) -> None:
        """The index or the manifest could not be read or parsed: the app answers (and says why)."""
        log.debug("hot reads: {path}: {why}", path=request.path, why=failure.getErrorMessage())
        if not request_disconnected(request):
            self._to_the_app(request)

    def _to_the_app(self, request: IRequest) -> None:
        """What twisted.web does with a resource's answer, for a request already taken on."""
        body = self.app.render(request)
        if body is NOT_DONE_YET:
            return
        if request.method != b"HEAD":
            request.setHeader(b"Content-Length", b"%d" % len(body))
            request.write(body)
        else:
            request.write(b"")
        request.finish()
