"""The OCI Distribution API over real HTTP: every endpoint, its success and error paths.

Each test starts zotpy's real twisted.web site on 127.0.0.1 with local storage in a
fresh directory and talks to it with treq. Every reply must carry
``Docker-Distribution-API-Version: registry/2.0`` (checked for each request by
:meth:`ApiTestCase.call`); errors must be the OCI error JSON.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import uuid
from typing import Any, Awaitable, Callable

import attrs
from twisted.internet import defer, reactor, task
from twisted.internet.task import deferLater
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial import unittest
from twisted.web.http_headers import Headers
from twisted.web.server import Request
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from tests.support import http_client, serve, start_local_registry
from zotpy.transport import splice
from zotpy.api.site import registry_resource
from zotpy.storage.driver import StorageError
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_NONDIST_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
REF_NAME = "org.opencontainers.image.ref.name"
MAX_MANIFEST = 4 * 1024 * 1024
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
INVALID_NAMES = ("UPPER", "a//b", "-a", "a/blobs/x", "a" * 300, "a/", "a..b", "a/-b", "a/.uploads/x")


def async_test(function: Callable[..., Awaitable[Any]]) -> Callable[..., defer.Deferred[Any]]:
    """Let trial run an ``async def`` test method."""

    @functools.wraps(function)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return defer.ensureDeferred(function(self, *args, **kwargs))

    return wrapper


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


@implementer(IBodyProducer)
class ChunkedBody:
    """A request body of unknown length: the Agent sends it with ``Transfer-Encoding: chunked``."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes) -> None:
        self.data = data

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        for start in range(0, len(self.data), 64 * 1024):
            consumer.write(self.data[start : start + 64 * 1024])
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class RawExchange(Protocol):
    """Sends raw bytes and collects whatever the server answers."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(None)


@attrs.frozen
class Reply:
    method: str
    path: str
    status: int
    headers: Headers
    body: bytes
    # The Agent keeps Content-Length out of ``headers`` except on HEAD replies: it is here.
    length: int | None = None

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {self.body[:300]!r}"


@attrs.frozen
class Image:
    """A pushed-able image: its blobs are already in the registry, the manifest is not."""

    manifest: dict[str, Any]
    body: bytes
    media_type: str
    blobs: tuple[bytes, ...]

    @property
    def digest(self) -> str:
        return digest(self.body)


class DiskFiles:
    """What the registry stored, read and written behind its back: here files under a local root.
    Paths are relative to the storage root, as ``/``-separated parts."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    async def files_under(self, *parts: str) -> list[str]:
        top = self._path(*parts)
        found = []
        for directory, _, names in os.walk(top):
            found.extend(os.path.relpath(os.path.join(directory, name), top) for name in names)
        return sorted(found)

    async def read(self, *parts: str) -> bytes:
        with open(self._path(*parts), "rb") as stream:
            return stream.read()

    async def write(self, data: bytes, *parts: str) -> None:
        os.makedirs(os.path.dirname(self._path(*parts)), exist_ok=True)
        with open(self._path(*parts), "wb") as stream:
            stream.write(data)

    async def make_directory(self, *parts: str) -> None:
        os.makedirs(self._path(*parts), exist_ok=True)

    async def exists(self, *parts: str) -> bool:
        return os.path.exists(self._path(*parts))

    async def size(self, *parts: str) -> int:
        return os.path.getsize(self._path(*parts))

    async def top_level(self) -> list[str]:
        return sorted(os.listdir(self.root))


class ApiTestCase(unittest.TestCase):
    """A fresh registry (and storage) per test, plus request and push helpers.

    ``make_storage`` and ``start_registry`` are the hooks another storage driver overrides to run
    the whole suite on it (tests/integration/test_api_s3.py); ``self.stored`` looks at what the
    registry stored.
    """

    @async_test
    async def setUp(self) -> None:
        self.stored = self.make_storage()
        self.base = await self.start_registry()
        self.http = http_client(self)

    def make_storage(self) -> DiskFiles:
        """Fresh, empty storage for this test, and a view of it."""
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        return DiskFiles(self.root)

    async def start_registry(self) -> str:
        """A registry over this test's storage, serving until the test ends; its base URL. Called
        again, it is a second process on the same storage (a restart)."""
        return await start_local_registry(self, self.root)

    # -- HTTP -----------------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, body: bytes | IBodyProducer | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        """One request; checks the API version header every reply must carry."""
        raw = Headers({k: [v] for k, v in (headers or {}).items()})
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        response = await self.http.request(
            method, (self.base + path).encode("ascii"), headers=raw, data=body, allow_redirects=False
        )
        content = await response.content()
        length = response.length if isinstance(response.length, int) else None
        if method == "HEAD":
            declared = response.headers.getRawHeaders("Content-Length")
            length = int(declared[0]) if declared else None
        reply = Reply(method, path, response.code, response.headers, content, length)
        self.assertEqual(
            reply.header("Docker-Distribution-API-Version"), "registry/2.0", f"API version header missing on {reply}"
        )
        return reply

    def assertStatus(self, reply: Reply, status: int) -> None:
        self.assertEqual(reply.status, status, str(reply))

    def assertError(self, reply: Reply, status: int, code: str | None) -> dict[str, Any]:
        """An OCI error reply: status, JSON Content-Type, ``{"errors":[{"code":...,"message":...}]}``."""
        self.assertStatus(reply, status)
        self.assertEqual(reply.header("Content-Type"), "application/json", str(reply))
        if reply.method == "HEAD":
            self.assertEqual(reply.body, b"")
            return {}
        document = reply.json()
        self.assertIsInstance(document.get("errors"), list, str(reply))
        self.assertGreaterEqual(len(document["errors"]), 1, str(reply))
        entry = document["errors"][0]
        self.assertIsInstance(entry.get("message"), str, str(reply))
        if code is not None:
            self.assertEqual(entry.get("code"), code, str(reply))
        return entry

    # -- pushing ----------------------------------------------------------------------------------

    async def push_blob(self, repo: str, data: bytes, algorithm: str = "sha256") -> str:
        blob_digest = digest(data, algorithm)
        reply = await self.call("POST", f"/v2/{repo}/blobs/uploads/?digest={blob_digest}", data)
        self.assertStatus(reply, 201)
        return blob_digest

    async def push_manifest(
        self, repo: str, reference: str, body: bytes, media_type: str | None, expect: int | None = 201
    ) -> Reply:
        headers = {"Content-Type": media_type} if media_type else {}
        reply = await self.call("PUT", f"/v2/{repo}/manifests/{reference}", body, headers)
        if expect is not None:
            self.assertStatus(reply, expect)
        return reply

    async def build_image(
        self,
        repo: str,
        layers: int = 1,
        media_type: str = OCI_MANIFEST,
        seed: str = "",
        **fields: Any,
    ) -> Image:
        """Push a config and ``layers`` layers to ``repo``; return the (not yet pushed) manifest."""
        docker = media_type == DOCKER_MANIFEST
        config = encode({"architecture": "amd64", "os": "linux", "seed": seed or uuid.uuid4().hex})
        blobs = [config] + [f"layer {i} {seed or uuid.uuid4().hex}".encode() * 10 for i in range(layers)]
        for blob in blobs:
            await self.push_blob(repo, blob)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
            "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, blob) for blob in blobs[1:]],
        }
        manifest.update(fields)
        return Image(manifest, encode(manifest), media_type, tuple(blobs))

    async def push_image(self, repo: str, tag: str, **kwargs: Any) -> Image:
        image = await self.build_image(repo, **kwargs)
        await self.push_manifest(repo, tag, image.body, image.media_type)
        return image

    async def push_index(self, repo: str, reference: str, media_type: str = OCI_INDEX, **fields: Any) -> Image:
        """Push two child images by digest, then return an index over them (not pushed)."""
        child_type = DOCKER_MANIFEST if media_type == DOCKER_LIST else OCI_MANIFEST
        children = []
        for arch in ("amd64", "arm64"):
            child = await self.build_image(repo, media_type=child_type)
            await self.push_manifest(repo, child.digest, child.body, child_type)
            children.append(
                descriptor(child_type, child.body, platform={"architecture": arch, "os": "linux"})
            )
        index = {"schemaVersion": 2, "mediaType": media_type, "manifests": children, **fields}
        return Image(index, encode(index), media_type, ())

    async def start_upload(self, repo: str) -> str:
        reply = await self.call("POST", f"/v2/{repo}/blobs/uploads/")
        self.assertStatus(reply, 202)
        return reply.header("Location") or ""

    async def tags(self, repo: str) -> list[str]:
        reply = await self.call("GET", f"/v2/{repo}/tags/list")
        self.assertStatus(reply, 200)
        return reply.json()["tags"]

    async def files_under(self, *parts: str) -> list[str]:
        return await self.stored.files_under(*parts)


# ==================================================================================================


class BaseTests(ApiTestCase):
    @async_test
    async def test_ping(self) -> None:
        reply = await self.call("GET", "/v2/")
        self.assertStatus(reply, 200)
        self.assertEqual(reply.json(), {})
        self.assertEqual(reply.header("Content-Type"), "application/json")

    @async_test
    async def test_ping_head(self) -> None:
        reply = await self.call("HEAD", "/v2/")
        self.assertStatus(reply, 200)
        self.assertEqual(reply.body, b"")

    @async_test
    async def test_unknown_routes_are_404_oci_errors(self) -> None:
        for path in ("/v3/", "/nope", "/v2/repo", "/v2/repo/whatever/x", "/v2/repo/manifests/"):
            self.assertError(await self.call("GET", path), 404, None)

    @async_test
    async def test_paths_missing_their_trailing_slash_are_not_server_errors(self) -> None:
        """``/v2`` and ``/v2/<name>/blobs/uploads`` are client slips: a redirect or a 404, never a 500."""
        for method, path in (("GET", "/v2"), ("POST", "/v2/repo/blobs/uploads")):
            reply = await self.call(method, path)
            self.assertIn(reply.status, (200, 202, 301, 307, 308, 404), str(reply))
            if reply.status in (301, 307, 308):
                self.assertTrue((reply.header("Location") or "").endswith(path + "/"), str(reply))
            if reply.status == 404:
                self.assertError(reply, 404, None)

    @async_test
    async def test_wrong_method_is_an_oci_error(self) -> None:
        reply = await self.call("PATCH", "/v2/")
        self.assertError(reply, 405, "UNSUPPORTED")


# ==================================================================================================


