"""The hot reads (zotpy.api.hotreads): what they answer is what the app answers, byte for byte and
header for header, and a manifest kept in memory follows its tag when the tag moves."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from tests.driversuite import async_test
from tests.support import local_store, serve
from tests.test_api import ApiTestCase, Reply
from zotpy.api import hotreads
from zotpy.api.registry import RegistryApp
from zotpy.api.site import registry_resource
from zotpy.observability.metrics import MeteredDriver, StorageMetrics
from zotpy.storage.breaker import BreakerDriver

#: Longer than hotreads.SETTLE_SECONDS: an index.json this old is kept.
SETTLED = 0.25
#: Headers that may differ between two replies to the same request.
_PER_REPLY = {b"date"}


@implementer(IResource)
class _Counting:
    """The app behind the hot reads, counting what it was handed."""

    isLeaf = True

    def __init__(self, app: IResource) -> None:
        self.app = app
        self.rendered = 0

    def render(self, request: IRequest) -> Any:
        self.rendered += 1
        return self.app.render(request)


def _headers(reply: Reply) -> dict[bytes, list[bytes]]:
    return {name.lower(): values for name, values in reply.headers.getAllRawHeaders() if name.lower() not in _PER_REPLY}


class HotReadsTests(ApiTestCase):
    async def start_registry(self) -> str:
        resource = registry_resource(local_store(self.root))
        assert isinstance(resource, hotreads.HotReads)
        self.hot = resource
        self.app = resource.app = _Counting(resource.app)
        self.plain = await serve(self, RegistryApp(local_store(self.root)).resource())  # the app alone
        return await serve(self, resource)

    async def settle(self) -> None:
        await deferLater(reactor, SETTLED, lambda: None)

    async def from_the_app(self, method: str, path: str) -> Reply:
        """The same request answered by the app alone, on the same storage."""
        hot, self.base = self.base, self.plain
        try:
            return await self.call(method, path)
        finally:
            self.base = hot

    async def assertHot(self, method: str, path: str) -> Reply:
        """The request is answered by the hot reads (warmed up by a first one), as the app answers it."""
        await self.call(method, path)
        await self.settle()  # what the first read started keeping is kept
        rendered = self.app.rendered
        hot = await self.call(method, path)
        self.assertEqual(self.app.rendered, rendered, f"{method} {path} went to the app")
        app = await self.from_the_app(method, path)
        self.assertEqual((hot.status, hot.body, hot.length), (app.status, app.body, app.length))
        self.assertEqual(_headers(hot), _headers(app))
        return hot

    @async_test
    async def test_blob_get_and_head_as_the_app_answers(self) -> None:
        blob = await self.push_blob("a/b", b"layer bytes" * 1000)
        for method in ("GET", "HEAD"):
            self.assertStatus(await self.assertHot(method, f"/v2/a/b/blobs/{blob}"), 200)
        empty = await self.push_blob("a/b", b"")
        self.assertEqual((await self.assertHot("GET", f"/v2/a/b/blobs/{empty}")).length, 0)

    @async_test
    async def test_ranges_misses_and_bad_digests_go_to_the_app(self) -> None:
        blob = await self.push_blob("a", b"0123456789")
        self.app.rendered = 0
        ranged = await self.call("GET", f"/v2/a/blobs/{blob}", headers={"Range": "bytes=2-4"})
        self.assertEqual((ranged.status, ranged.body), (206, b"234"))
        self.assertError(await self.call("GET", "/v2/a/blobs/sha256:" + "0" * 64), 404, "BLOB_UNKNOWN")
        self.assertError(await self.call("GET", "/v2/a/blobs/sha256:short"), 400, "DIGEST_INVALID")
        self.assertError(await self.call("GET", "/v2/a/manifests/nothing"), 404, "MANIFEST_UNKNOWN")
        self.assertEqual(self.app.rendered, 4)

    @async_test
    async def test_manifest_by_tag_and_digest_as_the_app_answers(self) -> None:
        image = await self.push_image("repo", "v1")
        await self.settle()
        for method in ("GET", "HEAD"):
            for reference in ("v1", image.digest):
                reply = await self.assertHot(method, f"/v2/repo/manifests/{reference}")
                self.assertStatus(reply, 200)
                self.assertEqual(reply.header("Docker-Content-Digest"), image.digest)

    @async_test
    async def test_a_manifest_not_kept_yet_is_read_once_and_answered(self) -> None:
        image = await self.push_image("repo", "cold")
        self.app.rendered = 0
        for reference in ("cold", image.digest):
            cold = await self.call("GET", f"/v2/repo/manifests/{reference}")
            self.assertEqual((cold.status, cold.body), (200, image.body))
            self.assertEqual(cold.header("Content-Type"), image.media_type)
        self.assertEqual(self.app.rendered, 0)
        await self.settle()
        self.assertEqual((await self.assertHot("HEAD", "/v2/repo/manifests/cold")).length, len(image.body))

    @async_test
    async def test_a_moved_tag_is_followed(self) -> None:
        first = await self.push_image("repo", "t", seed="one")
        await self.settle()
        kept = await self.assertHot("GET", "/v2/repo/manifests/t")
        self.assertEqual(kept.body, first.body)
        second = await self.push_image("repo", "t", seed="two")  # the same size: only the digest differs
        moved = await self.call("GET", "/v2/repo/manifests/t")
        self.assertEqual((moved.body, moved.header("Docker-Content-Digest")), (second.body, second.digest))
        await self.settle()
        for _ in range(3):
            again = await self.call("GET", "/v2/repo/manifests/t")
            self.assertEqual(again.body, second.body)
        deleted = await self.call("DELETE", f"/v2/repo/manifests/{second.digest}")
        self.assertStatus(deleted, 202)
        self.assertError(await self.call("GET", "/v2/repo/manifests/t"), 404, "MANIFEST_UNKNOWN")

    def test_only_on_local_disk(self) -> None:
        class Elsewhere:
            root = "/somewhere"

        store = local_store(self.root)
        self.assertEqual(hotreads.local_root(store), self.root)
        # as the daemon wraps it (zotpy.tap.build_service)
        metered = MeteredDriver(store.driver, StorageMetrics(CollectorRegistry()))
        store.driver = BreakerDriver(metered, reactor)
        self.assertEqual(hotreads.local_root(store), self.root)
        store.driver = Elsewhere()  # type: ignore[assignment]
        self.assertIsNone(hotreads.local_root(store))
