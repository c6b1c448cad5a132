"""The whole API suite of tests/test_api.py, on S3 (a real SeaweedFS) instead of local disk.

Each class of the local suite is subclassed with :class:`OnS3`, which swaps the two storage hooks:
the registry's store gets an :class:`S3Driver` under a rootdirectory of its own in the shared
bucket, and the tests' look behind the registry's back reads and writes the bucket, under the same
(zot-shaped) keys.
"""

from __future__ import annotations

import os

from twisted.internet import reactor

import tests.test_api as api
from tests.seaweed import SeaweedServer, shared_server
from tests.support import serve
from zotpy.api.site import registry_resource
from zotpy.storage.driver import StorageError
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.s3.driver import S3Driver
from zotpy.storage.s3.bucket import S3Bucket
from zotpy.storage.s3.client import RetryPolicy, S3Client
from zotpy.storage.s3.settings import S3Settings


class BucketFiles:
    """:class:`tests.test_api.DiskFiles` for a bucket: the same questions, asked of S3 keys."""

    def __init__(self, bucket: S3Bucket, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    async def files_under(self, *parts: str) -> list[str]:
        top = self._key(*parts) + "/"
        objects, _ = await self.bucket.list_all(top, None)
        return sorted(key[len(top):] for key, _ in objects)

    async def read(self, *parts: str) -> bytes:
        reply = await self.bucket.get(self._key(*parts))
        if reply is None:
            raise FileNotFoundError(self._key(*parts))
        return reply.body

    async def write(self, data: bytes, *parts: str) -> None:
        await self.bucket.put(self._key(*parts), data)

    async def make_directory(self, *parts: str) -> None:
        """A bucket has no empty directories: a directory holding one stray object stands for one."""
        await self.write(b"", *parts, ".keep")

    async def exists(self, *parts: str) -> bool:
        if await self.bucket.head(self._key(*parts)) is not None:
            return True
        return bool((await self.bucket.list_page(self._key(*parts) + "/", None, None, limit=1)).objects)

    async def size(self, *parts: str) -> int:
        reply = await self.bucket.head(self._key(*parts))
        assert reply is not None
        return int(reply.header("Content-Length") or 0)

    async def top_level(self) -> list[str]:
        objects, prefixes = await self.bucket.list_all(self.prefix, "/")
        return sorted([key[len(self.prefix):] for key, _ in objects] + [p[len(self.prefix):] for p in prefixes])


class OnS3:
    """Mixin for an :class:`tests.test_api.ApiTestCase`: its registry stores in S3."""

    settings: S3Settings

    def make_storage(self) -> BucketFiles:
        self.settings = shared_server().settings()
        driver = self.driver()
        return BucketFiles(driver.bucket, driver.prefix)

    retry = RetryPolicy()

    def driver(self) -> S3Driver:
        pool = reactor.getThreadPool()
        driver = S3Driver(self.settings, reactor, pool, S3Client(self.settings, reactor, pool, self.retry))
        self.addCleanup(driver.close)  # type: ignore[attr-defined]
        return driver

    async def start_registry(self) -> str:
        return await serve(self, registry_resource(ImageStore(self.driver())))  # type: ignore[arg-type]


class S3BaseTests(OnS3, api.BaseTests):
    pass


class S3BlobTests(OnS3, api.BlobTests):
    splices_large_blobs = True


class S3UploadTests(OnS3, api.UploadTests):
    pass


class S3StreamedUploadTests(OnS3, api.StreamedUploadTests):
    async def unfinished(self, repo: str) -> list[str]:
        return [str(upload) for upload in await self.stored.bucket.list_uploads(self.stored._key(repo) + "/")]


class S3MountTests(OnS3, api.MountTests):
    pass


class S3ManifestTests(OnS3, api.ManifestTests):
    pass


class S3TagTests(OnS3, api.TagTests):
    pass


class S3CatalogTests(OnS3, api.CatalogTests):
    pass


class S3ReferrerTests(OnS3, api.ReferrerTests):
    pass


class S3NameTests(OnS3, api.NameTests):
    pass


class S3StorageLayoutTests(OnS3, api.StorageLayoutTests):
    pass


class S3OutageTests(OnS3, api.ApiTestCase):
    """S3 stops in the middle of an upload: clients get OCI errors (503 ``UNAVAILABLE`` with
    ``Retry-After``), never a traceback or a partial blob; once S3 is back, the session goes on
    from the state it left in the bucket. The test breaks a SeaweedFS of its own."""

    retry = RetryPolicy(attempts=2)  # the outage is not transient: fail fast

    def make_storage(self) -> BucketFiles:
        self.server = SeaweedServer()
        self.addCleanup(self.server.stop, 0)
        self.server.start()
        self.settings = self.server.settings()
        driver = self.driver()
        return BucketFiles(driver.bucket, driver.prefix)

    @api.async_test
    async def test_s3_stopped_mid_upload(self) -> None:
        mib = 1024 * 1024
        data = os.urandom(8 * mib)
        blob = api.digest(data)
        location = await self.start_upload("repo")
        first = await self.call("PATCH", location, data[: 6 * mib], {"Content-Range": f"0-{6 * mib - 1}"})
        self.assertStatus(first, 202)

        self.server.stop(0, keep=True)  # SIGKILL, as a crash
        rest = data[6 * mib :]
        for method, path, body, headers in (
            ("PATCH", location, rest, {"Content-Range": f"{6 * mib}-{len(data) - 1}"}),
            ("PUT", f"{location}?digest={blob}", rest, {}),
            ("GET", location, None, {}),
            ("GET", f"/v2/repo/blobs/{blob}", None, {}),
            ("HEAD", f"/v2/repo/blobs/{blob}", None, {}),
            ("GET", "/v2/repo/tags/list", None, {}),
            ("POST", f"/v2/other/blobs/uploads/?digest={api.digest(b'x')}", b"x", {}),
        ):
            reply = await self.call(method, path, body, headers)
            self.assertError(reply, 503, "UNAVAILABLE")
            self.assertEqual(reply.header("Retry-After"), "5", str(reply))
        # "No answer from S3" is logged as one warning line per request, not a traceback each.
        self.assertEqual(self.flushLoggedErrors(StorageError), [])

        self.server.start()  # same ports, same data
        self.assertEqual(await self.files_under("repo", "blobs"), [])
        self.assertError(await self.call("GET", f"/v2/repo/blobs/{blob}"), 404, "BLOB_UNKNOWN")
        status = await self.call("GET", location)
        self.assertStatus(status, 204)
        self.assertEqual(status.header("Range"), f"0-{6 * mib - 1}")
        self.assertStatus(await self.call("PATCH", location, rest, {"Content-Range": f"{6 * mib}-{len(data) - 1}"}), 202)
        self.assertStatus(await self.call("PUT", f"{location}?digest={blob}"), 201)
        self.assertEqual((await self.call("GET", f"/v2/repo/blobs/{blob}")).body, data)