class BlobTests(ApiTestCase):
    @async_test
    async def test_monolithic_push_get_head(self) -> None:
        data = os.urandom(1000)
        blob = digest(data)
        reply = await self.call("POST", f"/v2/repo/blobs/uploads/?digest={blob}", data)
        self.assertStatus(reply, 201)
        self.assertEqual(reply.header("Location"), f"/v2/repo/blobs/{blob}")
        self.assertEqual(reply.header("Docker-Content-Digest"), blob)

        got = await self.call("GET", f"/v2/repo/blobs/{blob}")
        self.assertStatus(got, 200)
        self.assertEqual(got.body, data)
        self.assertEqual(got.header("Docker-Content-Digest"), blob)
        self.assertEqual(got.length, len(data))

        head = await self.call("HEAD", f"/v2/repo/blobs/{blob}")
        self.assertStatus(head, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("Content-Length"), str(len(got.body)))
        self.assertEqual(head.header("Docker-Content-Digest"), blob)

    #: Whether a large blob GET is relayed by a kernel splice (S3 behind plain HTTP: tests/integration).
    splices_large_blobs = False

    @async_test
    async def test_large_blob_whole_ranged_and_again_on_the_same_connection(self) -> None:
        data = os.urandom(3 * 1024 * 1024 + 7)
        blob = await self.push_blob("repo", data)
        spliced, kept = splice.stats.bodies, splice.stats.sources_kept
        sent: list[tuple[int, int]] = []
        self.patch(Request, "finish", recording_sent_length(Request.finish, sent))
        for _ in range(2):  # the second GET reuses the pooled keep-alive connection
            got = await self.call("GET", f"/v2/repo/blobs/{blob}")
            self.assertStatus(got, 200)
            self.assertEqual(got.length, len(data))
            self.assertEqual(hashlib.sha256(got.body).digest(), hashlib.sha256(data).digest())
        self.assertEqual([count for _, count in sent], [len(data), len(data)])  # the access log's bodySize
        part = await self.call("GET", f"/v2/repo/blobs/{blob}", headers={"Range": "bytes=1000-2098151"})
        self.assertStatus(part, 206)
        self.assertEqual(part.body, data[1000:2098152])
        self.assertEqual(splice.stats.bodies - spliced, 3 if self.splices_large_blobs else 0)
        # ... and each S3 connection went back to its pool afterwards, not closed
        self.assertEqual(splice.stats.sources_kept - kept, 3 if self.splices_large_blobs else 0)
        manifest = await self.call("GET", "/v2/")  # the connection still serves the next request
        self.assertStatus(manifest, 200)

    @async_test
    async def test_empty_blob(self) -> None:
        blob = await self.push_blob("repo", b"")
        got = await self.call("GET", f"/v2/repo/blobs/{blob}")
        self.assertStatus(got, 200)
        self.assertEqual(got.body, b"")
        head = await self.call("HEAD", f"/v2/repo/blobs/{blob}")
        self.assertEqual(head.header("Content-Length"), "0")

    @async_test
    async def test_monolithic_digest_mismatch_leaves_nothing(self) -> None:
        data = b"the real content"
        claimed = digest(b"something else")
        reply = await self.call("POST", f"/v2/repo/blobs/uploads/?digest={claimed}", data)
        self.assertError(reply, 400, "DIGEST_INVALID")
        self.assertEqual(await self.files_under("repo", "blobs"), [])
        self.assertEqual(await self.files_under("repo", ".uploads"), [])
        self.assertError(await self.call("GET", f"/v2/repo/blobs/{claimed}"), 404, "BLOB_UNKNOWN")
        self.assertError(await self.call("GET", f"/v2/repo/blobs/{digest(data)}"), 404, "BLOB_UNKNOWN")

    @async_test
    async def test_malformed_digests(self) -> None:
        hex64 = hashlib.sha256(b"x").hexdigest()
        bad = [
            "sha256:" + "z" * 64,  # bad hex
            "sha256:" + hex64[:-1],  # too short
            "sha256:" + hex64 + "0",  # too long
            "sha512:" + hex64,  # wrong length for the algorithm
            "md5:" + hashlib.md5(b"x").hexdigest(),  # unknown algorithm
            "foo:" + hex64,  # unknown algorithm
            "sha256:" + hex64.upper(),  # uppercase hex
            "SHA256:" + hex64,  # uppercase algorithm
            "sha256" + hex64,  # no separator
            "sha256:",
        ]
        for text in bad:
            reply = await self.call("POST", f"/v2/repo/blobs/uploads/?digest={text}", b"x")
            self.assertError(reply, 400, "DIGEST_INVALID")
            self.assertError(await self.call("GET", f"/v2/repo/blobs/{text}"), 400, "DIGEST_INVALID")
            self.assertError(await self.call("HEAD", f"/v2/repo/blobs/{text}"), 400, None)
        self.assertEqual(await self.files_under("repo", "blobs"), [])

    @async_test
    async def test_sha512_blob(self) -> None:
        data = os.urandom(4096)
        blob = await self.push_blob("repo", data, "sha512")
        self.assertTrue(blob.startswith("sha512:"))
        got = await self.call("GET", f"/v2/repo/blobs/{blob}")
        self.assertStatus(got, 200)
        self.assertEqual(got.body, data)
        self.assertEqual(got.header("Docker-Content-Digest"), blob)
        head = await self.call("HEAD", f"/v2/repo/blobs/{blob}")
        self.assertEqual(head.header("Content-Length"), "4096")
        wrong = digest(b"other", "sha512")
        self.assertError(
            await self.call("POST", f"/v2/repo/blobs/uploads/?digest={wrong}", data), 400, "DIGEST_INVALID"
        )

    @async_test
    async def test_ranges(self) -> None:
        data = bytes(range(100))
        blob = await self.push_blob("repo", data)
        path = f"/v2/repo/blobs/{blob}"
        cases = {
            "bytes=10-19": (10, 19),
            "bytes=0-0": (0, 0),
            "bytes=90-": (90, 99),
            "bytes=-5": (95, 99),
            "bytes=95-200": (95, 99),
            "bytes=-500": (0, 99),
        }
        for header, (first, last) in cases.items():
            reply = await self.call("GET", path, headers={"Range": header})
            self.assertStatus(reply, 206)
            self.assertEqual(reply.body, data[first : last + 1], header)
            self.assertEqual(reply.header("Content-Range"), f"bytes {first}-{last}/100", header)
            self.assertEqual(reply.length, last - first + 1, header)
            head = await self.call("HEAD", path, headers={"Range": header})
            self.assertStatus(head, 206)
            self.assertEqual(head.header("Content-Length"), str(last - first + 1), header)

    @async_test
    async def test_unsatisfiable_and_malformed_ranges(self) -> None:
        blob = await self.push_blob("repo", bytes(range(100)))
        for header in ("bytes=100-", "bytes=200-300", "bytes=100-100"):
            reply = await self.call("GET", f"/v2/repo/blobs/{blob}", headers={"Range": header})
            self.assertError(reply, 416, None)
            self.assertEqual(reply.header("Content-Range"), "bytes */100", header)
        for header in ("bytes=abc", "items=0-1", "bytes=5-2", "bytes=0-1,3-4", "bytes=-", "bytes=-0"):
            reply = await self.call("GET", f"/v2/repo/blobs/{blob}", headers={"Range": header})
            self.assertError(reply, 416, None)

    @async_test
    async def test_blob_of_another_repository_is_unknown(self) -> None:
        blob = await self.push_blob("one", b"private to one")
        await self.push_blob("two", b"something in two")
        self.assertError(await self.call("GET", f"/v2/two/blobs/{blob}"), 404, "BLOB_UNKNOWN")
        self.assertError(await self.call("HEAD", f"/v2/two/blobs/{blob}"), 404, "BLOB_UNKNOWN")
        self.assertError(await self.call("GET", f"/v2/never/blobs/{blob}"), 404, "BLOB_UNKNOWN")

    @async_test
    async def test_unknown_blob(self) -> None:
        await self.push_blob("repo", b"a")
        self.assertError(await self.call("GET", f"/v2/repo/blobs/{digest(b'b')}"), 404, "BLOB_UNKNOWN")

    @async_test
    async def test_delete_blob(self) -> None:
        blob = await self.push_blob("repo", b"to be deleted")
        reply = await self.call("DELETE", f"/v2/repo/blobs/{blob}")
        self.assertStatus(reply, 202)
        self.assertError(await self.call("GET", f"/v2/repo/blobs/{blob}"), 404, "BLOB_UNKNOWN")
        self.assertError(await self.call("HEAD", f"/v2/repo/blobs/{blob}"), 404, None)
        self.assertError(await self.call("DELETE", f"/v2/repo/blobs/{blob}"), 404, "BLOB_UNKNOWN")

    @async_test
    async def test_delete_blob_bad_digest(self) -> None:
        await self.push_blob("repo", b"x")
        self.assertError(await self.call("DELETE", "/v2/repo/blobs/sha256:nothex"), 400, "DIGEST_INVALID")

    @async_test
    async def test_delete_blob_that_is_a_manifest(self) -> None:
        image = await self.push_image("repo", "v1")
        reply = await self.call("DELETE", f"/v2/repo/blobs/{image.digest}")
        self.assertError(reply, 405, "UNSUPPORTED")
        self.assertStatus(await self.call("GET", f"/v2/repo/manifests/{image.digest}"), 200)
        self.assertStatus(await self.call("GET", "/v2/repo/manifests/v1"), 200)


# ==================================================================================================


