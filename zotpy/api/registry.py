"""The OCI Distribution Specification v1.1 API as Klein routes.

Handlers parse and validate the request, call the :class:`ImageStore` and shape
the reply; every failure is a :class:`RegistryError` rendered as the spec's
error JSON. Locations are relative (``/v2/<name>/blobs/uploads/<uuid>``) so a
reply relayed by another cluster member stays valid.
"""

from __future__ import annotations

from typing import Any, Coroutine, TypeVar
from urllib.parse import urlsplit

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect
from zope.interface import Interface

from zotpy.api import routes
from zotpy.api.pagination import next_link, paginate, parse_page_size
from zotpy.api.paths import ReadablePaths
from zotpy.api.ranges import parse_content_range, parse_range
from zotpy.api.responses import reply, reply_error, reply_json
from zotpy.api.streaming import BodyIncomplete
from zotpy.api.visibility import visible
from zotpy.oci.digest import is_digest_reference, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import MAX_MANIFEST_BYTES, OCI_INDEX
from zotpy.oci.names import validate_name
from zotpy.storage.driver import IByteReader, IStreamedSource, Source, StorageError, StorageUnavailable
from zotpy.storage.imagestore import ImageStore, check_session, lookup_reference

log = Logger()

T = TypeVar("T")

#: The errors that say the store lacks what a read asked for (see ``RegistryRequest.on_miss``).
_MISSES = frozenset({"BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "NAME_UNKNOWN"})


def _argument(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


def _body_length(request: IRequest) -> int | None:
    """Bytes in the request body: spooled by twisted.web to memory or a temporary file, or
    announced by a body still arriving (:mod:`zotpy.api.streaming`); None if it did not say."""
    content = request.content
    if IStreamedSource.providedBy(content):
        return content.length
    content.seek(0, 2)
    length = content.tell()
    content.seek(0)
    return length


def _body(request: IRequest) -> Source | None:
    return request.content if _body_length(request) != 0 else None


def _upload_headers(name: str, session: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{session}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": session,
    }


class IOnDemand(Interface):
    """Fetches what a pull asks for from upstream registries before it is answered (the sync
    extension). Its Deferreds never fail; the route then answers from the store."""

    def handles(repo: str) -> bool:
        """Whether pulls of ``repo`` may be fetched upstream (cheap: rules only)."""

    def manifest(repo: str, reference: str) -> Deferred[bool]:
        """Fetch ``repo:reference`` into the store if an upstream has it; True when it was fetched."""

    def referrers(repo: str, digest: str) -> Deferred[bool]:
        """Fetch the referrers of ``repo@digest`` into the store; True when an upstream was asked."""


class RegistryApp:
    """The registry's HTTP routes over one :class:`ImageStore`."""

    app = Klein()

    def __init__(self, store: ImageStore, on_demand: IOnDemand | None = None, redirect_blobs: bool = False) -> None:
        self.store = store
        self.on_demand = on_demand
        #: ``storage.redirectBlobURL``: a whole-blob GET answers 307 to the storage's own URL of it
        self.redirect_blobs = redirect_blobs

    def resource(self) -> IResource:
        """The Klein app, reading undecodable paths as the route table does (:mod:`zotpy.api.paths`)."""
        return ReadablePaths(self.app.resource())

    # -- errors ------------------------------------------------------------------------------------

    @app.handle_errors(RegistryError)
    def registry_error(self, request: IRequest, failure: Failure) -> bytes | IResource:
        on_miss = getattr(request, "on_miss", None)
        if on_miss is not None and failure.value.code in _MISSES and not getattr(request, "startedWriting", False):
            return on_miss  # Klein renders it: the repository's owner answers the miss
        return reply_error(request, failure.value)

    @app.handle_errors(BodyIncomplete)
    def body_incomplete(self, request: IRequest, failure: Failure) -> bytes:
        """The client left before its whole upload body: nobody to answer, and nothing of it was
        kept (the drivers store a body all or nothing)."""
        log.info("{method} {path}: {why}", method=request.method, path=request.path, why=str(failure.value))
        return b""

    @app.handle_errors(StorageError)
    def storage_error(self, request: IRequest, failure: Failure) -> bytes:
        if failure.check(StorageUnavailable):  # no traceback: one per request while the backend is down
            log.warn("{method} {path}: {why}", method=request.method, path=request.path, why=str(failure.value))
        else:
            log.failure("storage backend failed on {method} {path}", failure, method=request.method, path=request.path)
        if _cut_short(request):
            return b""
        retry_after = getattr(failure.value, "retry_after", 5)
        error = RegistryError(
            "UNAVAILABLE", "the storage backend failed", detail={"error": str(failure.value)[:300]},
            headers={"Retry-After": str(retry_after)},
        )
        return reply_error(request, error)

    @app.handle_errors(RequestRedirect)
    def redirect(self, request: IRequest, failure: Failure) -> bytes:
        """``/v2`` and ``.../blobs/uploads`` without their trailing slash: point at the route (relative)."""
        target = urlsplit(failure.value.new_url)
        location = target.path + (f"?{target.query}" if target.query else "")
        return reply(request, failure.value.code, b"", {"Location": location})

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Failure) -> bytes:
        if b"/blobs/uploads/" in request.path:
            # A session id the router cannot even match (``..%2F..``) names no session.
            return reply_error(request, RegistryError("BLOB_UPLOAD_UNKNOWN"))
        return reply_error(request, RegistryError("UNSUPPORTED", "no such endpoint", status=404))

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        allowed = ", ".join(getattr(failure.value, "valid_methods", None) or ())
        return reply_error(
            request, RegistryError("UNSUPPORTED", "method not allowed here", headers={"Allow": allowed})
        )

    @app.handle_errors(Exception)
    def unexpected(self, request: IRequest, failure: Failure) -> bytes:
        log.failure("unexpected error on {method} {path}", failure, method=request.method, path=request.path)
        if _cut_short(request):
            return b""
        return reply_error(request, RegistryError("UNKNOWN"))

    # -- base, catalog -------------------------------------------------------------------------------

    @app.route(routes.BASE_ROUTE.pattern, methods=["GET", "HEAD"])
    def ping(self, request: IRequest) -> bytes:
        return reply_json(request, 200, {})

    @app.route(routes.CATALOG.pattern, methods=["GET"])
    async def catalog(self, request: IRequest) -> bytes:
        n = parse_page_size(request.args.get(b"n"))
        page, more = paginate(visible(request, await self.store.repositories()), n, _argument(request, b"last"))
        headers = {"Link": next_link("/v2/_catalog", n, page[-1])} if more and n and page else {}
        return reply_json(request, 200, {"repositories": page}, headers)

    # -- tags ------------------------------------------------------------------------------------------

    @app.route(routes.TAGS.pattern, methods=["GET"])
    async def tags_list(self, request: IRequest, name: str) -> bytes:
        n = parse_page_size(request.args.get(b"n"))
        page, more = paginate(await self.store.tags(name), n, _argument(request, b"last"))
        headers = {"Link": next_link(f"/v2/{name}/tags/list", n, page[-1])} if more and n and page else {}
        return reply_json(request, 200, {"name": name, "tags": page}, headers)

    # -- manifests ---------------------------------------------------------------------------------------

    @app.route(routes.MANIFEST.pattern, methods=["GET", "HEAD"])
    async def get_manifest(self, request: IRequest, name: str, reference: str) -> bytes:
        if self.on_demand is not None and self.on_demand.handles(name):
            await self._manifest_on_demand(name, reference)
        stored = await self.store.get_manifest(name, reference, pull=request.method == b"GET")
        headers = {
            "Content-Type": stored.media_type,
            "Docker-Content-Digest": str(stored.digest),
            "ETag": f'"{stored.digest}"',
        }
        return reply(request, 200, stored.body, headers)

    async def _manifest_on_demand(self, name: str, reference: str) -> None:
        """zot's rule: a tag is asked upstream every time (it may have moved), a digest only when it
        is missing here."""
        assert self.on_demand is not None
        validate_name(name)
        lookup_reference(name, reference)
        if is_digest_reference(reference):
            try:
                await self.store.get_manifest(name, reference)
                return
            except RegistryError:
                pass
        await self.on_demand.manifest(name, reference)

    @app.route(routes.MANIFEST.pattern, methods=["PUT"])
    async def put_manifest(self, request: IRequest, name: str, reference: str) -> bytes:
        # The channel already refused declared or streamed bodies over the limit; this is the backstop.
        request.content.seek(0)
        body = request.content.read(MAX_MANIFEST_BYTES + 1)
        tags = tuple(value.decode("utf-8", "replace") for value in request.args.get(b"tag", []))
        pushed = await self.store.put_manifest(name, reference, body, request.getHeader("content-type"), tags)
        headers = {
            "Location": f"/v2/{name}/manifests/{pushed.digest}",
            "Docker-Content-Digest": str(pushed.digest),
        }
        if pushed.manifest.subject is not None:
            headers["OCI-Subject"] = str(pushed.manifest.subject.digest)
        if tags:
            headers["OCI-Tag"] = ", ".join(tags)
        return reply(request, 201, b"", headers)

    @app.route(routes.MANIFEST.pattern, methods=["DELETE"])
    async def delete_manifest(self, request: IRequest, name: str, reference: str) -> bytes:
        await self.store.delete_manifest(name, reference)
        return reply(request, 202)

    # -- blobs -----------------------------------------------------------------------------------------

    @app.route(routes.BLOB.pattern, methods=["GET", "HEAD"])
    async def get_blob(self, request: IRequest, name: str, digest: str) -> bytes | None:
        parsed = parse_digest(digest)
        reader: IByteReader | None = None
        whole = request.method == b"GET" and request.getHeader("range") is None
        if whole and self.redirect_blobs:
            await self.store.blob_size(name, parsed)  # BLOB_UNKNOWN unless the repository holds it
            url = await self.store.blob_url(name, parsed)
            if url is not None:
                return reply(request, 307, b"", {"Location": url, "Docker-Content-Digest": str(parsed)})
        if whole:
            # The whole blob: opening it tells its size (one S3 request, not a stat and then an open).
            reader = await self.store.open_blob(name, parsed)
            size = reader.size
        else:
            size = await self.store.blob_size(name, parsed)
        try:
            wanted = parse_range(request.getHeader("range"), size)
            first, last = wanted if wanted is not None else (0, size - 1)
            length = last - first + 1 if size else 0
            request.setHeader("Content-Type", "application/octet-stream")
            request.setHeader("Docker-Content-Digest", str(parsed))
            request.setHeader("Accept-Ranges", "bytes")
            request.setHeader("ETag", f'"{parsed}"')
            request.setHeader("Content-Length", str(length))
            if wanted is not None:
                request.setResponseCode(206)
                request.setHeader("Content-Range", f"bytes {first}-{last}/{size}")
            if request.method == b"HEAD":
                return b""
            if reader is None:
                reader = await self.store.open_blob(name, parsed, first, length)
            await reader.send(request, length)
        finally:
            if reader is not None:
                reader.close()
        return None

    @app.route(routes.BLOB.pattern, methods=["DELETE"])
    async def delete_blob(self, request: IRequest, name: str, digest: str) -> bytes:
        await self.store.delete_blob(name, parse_digest(digest))
        return reply(request, 202)

    # -- uploads ---------------------------------------------------------------------------------------

    @app.route(routes.UPLOAD_START.pattern, methods=["POST"])
    async def start_upload(self, request: IRequest, name: str) -> bytes:
        validate_name(name)
        mount, source = _argument(request, b"mount"), _argument(request, b"from")
        if mount is not None and source is not None:
            digest = parse_digest(mount)
            if await self.store.mount_blob(name, digest, source):
                return self._blob_created(request, name, str(digest))
        monolithic = _argument(request, b"digest")
        if monolithic is not None:
            digest = parse_digest(monolithic)
            await _to_the_end(self.store.put_blob(name, digest, request.content))
            return self._blob_created(request, name, str(digest))
        session = await self.store.start_upload(name)
        return reply(request, 202, b"", _upload_headers(name, session, 0))

    @app.route(routes.UPLOAD_SESSION.pattern, methods=["GET"])
    async def upload_status(self, request: IRequest, name: str, session: str) -> bytes:
        size = await self.store.upload_size(name, check_session(session))
        return reply(request, 204, b"", _upload_headers(name, session, size))

    @app.route(routes.UPLOAD_SESSION.pattern, methods=["PATCH"])
    async def upload_chunk(self, request: IRequest, name: str, session: str) -> bytes:
        start = parse_content_range(request.getHeader("content-range"), _body_length(request))
        size = await _to_the_end(self.store.append_upload(name, check_session(session), request.content, start))
        return reply(request, 202, b"", _upload_headers(name, session, size))

    @app.route(routes.UPLOAD_SESSION.pattern, methods=["PUT"])
    async def finish_upload(self, request: IRequest, name: str, session: str) -> bytes:
        check_session(session)
        text = _argument(request, b"digest")
        if text is None:
            raise RegistryError("DIGEST_INVALID", "the digest query parameter is required to finish an upload")
        digest = parse_digest(text)
        body = _body(request)
        start = parse_content_range(request.getHeader("content-range"), _body_length(request))
        if start is not None:
            await _to_the_end(self.store.append_upload(name, session, request.content, start))
            body = None
        await _to_the_end(self.store.finish_upload(name, session, digest, body))
        return self._blob_created(request, name, str(digest))

    @app.route(routes.UPLOAD_SESSION.pattern, methods=["DELETE"])
    async def cancel_upload(self, request: IRequest, name: str, session: str) -> bytes:
        await self.store.cancel_upload(name, check_session(session))
        return reply(request, 204)

    def _blob_created(self, request: IRequest, name: str, digest: str) -> bytes:
        return reply(request, 201, b"", {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    # -- referrers -------------------------------------------------------------------------------------

    @app.route(routes.REFERRERS.pattern, methods=["GET"])
    async def referrers(self, request: IRequest, name: str, digest: str) -> bytes:
        subject = parse_digest(digest)
        artifact_type = _argument(request, b"artifactType")
        if self.on_demand is not None and self.on_demand.handles(name):
            await self.on_demand.referrers(validate_name(name), str(subject))
        index = await self.store.referrers(name, subject, artifact_type)
        headers = {"Content-Type": OCI_INDEX}
        if artifact_type is not None:
            headers["OCI-Filters-Applied"] = "artifactType"
        return reply_json(request, 200, index, headers)


def _to_the_end(work: Coroutine[Any, Any, T]) -> Deferred[T]:
    """An upload's storage work, carried on when its client leaves (Klein then cancels the handler).
    Cut short from outside, a driver would clean up while a thread still writes its last batch;
    left alone, it fails at the body's next read (:class:`BodyIncomplete`) and cleans up in order,
    or completes if the whole body had arrived. The handler stops waiting all the same."""
    waiting: Deferred[T] = Deferred()

    def settle(result: T | Failure) -> None:
        if not waiting.called:
            if isinstance(result, Failure):
                waiting.errback(result)
            else:
                waiting.callback(result)
        elif isinstance(result, Failure) and not result.check(BodyIncomplete, CancelledError):
            log.failure("an upload failed after its client left", result)

    Deferred.fromCoroutine(work).addBoth(settle)
    return waiting


def _cut_short(request: IRequest) -> bool:
    """A failure after the reply's headers went out (a blob body broke off): an error document now
    would be read as body bytes, so the connection is closed once what was sent is flushed, and the
    client sees the body short (as Go's server does when a handler stops short of its Content-Length)."""
    if not getattr(request, "startedWriting", False):
        return False
    if request.channel is not None:
        request.channel.loseConnection()  # the channel's own: it unregisters itself as producer first
    return True