class UploadTests(ApiTestCase):
    @async_test
    async def test_start(self) -> None:
        reply = await self.call("POST", "/v2/repo/blobs/uploads/")
        self.assertStatus(reply, 202)
        location = reply.header("Location") or ""
        self.assertRegex(location, rf"^/v2/repo/blobs/uploads/{UUID_RE}$")
        self.assertEqual(reply.header("Range"), "0-0")
        self.assertEqual(reply.header("Docker-Upload-UUID"), location.rsplit("/", 1)[-1])
        second = await self.start_upload("repo")
        self.assertNotEqual(location, second)

    @async_test
    async def test_chunked_in_order(self) -> None:
        data = os.urandom(25)
        location = await self.start_upload("repo")
        first = await self.call("PATCH", location, data[:10], {"Content-Range": "0-9"})
        self.assertStatus(first, 202)
        self.assertEqual(first.header("Range"), "0-9")
        self.assertEqual(first.header("Location"), location)
        self.assertEqual(first.header("Docker-Upload-UUID"), location.rsplit("/", 1)[-1])
        second = await self.call("PATCH", location, data[10:], {"Content-Range": "10-24"})
        self.assertStatus(second, 202)
        self.assertEqual(second.header("Range"), "0-24")

        status = await self.call("GET", location)
        self.assertStatus(status, 204)
        self.assertEqual(status.header("Range"), "0-24")
        self.assertEqual(status.header("Location"), location)
        self.assertEqual(status.header("Docker-Upload-UUID"), location.rsplit("/", 1)[-1])

        blob = digest(data)
        done = await self.call("PUT", f"{location}?digest={blob}")
        self.assertStatus(done, 201)
        self.assertEqual(done.header("Location"), f"/v2/repo/blobs/{blob}")
        self.assertEqual(done.header("Docker-Content-Digest"), blob)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{blob}")).body, data)
        self.assertEqual(await self.files_under("repo", ".uploads"), [])
        self.assertError(await self.call("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")

    @async_test
    async def test_out_of_order_chunk_is_refused_and_changes_nothing(self) -> None:
        data = os.urandom(30)
        location = await self.start_upload("repo")
        self.assertStatus(await self.call("PATCH", location, data[:10], {"Content-Range": "0-9"}), 202)
        for header, body in (("20-29", data[20:]), ("0-9", data[:10]), ("5-14", data[5:15])):
            reply = await self.call("PATCH", location, body, {"Content-Range": header})
            self.assertError(reply, 416, None)
            self.assertEqual(reply.header("Range"), "0-9", header)
            status = await self.call("GET", location)
            self.assertStatus(status, 204)
            self.assertEqual(status.header("Range"), "0-9")
        self.assertStatus(await self.call("PATCH", location, data[10:], {"Content-Range": "10-29"}), 202)
        self.assertStatus(await self.call("PUT", f"{location}?digest={digest(data)}"), 201)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{digest(data)}")).body, data)

    @async_test
    async def test_content_range_not_matching_body(self) -> None:
        location = await self.start_upload("repo")
        for header in ("0-9", "0-3", "5-1", "garbage"):
            reply = await self.call("PATCH", location, b"12345", {"Content-Range": header})
            self.assertError(reply, 416, None)
        status = await self.call("GET", location)
        self.assertEqual(status.header("Range"), "0-0")
        self.assertStatus(await self.call("PATCH", location, b"12345", {"Content-Range": "0-4"}), 202)
        self.assertEqual((await self.call("GET", location)).header("Range"), "0-4")

    @async_test
    async def test_streamed_patches_without_content_range(self) -> None:
        location = await self.start_upload("repo")
        first = await self.call("PATCH", location, b"a" * 100)
        self.assertStatus(first, 202)
        self.assertEqual(first.header("Range"), "0-99")
        second = await self.call("PATCH", location, b"b" * 50)
        self.assertEqual(second.header("Range"), "0-149")
        data = b"a" * 100 + b"b" * 50
        self.assertStatus(await self.call("PUT", f"{location}?digest={digest(data)}"), 201)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{digest(data)}")).body, data)

    @async_test
    async def test_put_with_final_chunk(self) -> None:
        data = os.urandom(64)
        location = await self.start_upload("repo")
        await self.call("PATCH", location, data[:40], {"Content-Range": "0-39"})
        done = await self.call("PUT", f"{location}?digest={digest(data)}", data[40:])
        self.assertStatus(done, 201)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{digest(data)}")).body, data)

    @async_test
    async def test_put_with_final_chunk_and_content_range(self) -> None:
        data = os.urandom(64)
        location = await self.start_upload("repo")
        await self.call("PATCH", location, data[:40], {"Content-Range": "0-39"})
        done = await self.call("PUT", f"{location}?digest={digest(data)}", data[40:], {"Content-Range": "40-63"})
        self.assertStatus(done, 201)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{digest(data)}")).body, data)

    @async_test
    async def test_streamed_upload_post_empty_then_put_whole_body(self) -> None:
        data = os.urandom(5000)
        reply = await self.call("POST", "/v2/repo/blobs/uploads/", b"")  # the Agent sends Content-Length: 0
        self.assertStatus(reply, 202)
        location = reply.header("Location")
        done = await self.call("PUT", f"{location}?digest={digest(data)}", data)
        self.assertStatus(done, 201)
        self.assertEqual(done.header("Location"), f"/v2/repo/blobs/{digest(data)}")
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{digest(data)}")).body, data)

    @async_test
    async def test_put_with_sha512_digest(self) -> None:
        data = os.urandom(300)
        location = await self.start_upload("repo")
        await self.call("PATCH", location, data, {"Content-Range": "0-299"})
        blob = digest(data, "sha512")
        self.assertStatus(await self.call("PUT", f"{location}?digest={blob}"), 201)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{blob}")).body, data)

    @async_test
    async def test_put_without_digest(self) -> None:
        location = await self.start_upload("repo")
        await self.call("PATCH", location, b"abc")
        self.assertError(await self.call("PUT", location), 400, "DIGEST_INVALID")
        self.assertEqual(await self.files_under("repo", "blobs"), [])

    @async_test
    async def test_put_with_malformed_digest(self) -> None:
        location = await self.start_upload("repo")
        self.assertError(await self.call("PUT", f"{location}?digest=sha256:xyz", b"abc"), 400, "DIGEST_INVALID")

    @async_test
    async def test_put_with_wrong_digest(self) -> None:
        data = b"actual bytes"
        location = await self.start_upload("repo")
        await self.call("PATCH", location, data, {"Content-Range": f"0-{len(data) - 1}"})
        wrong = digest(b"other bytes")
        self.assertError(await self.call("PUT", f"{location}?digest={wrong}"), 400, "DIGEST_INVALID")
        self.assertError(await self.call("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("GET", f"/v2/repo/blobs/{wrong}"), 404, "BLOB_UNKNOWN")
        self.assertError(await self.call("GET", f"/v2/repo/blobs/{digest(data)}"), 404, "BLOB_UNKNOWN")
        self.assertEqual(await self.files_under("repo", "blobs"), [])
        self.assertEqual(await self.files_under("repo", ".uploads"), [])

    @async_test
    async def test_cancel(self) -> None:
        location = await self.start_upload("repo")
        await self.call("PATCH", location, b"abc")
        self.assertStatus(await self.call("DELETE", location), 204)
        self.assertError(await self.call("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("PATCH", location, b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("PUT", f"{location}?digest={digest(b'abc')}"), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("DELETE", location), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertEqual(await self.files_under("repo", ".uploads"), [])

    @async_test
    async def test_garbage_session_ids(self) -> None:
        await self.start_upload("repo")
        never = str(uuid.uuid4())
        for session in ("not-a-uuid", "..", never, never.upper(), "x" * 300, "%2E%2E"):
            location = f"/v2/repo/blobs/uploads/{session}"
            self.assertError(await self.call("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
            self.assertError(await self.call("PATCH", location, b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
            self.assertError(
                await self.call("PUT", f"{location}?digest={digest(b'abc')}", b"abc"), 404, "BLOB_UPLOAD_UNKNOWN"
            )
            self.assertError(await self.call("DELETE", location), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertFalse(await self.stored.exists("x"))
        self.assertEqual(await self.files_under("repo", "blobs"), [])

    @async_test
    async def test_encoded_dot_dot_session(self) -> None:
        """``..%2F..%2Fx`` is a session id (one path segment) that names no session."""
        await self.start_upload("repo")
        location = "/v2/repo/blobs/uploads/..%2F..%2Fx"
        self.assertError(await self.call("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("PATCH", location, b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("PUT", f"{location}?digest={digest(b'abc')}", b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("DELETE", location), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertFalse(await self.stored.exists("x"))
        self.assertFalse(await self.stored.exists("repo", "x"))

    @async_test
    async def test_dot_dot_session_in_the_raw_path(self) -> None:
        """``/v2/repo/blobs/uploads/../../x`` names no session, and writes nothing outside the repo."""
        await self.start_upload("repo")
        location = "/v2/repo/blobs/uploads/../../x"
        self.assertError(await self.call("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("PATCH", location, b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertFalse(await self.stored.exists("x"))
        self.assertFalse(await self.stored.exists("repo", "x"))

    @async_test
    async def test_session_of_another_repository(self) -> None:
        location = await self.start_upload("one")
        await self.start_upload("two")
        elsewhere = location.replace("/v2/one/", "/v2/two/")
        self.assertError(await self.call("GET", elsewhere), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(await self.call("PATCH", elsewhere, b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")

    @async_test
    async def test_chunked_transfer_encoding_bodies(self) -> None:
        """Go clients send bodies without Content-Length (Transfer-Encoding: chunked)."""
        data = os.urandom(300_000)
        blob = digest(data)
        mono = await self.call("POST", f"/v2/one/blobs/uploads/?digest={blob}", ChunkedBody(data))
        self.assertStatus(mono, 201)
        self.assertEqual((await self.call("GET", f"/v2/one/blobs/{blob}")).body, data)

        location = await self.start_upload("two")
        first = await self.call("PATCH", location, ChunkedBody(data[:100_000]))
        self.assertEqual(first.header("Range"), "0-99999")
        second = await self.call("PATCH", location, ChunkedBody(data[100_000:200_000]), {"Content-Range": "100000-199999"})
        self.assertEqual(second.header("Range"), "0-199999")
        self.assertStatus(await self.call("PUT", f"{location}?digest={blob}", ChunkedBody(data[200_000:])), 201)
        self.assertEqual((await self.call("GET", f"/v2/two/blobs/{blob}")).body, data)

    @async_test
    async def test_finishing_an_upload_of_a_blob_that_already_exists(self) -> None:
        data = b"same bytes twice"
        await self.push_blob("repo", data)
        location = await self.start_upload("repo")
        await self.call("PATCH", location, data)
        self.assertStatus(await self.call("PUT", f"{location}?digest={digest(data)}"), 201)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{digest(data)}")).body, data)
        self.assertEqual(await self.files_under("repo", ".uploads"), [])
        self.assertError(await self.call("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")

    @async_test
    async def test_session_survives_a_restart(self) -> None:
        """A second server on the same storage (a restart, or a relay) continues the session."""
        data = os.urandom(2000)
        location = await self.start_upload("repo")
        await self.call("PATCH", location, data[:1000], {"Content-Range": "0-999"})
        self.base = await self.start_registry()
        status = await self.call("GET", location)
        self.assertStatus(status, 204)
        self.assertEqual(status.header("Range"), "0-999")
        self.assertStatus(await self.call("PATCH", location, data[1000:], {"Content-Range": "1000-1999"}), 202)
        self.assertStatus(await self.call("PUT", f"{location}?digest={digest(data)}"), 201)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{digest(data)}")).body, data)

    @async_test
    async def test_large_chunked_upload(self) -> None:
        data = os.urandom(20 * 1024 * 1024)
        location = await self.start_upload("repo")
        cuts = [0, 7 * 1024 * 1024, 14 * 1024 * 1024 + 13, len(data)]
        for start, end in zip(cuts, cuts[1:]):
            reply = await self.call("PATCH", location, data[start:end], {"Content-Range": f"{start}-{end - 1}"})
            self.assertStatus(reply, 202)
            self.assertEqual(reply.header("Range"), f"0-{end - 1}")
        blob = digest(data)
        self.assertStatus(await self.call("PUT", f"{location}?digest={blob}"), 201)
        got = await self.call("GET", f"/v2/repo/blobs/{blob}")
        self.assertEqual(got.length, len(data))
        self.assertEqual(digest(got.body), blob)
        tail = await self.call("GET", f"/v2/repo/blobs/{blob}", headers={"Range": "bytes=-10"})
        self.assertEqual(tail.body, data[-10:])


# ==================================================================================================


class Conversation(Protocol):
    """A client that sends raw bytes when told and waits for what the server answers."""

    def __init__(self) -> None:
        self.received = b""
        self._waiting: list[tuple[bytes, int, defer.Deferred[None]]] = []
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for waiting in list(self._waiting):
            marker, count, arrived = waiting
            if self.received.count(marker) >= count:
                self._waiting.remove(waiting)
                arrived.callback(None)

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(None)

    def until(self, marker: bytes, count: int = 1) -> defer.Deferred[None]:
        """Fire once ``marker`` was received ``count`` times (or fail after 10 s)."""
        arrived: defer.Deferred[None] = defer.Deferred()
        if self.received.count(marker) >= count:
            arrived.callback(None)
        else:
            self._waiting.append((marker, count, arrived))
        return arrived.addTimeout(10, reactor)


class StreamedUploadTests(ApiTestCase):
    """Blob bodies of 1 MiB or more reach storage while they arrive (zotpy.api.streaming)."""

    BLOB = bytes(range(256)) * (26 * 1024 + 5)  # ~6.5 MiB: past S3's 5 MiB part minimum

    async def converse(self) -> Conversation:
        host, port = self.base.rsplit("/", 1)[-1].split(":")
        conversation = Conversation()
        await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), conversation)
        self.addCleanup(lambda: conversation.transport.abortConnection())
        return conversation

    async def eventually(self, look: Callable[[], Awaitable[Any]], expected: Any) -> None:
        """Wait until ``look()`` gives ``expected`` (the server cleans up a little after its client
        left: an abort goes on by itself); fail with what it gives after 10 s."""
        for _ in range(200):
            if await look() == expected:
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(await look(), expected)

    def push_head(self, blob_digest: str, *headers: str) -> bytes:
        """The head of a monolithic push of :attr:`BLOB` to ``repo``, sent by hand."""
        lines = [f"POST /v2/repo/blobs/uploads/?digest={blob_digest} HTTP/1.1", "Host: x"]
        lines += [f"Content-Length: {len(self.BLOB)}", *headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def settled(self, *parts: str, expected: list[str]) -> None:
        await self.eventually(lambda: self.files_under(*parts), expected)

    @async_test
    async def test_pushed_whole_and_in_chunks(self) -> None:
        blob_digest = await self.push_blob("repo", self.BLOB)
        location = await self.start_upload("repo")
        half = len(self.BLOB) // 2
        self.assertStatus(await self.call("PATCH", location, self.BLOB[:half], {"Content-Range": f"0-{half - 1}"}), 202)
        finished = await self.call("PUT", f"{location}?digest={blob_digest}", self.BLOB[half:])
        self.assertStatus(finished, 201)
        pulled = await self.call("GET", f"/v2/repo/blobs/{blob_digest}")
        self.assertEqual(hashlib.sha256(pulled.body).hexdigest(), blob_digest.split(":")[1])
        await self.settled("repo", "blobs", expected=[f"sha256/{blob_digest.split(':')[1]}"])

    @async_test
    async def test_a_layer_pushed_as_docker_pushes_it(self) -> None:
        """POST, one PATCH of the whole layer with chunked transfer coding, PUT with the digest."""
        location = await self.start_upload("repo")
        patched = await self.call("PATCH", location, ChunkedBody(self.BLOB))
        self.assertStatus(patched, 202)
        self.assertEqual(patched.header("Range"), f"0-{len(self.BLOB) - 1}")
        blob_digest = digest(self.BLOB)
        self.assertStatus(await self.call("PUT", f"{location}?digest={blob_digest}"), 201)
        pulled = await self.call("GET", f"/v2/repo/blobs/{blob_digest}")
        self.assertEqual(digest(pulled.body), blob_digest)

    @async_test
    async def test_a_chunk_of_undeclared_length_is_handled_while_it_arrives(self) -> None:
        conversation = await self.converse()
        session = "/v2/repo/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f"
        head = f"PATCH {session} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        piece = self.BLOB[: 1024 * 1024]
        conversation.transport.write(head + b"%x\r\n" % len(piece) + piece + b"\r\n")
        await conversation.until(b"BLOB_UPLOAD_UNKNOWN")
        self.assertTrue(conversation.received.startswith(b"HTTP/1.1 404 "), conversation.received[:200])
        conversation.transport.write(b"%x\r\n" % len(piece) + piece + b"\r\n0\r\n\r\nGET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        await conversation.until(b"HTTP/1.1 ", 2)
        self.assertIn(b"HTTP/1.1 200 ", conversation.received.split(b"BLOB_UPLOAD_UNKNOWN", 1)[1])

    @async_test
    async def test_other_bytes_are_refused_and_leave_nothing(self) -> None:
        wrong = digest(b"something else")
        reply = await self.call("POST", f"/v2/repo/blobs/uploads/?digest={wrong}", self.BLOB)
        self.assertError(reply, 400, "DIGEST_INVALID")
        self.assertEqual(await self.call_status("HEAD", f"/v2/repo/blobs/{wrong}"), 404)
        self.assertEqual(await self.call_status("HEAD", f"/v2/repo/blobs/{digest(self.BLOB)}"), 404)
        await self.settled("repo", "blobs", expected=[])
        await self.settled("repo", ".uploads", expected=[])
        await self.nothing_unfinished("repo")

    async def unfinished(self, repo: str) -> list[str]:
        """Stored bytes that no listing shows: S3's multipart uploads never completed."""
        return []

    async def nothing_unfinished(self, repo: str) -> None:
        await self.eventually(lambda: self.unfinished(repo), [])

    async def call_status(self, method: str, path: str) -> int:
        return (await self.call(method, path)).status

    @async_test
    async def test_an_answer_before_the_body_keeps_the_connection_in_step(self) -> None:
        """The reply comes as soon as the handler knows it (here: no such upload); the rest of the
        body is then received and dropped, and the connection serves its next request."""
        conversation = await self.converse()
        session = "/v2/repo/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f"
        head = f"PATCH {session} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(self.BLOB)}\r\n\r\n".encode()
        conversation.transport.write(head + self.BLOB[: 1024 * 1024])
        await conversation.until(b"BLOB_UPLOAD_UNKNOWN")  # with most of the body not even sent
        self.assertTrue(conversation.received.startswith(b"HTTP/1.1 404 "), conversation.received[:200])
        conversation.transport.write(self.BLOB[1024 * 1024 :] + b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        await conversation.until(b"HTTP/1.1 ", 2)
        self.assertIn(b"HTTP/1.1 200 ", conversation.received.split(b"BLOB_UPLOAD_UNKNOWN", 1)[1])

    @async_test
    async def test_expect_continue(self) -> None:
        """curl asks before sending a large body: 100 Continue comes first, then the body is streamed."""
        conversation = await self.converse()
        blob_digest = digest(self.BLOB)
        conversation.transport.write(self.push_head(blob_digest, "Expect: 100-continue"))
        await conversation.until(b"\r\n\r\n")
        self.assertEqual(conversation.received, b"HTTP/1.1 100 Continue\r\n\r\n")
        conversation.transport.write(self.BLOB)
        await conversation.until(b"HTTP/1.1 201 ")
        self.assertEqual(await self.call_status("HEAD", f"/v2/repo/blobs/{blob_digest}"), 200)

    @async_test
    async def test_a_client_gone_midway_leaves_nothing(self) -> None:
        conversation = await self.converse()
        blob_digest = digest(self.BLOB)
        conversation.transport.write(self.push_head(blob_digest) + self.BLOB[: 3 * 1024 * 1024])
        await deferLater(reactor, 0.2, lambda: None)  # what was sent is being stored
        conversation.transport.loseConnection()
        await conversation.closed
        await self.settled("repo", "blobs", expected=[])
        await self.settled("repo", ".uploads", expected=[])
        await self.nothing_unfinished("repo")
        self.assertEqual(await self.call_status("HEAD", f"/v2/repo/blobs/{blob_digest}"), 404)
        # the same push, whole, then works
        self.assertEqual(await self.push_blob("repo", self.BLOB), blob_digest)

    @async_test
    async def test_a_chunk_cut_short_is_not_appended(self) -> None:
        """An upload keeps only whole chunks: the client can resume from the Range it is told."""
        location = await self.start_upload("repo")
        first = self.BLOB[: 2 * 1024 * 1024]
        self.assertStatus(await self.call("PATCH", location, first, {"Content-Range": f"0-{len(first) - 1}"}), 202)
        conversation = await self.converse()
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(self.BLOB)}\r\n"
            f"Content-Range: {len(first)}-{len(first) + len(self.BLOB) - 1}\r\n\r\n"
        ).encode()
        conversation.transport.write(head + self.BLOB[: 3 * 1024 * 1024])
        await deferLater(reactor, 0.2, lambda: None)
        conversation.transport.loseConnection()
        await conversation.closed
        # The session's lock holds this until the cut chunk was handled: then it starts where the
        # first chunk ended (else 416).
        rest = self.BLOB[len(first) :]
        resumed = await self.call("PATCH", location, rest, {"Content-Range": f"{len(first)}-{len(self.BLOB) - 1}"})
        self.assertStatus(resumed, 202)
        self.assertEqual(resumed.header("Range"), f"0-{len(self.BLOB) - 1}")
        finished = await self.call("PUT", f"{location}?digest={digest(self.BLOB)}")
        self.assertStatus(finished, 201)


class MountTests(ApiTestCase):
    @async_test
    async def test_mount_existing(self) -> None:
        blob = await self.push_blob("source", b"shared layer")
        reply = await self.call("POST", f"/v2/target/blobs/uploads/?mount={blob}&from=source")
        self.assertStatus(reply, 201)
        self.assertEqual(reply.header("Location"), f"/v2/target/blobs/{blob}")
        self.assertEqual(reply.header("Docker-Content-Digest"), blob)
        got = await self.call("GET", f"/v2/target/blobs/{blob}")
        self.assertStatus(got, 200)
        self.assertEqual(got.body, b"shared layer")
        # the mounted blob is usable by a manifest of the target repository
        config = encode({"os": "linux"})
        await self.push_blob("target", config)
        manifest = encode(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, b"shared layer")],
            }
        )
        await self.push_manifest("target", "v1", manifest, OCI_MANIFEST)

    async def assertSession(self, reply: Reply, repo: str) -> None:
        self.assertStatus(reply, 202)
        location = reply.header("Location") or ""
        self.assertRegex(location, rf"^/v2/{repo}/blobs/uploads/{UUID_RE}$")
        self.assertStatus(await self.call("GET", location), 204)

    @async_test
    async def test_mount_missing_blob_starts_a_session(self) -> None:
        await self.push_blob("source", b"something")
        missing = digest(b"not there")
        reply = await self.call("POST", f"/v2/target/blobs/uploads/?mount={missing}&from=source")
        await self.assertSession(reply, "target")
        self.assertError(await self.call("GET", f"/v2/target/blobs/{missing}"), 404, "BLOB_UNKNOWN")

    @async_test
    async def test_mount_from_missing_repository_starts_a_session(self) -> None:
        blob = await self.push_blob("source", b"something")
        reply = await self.call("POST", f"/v2/target/blobs/uploads/?mount={blob}&from=nowhere")
        await self.assertSession(reply, "target")
        self.assertError(await self.call("GET", f"/v2/target/blobs/{blob}"), 404, "BLOB_UNKNOWN")

    @async_test
    async def test_mount_without_from_starts_a_session(self) -> None:
        blob = await self.push_blob("source", b"something")
        reply = await self.call("POST", f"/v2/target/blobs/uploads/?mount={blob}")
        await self.assertSession(reply, "target")
        self.assertError(await self.call("GET", f"/v2/target/blobs/{blob}"), 404, "BLOB_UNKNOWN")


# ==================================================================================================


class ManifestTests(ApiTestCase):
    async def check_pushed(self, repo: str, tag: str | None, image: Image, reply: Reply) -> None:
        self.assertStatus(reply, 201)
        self.assertEqual(reply.header("Location"), f"/v2/{repo}/manifests/{image.digest}")
        self.assertEqual(reply.header("Docker-Content-Digest"), image.digest)
        for reference in (image.digest,) + ((tag,) if tag else ()):
            got = await self.call("GET", f"/v2/{repo}/manifests/{reference}")
            self.assertStatus(got, 200)
            self.assertEqual(got.body, image.body)
            self.assertEqual(got.header("Content-Type"), image.media_type)
            self.assertEqual(got.header("Docker-Content-Digest"), image.digest)
            self.assertEqual(got.length, len(image.body))
            head = await self.call("HEAD", f"/v2/{repo}/manifests/{reference}")
            self.assertStatus(head, 200)
            self.assertEqual(head.body, b"")
            self.assertEqual(head.header("Content-Length"), str(len(image.body)))
            self.assertEqual(head.header("Content-Type"), image.media_type)
            self.assertEqual(head.header("Docker-Content-Digest"), image.digest)

    @async_test
    async def test_oci_manifest_by_tag(self) -> None:
        image = await self.build_image("repo", layers=2)
        reply = await self.push_manifest("repo", "v1", image.body, OCI_MANIFEST)
        await self.check_pushed("repo", "v1", image, reply)
        self.assertEqual(await self.tags("repo"), ["v1"])

    @async_test
    async def test_oci_manifest_by_digest(self) -> None:
        image = await self.build_image("repo")
        reply = await self.push_manifest("repo", image.digest, image.body, OCI_MANIFEST)
        await self.check_pushed("repo", None, image, reply)
        self.assertEqual(await self.tags("repo"), [])

    @async_test
    async def test_oci_index(self) -> None:
        index = await self.push_index("repo", "multi")
        await self.check_pushed("repo", "multi", index, await self.push_manifest("repo", "multi", index.body, OCI_INDEX))
        by_digest = await self.push_index("repo2", "x")
        await self.check_pushed(
            "repo2", None, by_digest, await self.push_manifest("repo2", by_digest.digest, by_digest.body, OCI_INDEX)
        )

    @async_test
    async def test_docker_schema2_manifest(self) -> None:
        image = await self.build_image("repo", media_type=DOCKER_MANIFEST)
        await self.check_pushed("repo", "v2", image, await self.push_manifest("repo", "v2", image.body, DOCKER_MANIFEST))
        other = await self.build_image("repo", media_type=DOCKER_MANIFEST)
        await self.check_pushed(
            "repo", None, other, await self.push_manifest("repo", other.digest, other.body, DOCKER_MANIFEST)
        )

    @async_test
    async def test_docker_manifest_list(self) -> None:
        index = await self.push_index("repo", "list", media_type=DOCKER_LIST)
        await self.check_pushed("repo", "list", index, await self.push_manifest("repo", "list", index.body, DOCKER_LIST))
        await self.check_pushed(
            "repo", None, index, await self.push_manifest("repo", index.digest, index.body, DOCKER_LIST)
        )

    @async_test
    async def test_media_type_from_content_type_when_the_body_has_none(self) -> None:
        image = await self.build_image("repo")
        document = dict(image.manifest)
        del document["mediaType"]
        body = encode(document)
        await self.push_manifest("repo", "v1", body, OCI_MANIFEST)
        got = await self.call("GET", "/v2/repo/manifests/v1")
        self.assertEqual(got.header("Content-Type"), OCI_MANIFEST)
        self.assertEqual(got.body, body)

    @async_test
    async def test_content_type_with_parameters(self) -> None:
        image = await self.build_image("repo")
        await self.push_manifest("repo", "v1", image.body, OCI_MANIFEST + "; charset=utf-8")
        self.assertEqual((await self.call("GET", "/v2/repo/manifests/v1")).header("Content-Type"), OCI_MANIFEST)

    @async_test
    async def test_pushed_bytes_are_kept_verbatim(self) -> None:
        image = await self.build_image("repo")
        pretty = json.dumps(image.manifest, indent=3).encode() + b"\n"
        reply = await self.push_manifest("repo", "v1", pretty, OCI_MANIFEST)
        self.assertEqual(reply.header("Docker-Content-Digest"), digest(pretty))
        self.assertEqual((await self.call("GET", "/v2/repo/manifests/v1")).body, pretty)

    @async_test
    async def test_no_content_type_header(self) -> None:
        image = await self.build_image("repo")
        await self.push_manifest("repo", "v1", image.body, None)
        self.assertEqual((await self.call("GET", "/v2/repo/manifests/v1")).header("Content-Type"), OCI_MANIFEST)

    @async_test
    async def test_delete_then_push_again(self) -> None:
        image = await self.push_image("repo", "v1")
        self.assertStatus(await self.call("DELETE", f"/v2/repo/manifests/{image.digest}"), 202)
        await self.push_manifest("repo", "v1", image.body, OCI_MANIFEST)
        got = await self.call("GET", "/v2/repo/manifests/v1")
        self.assertEqual(got.body, image.body)
        self.assertEqual(await self.tags("repo"), ["v1"])

    @async_test
    async def test_repush_is_idempotent(self) -> None:
        image = await self.push_image("repo", "v1")
        reply = await self.push_manifest("repo", "v1", image.body, OCI_MANIFEST)
        self.assertEqual(reply.header("Docker-Content-Digest"), image.digest)
        self.assertEqual(await self.tags("repo"), ["v1"])

    @async_test
    async def test_missing_layer(self) -> None:
        image = await self.build_image("repo")
        missing = b"never uploaded layer"
        document = dict(image.manifest, layers=image.manifest["layers"] + [descriptor(OCI_LAYER, missing)])
        reply = await self.push_manifest("repo", "v1", encode(document), OCI_MANIFEST, expect=None)
        entry = self.assertError(reply, 400, "MANIFEST_BLOB_UNKNOWN")
        self.assertIn(digest(missing), json.dumps(entry.get("detail")))
        self.assertError(await self.call("GET", "/v2/repo/manifests/v1"), 404, "MANIFEST_UNKNOWN")
        self.assertEqual(await self.tags("repo"), [])

    @async_test
    async def test_missing_config(self) -> None:
        image = await self.build_image("repo")
        document = dict(image.manifest, config=descriptor(OCI_CONFIG, b"{}"))
        reply = await self.push_manifest("repo", "v1", encode(document), OCI_MANIFEST, expect=None)
        self.assertError(reply, 400, "MANIFEST_BLOB_UNKNOWN")

    @async_test
    async def test_layer_present_only_in_another_repository(self) -> None:
        image = await self.build_image("one")
        reply = await self.push_manifest("two", "v1", image.body, OCI_MANIFEST, expect=None)
        self.assertError(reply, 400, "MANIFEST_BLOB_UNKNOWN")
        # A refused push creates nothing: "two" does not appear in the catalog.
        catalog = await self.call("GET", "/v2/_catalog")
        self.assertNotIn("two", json.loads(catalog.body)["repositories"])

    @async_test
    async def test_index_with_missing_child(self) -> None:
        index = await self.push_index("repo", "x")
        document = dict(index.manifest)
        document["manifests"] = document["manifests"] + [descriptor(OCI_MANIFEST, b'{"not":"pushed"}')]
        reply = await self.push_manifest("repo", "multi", encode(document), OCI_INDEX, expect=None)
        self.assertError(reply, 400, "MANIFEST_BLOB_UNKNOWN")
        self.assertError(await self.call("GET", "/v2/repo/manifests/multi"), 404, "MANIFEST_UNKNOWN")

    @async_test
    async def test_missing_nondistributable_layer_is_accepted(self) -> None:
        image = await self.build_image("repo")
        foreign = descriptor(OCI_NONDIST_LAYER, b"windows base layer")
        document = dict(image.manifest, layers=image.manifest["layers"] + [foreign])
        await self.push_manifest("repo", "nondist", encode(document), OCI_MANIFEST)

    @async_test
    async def test_missing_layer_with_urls_is_accepted(self) -> None:
        image = await self.build_image("repo", media_type=DOCKER_MANIFEST)
        foreign = descriptor(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            b"foreign",
            urls=["https://example.com/layer"],
        )
        plain_with_urls = descriptor(OCI_LAYER, b"elsewhere", urls=["https://example.com/other"])
        document = dict(image.manifest, layers=image.manifest["layers"] + [foreign])
        await self.push_manifest("repo", "foreign", encode(document), DOCKER_MANIFEST)
        oci = await self.build_image("repo")
        document = dict(oci.manifest, layers=oci.manifest["layers"] + [plain_with_urls])
        await self.push_manifest("repo", "urls", encode(document), OCI_MANIFEST)

    @async_test
    async def test_invalid_manifests(self) -> None:
        image = await self.build_image("repo")
        cases = [
            (b"{not json", OCI_MANIFEST),
            (b"[]", OCI_MANIFEST),
            (b"\xff\xfe", OCI_MANIFEST),
            (encode(dict(image.manifest, schemaVersion=1)), OCI_MANIFEST),
            (encode(dict(image.manifest, schemaVersion=3)), OCI_MANIFEST),
            (encode({k: v for k, v in image.manifest.items() if k != "schemaVersion"}), OCI_MANIFEST),
            (image.body, DOCKER_MANIFEST),  # body says OCI manifest, header says Docker
            (image.body, OCI_INDEX),  # body says manifest, header says index
            (encode({k: v for k, v in image.manifest.items() if k != "config"}), OCI_MANIFEST),
            (encode(dict(image.manifest, layers=[{"mediaType": OCI_LAYER, "digest": "sha256:zz", "size": 1}])), OCI_MANIFEST),
            (encode(dict(image.manifest, layers=[dict(image.manifest["layers"][0], size=-1)])), OCI_MANIFEST),
            (encode({"schemaVersion": 2, "mediaType": OCI_INDEX}), OCI_INDEX),  # index without manifests
            (encode(dict(image.manifest, subject={"mediaType": OCI_MANIFEST, "digest": "sha256:1", "size": 1})), OCI_MANIFEST),
            (encode(dict(image.manifest, mediaType="application/vnd.example.unknown")), None),
        ]
        for body, media_type in cases:
            reply = await self.push_manifest("repo", "bad", body, media_type, expect=None)
            self.assertError(reply, 400, "MANIFEST_INVALID")
        self.assertEqual(await self.tags("repo"), [])

    @async_test
    async def test_docker_schema1_is_refused(self) -> None:
        schema1 = encode(
            {
                "schemaVersion": 1,
                "name": "repo",
                "tag": "v1",
                "architecture": "amd64",
                "fsLayers": [{"blobSum": digest(b"x")}],
                "history": [{"v1Compatibility": "{}"}],
                "signatures": [],
            }
        )
        for media_type in (DOCKER_SCHEMA1, "application/vnd.docker.distribution.manifest.v1+json"):
            reply = await self.push_manifest("repo", "v1", schema1, media_type, expect=None)
            self.assertError(reply, 400, "MANIFEST_INVALID")
        # a schema 2 body declaring the schema 1 media type is refused too
        image = await self.build_image("repo")
        reply = await self.push_manifest("repo", "v1", image.body, DOCKER_SCHEMA1, expect=None)
        self.assertError(reply, 400, "MANIFEST_INVALID")

    @async_test
    async def test_push_by_digest_that_does_not_match(self) -> None:
        image = await self.build_image("repo")
        other = digest(image.body + b" ")
        reply = await self.push_manifest("repo", other, image.body, OCI_MANIFEST, expect=None)
        self.assertError(reply, 400, "DIGEST_INVALID")
        self.assertError(await self.call("GET", f"/v2/repo/manifests/{other}"), 404, "MANIFEST_UNKNOWN")
        self.assertError(await self.call("GET", f"/v2/repo/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")

    @async_test
    async def test_push_by_malformed_digest(self) -> None:
        image = await self.build_image("repo")
        reply = await self.push_manifest("repo", "sha256:abc", image.body, OCI_MANIFEST, expect=None)
        self.assertError(reply, 400, "DIGEST_INVALID")
        self.assertError(await self.call("GET", "/v2/repo/manifests/sha256:abc"), 400, "DIGEST_INVALID")

    @async_test
    async def test_sha512_manifest(self) -> None:
        image = await self.build_image("repo")
        reference = digest(image.body, "sha512")
        reply = await self.push_manifest("repo", reference, image.body, OCI_MANIFEST)
        self.assertEqual(reply.header("Docker-Content-Digest"), reference)
        self.assertEqual(reply.header("Location"), f"/v2/repo/manifests/{reference}")
        got = await self.call("GET", f"/v2/repo/manifests/{reference}")
        self.assertStatus(got, 200)
        self.assertEqual(got.body, image.body)
        self.assertEqual(got.header("Docker-Content-Digest"), reference)
        head = await self.call("HEAD", f"/v2/repo/manifests/{reference}")
        self.assertEqual(head.header("Content-Length"), str(len(image.body)))

    async def oversized(self, size: int) -> tuple[Image, bytes]:
        image = await self.build_image("repo")
        document = dict(image.manifest, annotations={"padding": ""})
        padding = size - len(encode(document))
        document["annotations"]["padding"] = "x" * padding
        body = encode(document)
        self.assertEqual(len(body), size)
        return image, body

    async def assertNoBlobOfSize(self, size: int) -> None:
        for name in await self.files_under("repo", "blobs"):
            self.assertNotEqual(await self.stored.size("repo", "blobs", *name.split("/")), size, name)

    @async_test
    async def test_too_large_manifest_with_content_length(self) -> None:
        _, body = await self.oversized(MAX_MANIFEST + 1)
        reply = await self.push_manifest("repo", "big", body, OCI_MANIFEST, expect=None)
        self.assertIn(self.assertError(reply, 413, None)["code"], ("SIZE_INVALID", "MANIFEST_INVALID"))
        self.assertError(await self.call("GET", "/v2/repo/manifests/big"), 404, "MANIFEST_UNKNOWN")
        await self.assertNoBlobOfSize(len(body))
        self.assertEqual(await self.tags("repo"), [])

    @async_test
    async def test_too_large_manifest_chunked(self) -> None:
        _, body = await self.oversized(MAX_MANIFEST + 1)
        reply = await self.call("PUT", "/v2/repo/manifests/big", ChunkedBody(body), {"Content-Type": OCI_MANIFEST})
        self.assertIn(self.assertError(reply, 413, None)["code"], ("SIZE_INVALID", "MANIFEST_INVALID"))
        self.assertError(await self.call("GET", "/v2/repo/manifests/big"), 404, "MANIFEST_UNKNOWN")
        await self.assertNoBlobOfSize(len(body))

    @async_test
    async def test_too_large_manifest_is_refused_before_its_body_arrives(self) -> None:
        """The checklist: the 4 MiB limit is enforced before reading the whole body.

        Only the headers of a PUT declaring 100 MiB are sent; the 413 must come without
        waiting for (and spooling) the body.
        """
        host, port = self.base.rsplit(":", 1)
        exchange = RawExchange(
            b"PUT /v2/repo/manifests/huge HTTP/1.1\r\nHost: registry\r\n"
            b"Content-Type: " + OCI_MANIFEST.encode() + b"\r\nContent-Length: 104857600\r\n\r\n" + b"{" * 1024
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", int(port)), exchange)
        await task.deferLater(reactor, 2.0, lambda: None)
        received = exchange.received
        exchange.transport.abortConnection()
        await exchange.closed
        self.assertTrue(received.startswith(b"HTTP/1.1 413"), f"after 2 s the server answered {received[:200]!r}")

    @async_test
    async def test_manifest_of_exactly_the_limit_is_accepted(self) -> None:
        _, body = await self.oversized(MAX_MANIFEST)
        reply = await self.push_manifest("repo", "limit", body, OCI_MANIFEST)
        self.assertEqual(reply.header("Docker-Content-Digest"), digest(body))
        self.assertEqual((await self.call("GET", "/v2/repo/manifests/limit")).body, body)

    @async_test
    async def test_chunked_manifest_push(self) -> None:
        image = await self.build_image("repo")
        reply = await self.call("PUT", "/v2/repo/manifests/v1", ChunkedBody(image.body), {"Content-Type": OCI_MANIFEST})
        self.assertStatus(reply, 201)
        self.assertEqual((await self.call("GET", "/v2/repo/manifests/v1")).body, image.body)

    @async_test
    async def test_invalid_tags(self) -> None:
        image = await self.build_image("repo")
        for tag in (".hidden", "-dash", "bad!tag", "t" * 129):
            reply = await self.push_manifest("repo", tag, image.body, OCI_MANIFEST, expect=None)
            self.assertError(reply, 400, None)
            # Reading by a string outside the tag grammar names no manifest (the conformance suite wants 404).
            self.assertError(await self.call("GET", f"/v2/repo/manifests/{tag}"), 404, "MANIFEST_UNKNOWN")
        self.assertEqual(await self.tags("repo"), [])
        await self.push_manifest("repo", "_" + "t" * 127, image.body, OCI_MANIFEST)

    @async_test
    async def test_unknown_manifest(self) -> None:
        await self.push_image("repo", "v1")
        self.assertError(await self.call("GET", "/v2/repo/manifests/v2"), 404, "MANIFEST_UNKNOWN")
        self.assertError(await self.call("HEAD", "/v2/repo/manifests/v2"), 404, None)
        self.assertError(await self.call("GET", f"/v2/repo/manifests/{digest(b'x')}"), 404, "MANIFEST_UNKNOWN")

    @async_test
    async def test_unknown_repository(self) -> None:
        entry = self.assertError(await self.call("GET", "/v2/nothing/manifests/latest"), 404, None)
        self.assertIn(entry["code"], ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))
        self.assertError(await self.call("HEAD", "/v2/nothing/manifests/latest"), 404, None)
        entry = self.assertError(await self.call("DELETE", "/v2/nothing/manifests/latest"), 404, None)
        self.assertIn(entry["code"], ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))

    @async_test
    async def test_manifest_of_another_repository(self) -> None:
        image = await self.push_image("one", "v1")
        await self.push_image("two", "v2")
        self.assertError(await self.call("GET", f"/v2/two/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
        self.assertError(await self.call("GET", "/v2/two/manifests/v1"), 404, "MANIFEST_UNKNOWN")

    @async_test
    async def test_extra_tags_by_query(self) -> None:
        image = await self.build_image("repo")
        await self.call("PUT", f"/v2/repo/manifests/{image.digest}?tag=a&tag=b", image.body, {"Content-Type": OCI_MANIFEST})
        self.assertEqual(await self.tags("repo"), ["a", "b"])


# ==================================================================================================


class TagTests(ApiTestCase):
    async def tag_many(self, repo: str, tags: list[str]) -> Image:
        image = await self.build_image(repo)
        for tag in tags:
            await self.push_manifest(repo, tag, image.body, OCI_MANIFEST)
        return image

    @async_test
    async def test_sorted(self) -> None:
        await self.tag_many("repo", ["b", "a", "c", "10", "1", "B"])
        reply = await self.call("GET", "/v2/repo/tags/list")
        self.assertStatus(reply, 200)
        self.assertEqual(reply.header("Content-Type"), "application/json")
        self.assertEqual(reply.json(), {"name": "repo", "tags": ["1", "10", "B", "a", "b", "c"]})
        self.assertIsNone(reply.header("Link"))

    @async_test
    async def test_nested_name(self) -> None:
        await self.tag_many("library/alpine", ["3.19"])
        reply = await self.call("GET", "/v2/library/alpine/tags/list")
        self.assertEqual(reply.json(), {"name": "library/alpine", "tags": ["3.19"]})

    @async_test
    async def test_pagination_follows_links_to_the_end(self) -> None:
        tags = sorted(f"t{i:02d}" for i in range(8))
        await self.tag_many("repo", tags)
        first = await self.call("GET", "/v2/repo/tags/list?n=3")
        self.assertEqual(first.json()["tags"], tags[:3])
        self.assertEqual(first.header("Link"), f'</v2/repo/tags/list?n=3&last={tags[2]}>; rel="next"')
        seen, path, pages = [], "/v2/repo/tags/list?n=3", 0
        while path:
            reply = await self.call("GET", path)
            self.assertStatus(reply, 200)
            page = reply.json()["tags"]
            self.assertLessEqual(len(page), 3)
            seen.extend(page)
            pages += 1
            link = reply.header("Link")
            path = re.fullmatch(r'<([^>]+)>; rel="next"', link).group(1) if link else ""
            self.assertLess(pages, 10)
        self.assertEqual(seen, tags)
        self.assertEqual(pages, 3)

    @async_test
    async def test_pagination_exact_multiple(self) -> None:
        tags = ["a", "b", "c", "d"]
        await self.tag_many("repo", tags)
        first = await self.call("GET", "/v2/repo/tags/list?n=2")
        self.assertEqual(first.json()["tags"], ["a", "b"])
        self.assertIsNotNone(first.header("Link"))
        last = await self.call("GET", "/v2/repo/tags/list?n=2&last=b")
        self.assertEqual(last.json()["tags"], ["c", "d"])
        self.assertIsNone(last.header("Link"))

    @async_test
    async def test_n_and_last_variants(self) -> None:
        await self.tag_many("repo", ["a", "b", "c"])
        zero = await self.call("GET", "/v2/repo/tags/list?n=0")
        self.assertStatus(zero, 200)
        self.assertEqual(zero.json()["tags"], [])
        big = await self.call("GET", "/v2/repo/tags/list?n=100")
        self.assertEqual(big.json()["tags"], ["a", "b", "c"])
        self.assertIsNone(big.header("Link"))
        after = await self.call("GET", "/v2/repo/tags/list?last=a")
        self.assertEqual(after.json()["tags"], ["b", "c"])
        between = await self.call("GET", "/v2/repo/tags/list?n=1&last=aa")
        self.assertEqual(between.json()["tags"], ["b"])
        end = await self.call("GET", "/v2/repo/tags/list?n=2&last=c")
        self.assertEqual(end.json()["tags"], [])
        self.assertIsNone(end.header("Link"))

    @async_test
    async def test_bad_n(self) -> None:
        await self.tag_many("repo", ["a"])
        for n in ("abc", "-1", "1.5", ""):
            self.assertError(await self.call("GET", f"/v2/repo/tags/list?n={n}"), 400, None)

    @async_test
    async def test_unknown_repository(self) -> None:
        self.assertError(await self.call("GET", "/v2/nothing/tags/list"), 404, "NAME_UNKNOWN")

    @async_test
    async def test_moving_a_tag(self) -> None:
        first = await self.push_image("repo", "latest")
        second = await self.push_image("repo", "latest")
        got = await self.call("GET", "/v2/repo/manifests/latest")
        self.assertEqual(got.header("Docker-Content-Digest"), second.digest)
        self.assertEqual(got.body, second.body)
        self.assertStatus(await self.call("GET", f"/v2/repo/manifests/{first.digest}"), 200)
        self.assertEqual(await self.tags("repo"), ["latest"])

    @async_test
    async def test_delete_by_tag_keeps_the_manifest(self) -> None:
        image = await self.tag_many("repo", ["v1", "v2"])
        self.assertStatus(await self.call("DELETE", "/v2/repo/manifests/v1"), 202)
        self.assertError(await self.call("GET", "/v2/repo/manifests/v1"), 404, "MANIFEST_UNKNOWN")
        self.assertStatus(await self.call("GET", f"/v2/repo/manifests/{image.digest}"), 200)
        self.assertStatus(await self.call("GET", "/v2/repo/manifests/v2"), 200)
        self.assertEqual(await self.tags("repo"), ["v2"])
        self.assertStatus(await self.call("DELETE", "/v2/repo/manifests/v2"), 202)
        self.assertEqual(await self.tags("repo"), [])
        self.assertStatus(await self.call("GET", f"/v2/repo/manifests/{image.digest}"), 200)
        self.assertError(await self.call("DELETE", "/v2/repo/manifests/v2"), 404, "MANIFEST_UNKNOWN")

    @async_test
    async def test_delete_by_digest_removes_all_tags(self) -> None:
        image = await self.tag_many("repo", ["v1", "v2"])
        other = await self.push_image("repo", "other")
        self.assertStatus(await self.call("DELETE", f"/v2/repo/manifests/{image.digest}"), 202)
        self.assertError(await self.call("GET", f"/v2/repo/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
        self.assertError(await self.call("HEAD", f"/v2/repo/manifests/{image.digest}"), 404, None)
        self.assertError(await self.call("GET", "/v2/repo/manifests/v1"), 404, "MANIFEST_UNKNOWN")
        self.assertError(await self.call("GET", "/v2/repo/manifests/v2"), 404, "MANIFEST_UNKNOWN")
        self.assertEqual(await self.tags("repo"), ["other"])
        self.assertStatus(await self.call("GET", f"/v2/repo/manifests/{other.digest}"), 200)
        self.assertError(await self.call("DELETE", f"/v2/repo/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")

    @async_test
    async def test_delete_untagged_manifest_after_moving_its_tag(self) -> None:
        first = await self.push_image("repo", "latest")
        await self.push_image("repo", "latest")
        self.assertStatus(await self.call("DELETE", f"/v2/repo/manifests/{first.digest}"), 202)
        self.assertError(await self.call("GET", f"/v2/repo/manifests/{first.digest}"), 404, "MANIFEST_UNKNOWN")
        self.assertEqual(await self.tags("repo"), ["latest"])


# ==================================================================================================


class CatalogTests(ApiTestCase):
    async def make_repositories(self, names: list[str]) -> None:
        for name in names:
            await self.push_image(name, "v1")

    @async_test
    async def test_empty(self) -> None:
        reply = await self.call("GET", "/v2/_catalog")
        self.assertStatus(reply, 200)
        self.assertEqual(reply.json(), {"repositories": []})

    @async_test
    async def test_nested_names_sorted(self) -> None:
        await self.make_repositories(["zeta", "library/alpine", "a/b", "a", "a/b/c", "a-b"])
        reply = await self.call("GET", "/v2/_catalog")
        self.assertStatus(reply, 200)
        self.assertEqual(reply.header("Content-Type"), "application/json")
        self.assertEqual(reply.json(), {"repositories": ["a", "a-b", "a/b", "a/b/c", "library/alpine", "zeta"]})

    @async_test
    async def test_pagination(self) -> None:
        names = sorted(["a", "a/b", "library/alpine", "library/busybox", "zeta"])
        await self.make_repositories(names)
        seen, path, pages = [], "/v2/_catalog?n=2", 0
        while path:
            reply = await self.call("GET", path)
            self.assertStatus(reply, 200)
            page = reply.json()["repositories"]
            self.assertLessEqual(len(page), 2)
            seen.extend(page)
            pages += 1
            link = reply.header("Link")
            if link:
                match = re.fullmatch(r'<(/v2/_catalog\?[^>]+)>; rel="next"', link)
                self.assertIsNotNone(match, link)
                path = match.group(1)
            else:
                path = ""
            self.assertLess(pages, 10)
        self.assertEqual(seen, names)
        self.assertEqual(pages, 3)
        after = await self.call("GET", "/v2/_catalog?last=a/b")
        self.assertEqual(after.json()["repositories"], names[2:])

    @async_test
    async def test_bad_n(self) -> None:
        self.assertError(await self.call("GET", "/v2/_catalog?n=x"), 400, None)
        self.assertError(await self.call("GET", "/v2/_catalog?n=-1"), 400, None)

    @async_test
    async def test_n_zero_and_last_past_the_end(self) -> None:
        await self.make_repositories(["a", "b"])
        self.assertEqual((await self.call("GET", "/v2/_catalog?n=0")).json()["repositories"], [])
        end = await self.call("GET", "/v2/_catalog?n=5&last=z")
        self.assertEqual(end.json()["repositories"], [])
        self.assertIsNone(end.header("Link"))

    @async_test
    async def test_stray_directories_are_not_repositories(self) -> None:
        await self.make_repositories(["real"])
        await self.stored.make_directory("plain", "dir")
        await self.stored.write(b'{"schemaVersion":2,"manifests":[]}', "Not_Valid", "index.json")
        await self.stored.write(b'{"schemaVersion":2,"manifests":[]}', ".trash", "old", "index.json")
        self.assertEqual((await self.call("GET", "/v2/_catalog")).json()["repositories"], ["real"])

    @async_test
    async def test_repository_with_only_blobs(self) -> None:
        """An upload creates the repository layout, as zot does; the catalog may list it."""
        await self.push_blob("blobsonly", b"x")
        reply = await self.call("GET", "/v2/_catalog")
        self.assertStatus(reply, 200)
        self.assertIn(reply.json()["repositories"], ([], ["blobsonly"]))


# ==================================================================================================


class ReferrerTests(ApiTestCase):
    async def push_artifact(
        self, repo: str, subject: dict[str, Any], artifact_type: str | None, annotations: dict[str, str] | None = None,
        config_type: str = "application/vnd.oci.empty.v1+json",
    ) -> tuple[bytes, Reply]:
        config = b"{}"
        await self.push_blob(repo, config)
        layer = f"signature {uuid.uuid4()}".encode()
        await self.push_blob(repo, layer)
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config_type, config),
            "layers": [descriptor("application/octet-stream", layer)],
            "subject": subject,
        }
        if artifact_type is not None:
            document["artifactType"] = artifact_type
        if annotations is not None:
            document["annotations"] = annotations
        body = encode(document)
        reply = await self.push_manifest(repo, digest(body), body, OCI_MANIFEST)
        return body, reply

    async def referrers(self, repo: str, subject: str, query: str = "") -> Reply:
        reply = await self.call("GET", f"/v2/{repo}/referrers/{subject}{query}")
        self.assertStatus(reply, 200)
        self.assertEqual(reply.header("Content-Type"), OCI_INDEX)
        document = reply.json()
        self.assertEqual(document["schemaVersion"], 2)
        self.assertEqual(document["mediaType"], OCI_INDEX)
        return reply

    @async_test
    async def test_empty_for_unknown_digest(self) -> None:
        await self.push_image("repo", "v1")
        for repo in ("repo", "unknown"):
            reply = await self.referrers(repo, digest(b"nothing"))
            self.assertEqual(reply.json()["manifests"], [])

    @async_test
    async def test_artifacts_with_subject(self) -> None:
        image = await self.push_image("repo", "v1")
        subject = descriptor(OCI_MANIFEST, image.body)
        sbom, reply = await self.push_artifact("repo", subject, "application/spdx+json", {"org.example": "sbom"})
        self.assertEqual(reply.header("OCI-Subject"), image.digest)
        sig, _ = await self.push_artifact("repo", subject, None, None, config_type="application/vnd.example.sig")
        listed = (await self.referrers("repo", image.digest)).json()["manifests"]
        by_digest = {entry["digest"]: entry for entry in listed}
        self.assertEqual(set(by_digest), {digest(sbom), digest(sig)})
        self.assertEqual(
            by_digest[digest(sbom)],
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest(sbom),
                "size": len(sbom),
                "artifactType": "application/spdx+json",
                "annotations": {"org.example": "sbom"},
            },
        )
        self.assertEqual(by_digest[digest(sig)]["artifactType"], "application/vnd.example.sig")
        self.assertEqual(by_digest[digest(sig)]["size"], len(sig))
        self.assertNotIn("annotations", by_digest[digest(sig)])
        # the subject's own referrers index does not list the subject, and other digests have none
        self.assertEqual((await self.referrers("repo", digest(sbom))).json()["manifests"], [])

    @async_test
    async def test_subject_that_does_not_exist(self) -> None:
        ghost = descriptor(OCI_MANIFEST, b'{"ghost":true}')
        body, reply = await self.push_artifact("repo", ghost, "application/vnd.example")
        self.assertEqual(reply.header("OCI-Subject"), ghost["digest"])
        listed = (await self.referrers("repo", ghost["digest"])).json()["manifests"]
        self.assertEqual([entry["digest"] for entry in listed], [digest(body)])

    @async_test
    async def test_no_oci_subject_header_without_subject(self) -> None:
        image = await self.build_image("repo")
        reply = await self.push_manifest("repo", "v1", image.body, OCI_MANIFEST)
        self.assertIsNone(reply.header("OCI-Subject"))

    @async_test
    async def test_artifact_type_filter(self) -> None:
        image = await self.push_image("repo", "v1")
        subject = descriptor(OCI_MANIFEST, image.body)
        sbom, _ = await self.push_artifact("repo", subject, "application/spdx+json")
        await self.push_artifact("repo", subject, "application/vnd.example.sig")
        reply = await self.referrers("repo", image.digest, "?artifactType=application/spdx%2Bjson")
        self.assertEqual(reply.header("OCI-Filters-Applied"), "artifactType")
        self.assertEqual([entry["digest"] for entry in reply.json()["manifests"]], [digest(sbom)])
        none = await self.referrers("repo", image.digest, "?artifactType=application/none")
        self.assertEqual(none.header("OCI-Filters-Applied"), "artifactType")
        self.assertEqual(none.json()["manifests"], [])
        unfiltered = await self.referrers("repo", image.digest)
        self.assertIsNone(unfiltered.header("OCI-Filters-Applied"))
        self.assertEqual(len(unfiltered.json()["manifests"]), 2)

    @async_test
    async def test_index_with_subject(self) -> None:
        image = await self.push_image("repo", "v1")
        index = await self.push_index(
            "repo", "x", subject=descriptor(OCI_MANIFEST, image.body), artifactType="application/vnd.example.index",
            annotations={"k": "v"},
        )
        reply = await self.push_manifest("repo", index.digest, index.body, OCI_INDEX)
        self.assertEqual(reply.header("OCI-Subject"), image.digest)
        listed = (await self.referrers("repo", image.digest)).json()["manifests"]
        self.assertEqual(
            listed,
            [
                {
                    "mediaType": OCI_INDEX,
                    "digest": index.digest,
                    "size": len(index.body),
                    "artifactType": "application/vnd.example.index",
                    "annotations": {"k": "v"},
                }
            ],
        )

    @async_test
    async def test_deleted_referrer_disappears(self) -> None:
        image = await self.push_image("repo", "v1")
        body, _ = await self.push_artifact("repo", descriptor(OCI_MANIFEST, image.body), "application/x")
        self.assertStatus(await self.call("DELETE", f"/v2/repo/manifests/{digest(body)}"), 202)
        self.assertEqual((await self.referrers("repo", image.digest)).json()["manifests"], [])

    @async_test
    async def test_referrers_are_per_repository(self) -> None:
        image = await self.push_image("one", "v1")
        await self.push_artifact("one", descriptor(OCI_MANIFEST, image.body), "application/x")
        self.assertEqual((await self.referrers("two", image.digest)).json()["manifests"], [])

    @async_test
    async def test_bad_digest(self) -> None:
        await self.push_image("repo", "v1")
        for text in ("sha256:abc", "latest", "md5:" + hashlib.md5(b"").hexdigest()):
            self.assertError(await self.call("GET", f"/v2/repo/referrers/{text}"), 400, "DIGEST_INVALID")


# ==================================================================================================


class NameTests(ApiTestCase):
    @async_test
    async def test_invalid_names_on_every_route_family(self) -> None:
        blob = digest(b"x")
        session = str(uuid.uuid4())
        for name in INVALID_NAMES:
            requests = [
                ("GET", f"/v2/{name}/tags/list", None),
                ("GET", f"/v2/{name}/manifests/latest", None),
                ("HEAD", f"/v2/{name}/manifests/latest", None),
                ("PUT", f"/v2/{name}/manifests/latest", b"{}"),
                ("DELETE", f"/v2/{name}/manifests/latest", None),
                ("GET", f"/v2/{name}/blobs/{blob}", None),
                ("HEAD", f"/v2/{name}/blobs/{blob}", None),
                ("DELETE", f"/v2/{name}/blobs/{blob}", None),
                ("POST", f"/v2/{name}/blobs/uploads/", None),
                ("POST", f"/v2/{name}/blobs/uploads/?digest={blob}", b"x"),
                ("POST", f"/v2/{name}/blobs/uploads/?mount={blob}&from=repo", None),
                ("GET", f"/v2/{name}/blobs/uploads/{session}", None),
                ("PATCH", f"/v2/{name}/blobs/uploads/{session}", b"x"),
                ("PUT", f"/v2/{name}/blobs/uploads/{session}?digest={blob}", b"x"),
                ("DELETE", f"/v2/{name}/blobs/uploads/{session}", None),
                ("GET", f"/v2/{name}/referrers/{blob}", None),
            ]
            for method, path, body in requests:
                reply = await self.call(method, path, body)
                with self.subTest_(method, path):
                    self.assertError(reply, 400, "NAME_INVALID")
        self.assertEqual(await self.stored.top_level(), [])

    def subTest_(self, method: str, path: str) -> Any:
        """trial has no subTest; a context manager that prefixes failures with the request."""
        testcase = self

        class _Context:
            def __enter__(self) -> None:
                return None

            def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
                if isinstance(value, testcase.failureException):
                    raise testcase.failureException(f"{method} {path[:80]}: {value}") from None
                return False

        return _Context()

    @async_test
    async def test_invalid_mount_source_does_not_mount(self) -> None:
        blob = await self.push_blob("repo", b"x")
        reply = await self.call("POST", f"/v2/target/blobs/uploads/?mount={blob}&from=UPPER")
        self.assertIn(reply.status, (202, 400), str(reply))
        if reply.status == 400:
            self.assertError(reply, 400, "NAME_INVALID")
        self.assertError(await self.call("GET", f"/v2/target/blobs/{blob}"), 404, "BLOB_UNKNOWN")

    @async_test
    async def test_an_escaped_slash_names_the_nested_repository(self) -> None:
        """The app serves ``team%2Fapp`` as ``team/app``: what the route table (and so the cluster's
        owner, access control and metrics) must match (tests/test_routes.py)."""
        await self.push_image("team/app", "v1")
        reply = await self.call("GET", "/v2/team%2Fapp/tags/list")
        self.assertEqual(json.loads(reply.body), {"name": "team/app", "tags": ["v1"]})

    @async_test
    async def test_paths_that_are_not_utf8_get_the_spec_error_of_their_part(self) -> None:
        """``%ff`` reads as U+FFFD, which no name, tag, digest or session holds (zotpy.api.paths):
        the error JSON of the part it is in, not Klein's plain text and a logged traceback."""
        for method, path, status, code in [
            ("GET", "/v2/%ff/tags/list", 400, "NAME_INVALID"),
            ("GET", "/v2/a/manifests/v%ff", 404, "MANIFEST_UNKNOWN"),
            ("PUT", "/v2/a/manifests/v%ff", 400, "MANIFEST_INVALID"),
            ("GET", "/v2/a/blobs/sha256:%ff", 400, "DIGEST_INVALID"),
            ("PATCH", "/v2/a/blobs/uploads/%ff", 404, "BLOB_UPLOAD_UNKNOWN"),
            ("GET", "/%ff", 404, "UNSUPPORTED"),
        ]:
            reply = await self.call(method, path, b"{}" if method in ("PUT", "PATCH") else None)
            with self.subTest_(method, path):
                self.assertError(reply, status, code)
        self.assertEqual(await self.stored.top_level(), [])

    @async_test
    async def test_longest_valid_name(self) -> None:
        name = "/".join(["a" * 50] * 5) + "b"  # 255 characters
        await self.push_image(name, "v1")
        self.assertEqual(await self.tags(name), ["v1"])
        self.assertError(await self.call("GET", f"/v2/{name}b/tags/list"), 400, "NAME_INVALID")


# ==================================================================================================


class StorageLayoutTests(ApiTestCase):
    @async_test
    async def test_zot_layout_on_disk(self) -> None:
        image = await self.push_image("library/alpine", "3.19")
        repo = ("library", "alpine")
        self.assertEqual(json.loads(await self.stored.read(*repo, "oci-layout")), {"imageLayoutVersion": "1.0.0"})
        index = json.loads(await self.stored.read(*repo, "index.json"))
        self.assertEqual(index["schemaVersion"], 2)
        self.assertEqual(
            index["manifests"],
            [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": image.digest,
                    "size": len(image.body),
                    "annotations": {REF_NAME: "3.19"},
                }
            ],
        )
        expected = sorted(
            f"sha256/{hashlib.sha256(data).hexdigest()}" for data in image.blobs + (image.body,)
        )
        self.assertEqual(await self.files_under("library", "alpine", "blobs"), expected)
        self.assertEqual(await self.stored.read(*repo, "blobs", "sha256", image.digest.split(":")[1]), image.body)
        self.assertEqual(await self.files_under("library", "alpine", ".uploads"), [])

    @async_test
    async def test_tag_move_and_delete_in_index_json(self) -> None:
        first = await self.push_image("repo", "latest")
        second = await self.push_image("repo", "latest")
        entries = json.loads(await self.stored.read("repo", "index.json"))["manifests"]
        tagged = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) == "latest"]
        self.assertEqual([e["digest"] for e in tagged], [second.digest])
        self.assertIn(first.digest, [e["digest"] for e in entries])

    async def write_zot_repository(self, repo: str, index: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> None:
        await self.stored.write(b'{\n    "imageLayoutVersion": "1.0.0"\n}', repo, "oci-layout")
        await self.stored.write(json.dumps(index).encode(), repo, "index.json")
        for data in blobs:
            await self.stored.write(data, repo, "blobs", "sha256", hashlib.sha256(data).hexdigest())

    @async_test
    async def test_zot_index_with_null_manifests(self) -> None:
        await self.write_zot_repository("zotrepo", {"schemaVersion": 2, "manifests": None})
        reply = await self.call("GET", "/v2/zotrepo/tags/list")
        self.assertStatus(reply, 200)
        self.assertIn(reply.json()["tags"], ([], None))
        self.assertError(await self.call("GET", "/v2/zotrepo/manifests/latest"), 404, "MANIFEST_UNKNOWN")
        self.assertEqual((await self.referrers_count("zotrepo")), 0)
        image = await self.push_image("zotrepo", "latest")
        self.assertEqual(await self.tags("zotrepo"), ["latest"])
        self.assertEqual((await self.call("GET", "/v2/zotrepo/manifests/latest")).body, image.body)
        index = json.loads(await self.stored.read("zotrepo", "index.json"))
        self.assertEqual([e["digest"] for e in index["manifests"]], [image.digest])

    async def referrers_count(self, repo: str) -> int:
        reply = await self.call("GET", f"/v2/{repo}/referrers/{digest(b'x')}")
        self.assertStatus(reply, 200)
        return len(reply.json()["manifests"])

    @async_test
    async def test_zot_written_repository_is_served(self) -> None:
        config = b'{"architecture":"amd64","os":"linux"}'
        layer = b"zot layer bytes"
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, layer)],
            },
            indent=2,
        ).encode()
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "annotations": {REF_NAME: "v1", "org.example.keep": "me"},
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
            "annotations": {"zot": "index"},
        }
        await self.write_zot_repository("zot/written", index, (config, layer, manifest))
        self.assertEqual(await self.tags("zot/written"), ["v1"])
        got = await self.call("GET", "/v2/zot/written/manifests/v1")
        self.assertEqual(got.body, manifest)
        self.assertEqual(got.header("Docker-Content-Digest"), digest(manifest))
        self.assertEqual((await self.call("GET", f"/v2/zot/written/blobs/{digest(layer)}")).body, layer)
        self.assertIn("zot/written", (await self.call("GET", "/v2/_catalog")).json()["repositories"])
        await self.push_image("zot/written", "v2")
        rewritten = json.loads(await self.stored.read("zot", "written", "index.json"))
        self.assertEqual(rewritten.get("annotations"), {"zot": "index"})
        kept = rewritten["manifests"][0]
        self.assertEqual(kept["annotations"], {REF_NAME: "v1", "org.example.keep": "me"})
        self.assertEqual(kept["platform"], {"architecture": "amd64", "os": "linux"})

    @async_test
    async def test_concurrent_tag_pushes(self) -> None:
        base = await self.build_image("repo")
        bodies = {}
        for i in range(20):
            document = dict(base.manifest, annotations={"n": str(i)})
            bodies[f"t{i:02d}"] = encode(document)
        calls = [
            defer.ensureDeferred(self.call("PUT", f"/v2/repo/manifests/{tag}", body, {"Content-Type": OCI_MANIFEST}))
            for tag, body in bodies.items()
        ]
        results = await defer.DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)
        for ok, reply in results:
            self.assertTrue(ok)
            self.assertStatus(reply, 201)
        self.assertEqual(await self.tags("repo"), sorted(bodies))
        entries = json.loads(await self.stored.read("repo", "index.json"))["manifests"]
        self.assertEqual(
            sorted((e["annotations"][REF_NAME], e["digest"]) for e in entries),
            sorted((tag, digest(body)) for tag, body in bodies.items()),
        )
        for tag, body in bodies.items():
            self.assertEqual((await self.call("GET", f"/v2/repo/manifests/{tag}")).body, body)

    @async_test
    async def test_concurrent_uploads_of_the_same_blob(self) -> None:
        data = os.urandom(100_000)
        calls = [
            defer.ensureDeferred(self.call("POST", f"/v2/repo/blobs/uploads/?digest={digest(data)}", data))
            for _ in range(10)
        ]
        results = await defer.DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)
        self.assertEqual([reply.status for _, reply in results], [201] * 10)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{digest(data)}")).body, data)
        self.assertEqual(await self.files_under("repo", ".uploads"), [])


def recording_sent_length(finish: Callable[[Any], None], sent: list[tuple[int, int]]) -> Callable[[Any], None]:
    """``Request.finish`` that first notes each blob GET's listening port and ``sentLength``."""

    def recording(request: Any) -> None:
        if request.method == b"GET" and b"/blobs/" in request.path:
            sent.append((request.getHost().port, request.sentLength))
        finish(request)

    return recording


class _BreakingReader:
    """A blob reader that sends half of the blob, then fails as a storage backend going away would."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def _send(self, consumer: Any, length: int) -> None:
        consumer.write(b"x" * (length // 2))
        raise StorageError("the backend went away mid-body")

    def send(self, consumer: Any, length: int) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._send(consumer, length))

    def close(self) -> None:
        pass


class _BreakingDriver(LocalDriver):
    def reader(self, path: str, offset: int = 0, length: int | None = None) -> defer.Deferred[Any]:
        return super().reader(path, offset, length).addCallback(lambda opened: _BreakingReader(opened.size))


class MidBodyFailureTests(unittest.TestCase):
    @async_test
    async def test_a_failure_after_the_headers_cuts_the_connection(self) -> None:
        """The status line is out: an error document now would be read as body bytes (and leave the
        keep-alive connection out of step), so the client must see the body short and the end."""
        root = self.mktemp()
        os.makedirs(root)
        data = os.urandom(200_000)
        base = await serve(self, registry_resource(ImageStore(_BreakingDriver(root, reactor, reactor.getThreadPool()))))
        http = http_client(self)
        pushed = await http.post(f"{base}/v2/repo/blobs/uploads/?digest={digest(data)}".encode(), data=data)
        self.assertEqual(pushed.code, 201)
        await pushed.content()
        host, port = base.removeprefix("http://").split(":")
        exchange = RawExchange(f"GET /v2/repo/blobs/{digest(data)} HTTP/1.1\r\nHost: registry\r\n\r\n".encode())
        await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), exchange)
        await exchange.closed  # closed by the server
        head, _, body = exchange.received.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"Content-Length: 200000", head)
        self.assertEqual(body, b"x" * 100_000)  # short, and nothing after it
        self.assertEqual(len(self.flushLoggedErrors(StorageError)), 1)
