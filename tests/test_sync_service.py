"""Sync against an in-process upstream (a zotpy registry on a loopback port, wrapped to count
requests or to demand Basic or Bearer authentication): periodic polls on an injected clock, content
rules, ownership, on-demand coalescing, cancellation, fallbacks, referrers, retries."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import attrs

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from tests.support import http_client, local_store, serve
from tests.syncimages import multi_arch, push_to_store, signature_for, single
from zotpy.api.site import registry_resource
from zotpy.observability.metrics import Metrics
from zotpy.oci.digest import parse_digest
from zotpy.storage.imagestore import ImageStore
from zotpy.sync.client import SINK_CHUNK, UpstreamAuthError, UpstreamClient, UpstreamUnreachable
from zotpy.sync.coalesce import Coalescer
from zotpy.sync.settings import Credentials, read_sync_settings
from zotpy.sync.service import SyncService


@implementer(IResource)
class Gate:
    """Wraps a leaf resource: records every request and can demand authentication first.

    ``auth`` None lets everything through; "basic" wants ``user:password``; "bearer" wants a token
    from ``/token`` (itself behind Basic ``user:password``), as a registry behind a token service does.
    """

    isLeaf = True

    def __init__(self, inner: IResource, auth: str | None = None, user: str = "alice", password: str = "s3cret") -> None:
        self.inner = inner
        self.auth = auth
        self.basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.requests: list[tuple[str, str]] = []
        self.tokens_issued = 0
        self.base = ""

    def render(self, request: IRequest) -> Any:
        path = request.path.decode()
        self.requests.append((request.method.decode(), path))
        given = (request.getHeader("authorization") or "")
        if path == "/token":
            if given != self.basic:
                request.setResponseCode(401)
                return b'{"details":"wrong credentials"}'
            self.tokens_issued += 1
            scope = request.args.get(b"scope", [b""])[0].decode()
            request.setHeader("content-type", "application/json")
            return json.dumps({"token": f"token-{self.tokens_issued}-for-{scope}"}).encode()
        if self.auth == "basic" and given != self.basic:
            request.setResponseCode(401)
            request.setHeader("www-authenticate", 'Basic realm="test"')
            return b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        if self.auth == "bearer" and not given.startswith("Bearer token-"):
            scope = "registry:catalog:*" if path.startswith("/v2/_catalog") else "repository:" + path[4:].split("/manifests/")[0].split("/blobs/")[0].split("/tags/")[0].split("/referrers/")[0] + ":pull"
            request.setResponseCode(401)
            request.setHeader(
                "www-authenticate", f'Bearer realm="{self.base}/token",service="test-registry",scope="{scope}"'
            )
            return b'{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}'
        return self.inner.render(request)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError

    def count(self, method: str, fragment: str) -> int:
        return sum(1 for m, p in self.requests if m == method and fragment in p)


def settings_for(url: str | list[str], **registry: Any) -> Any:
    raw = {"registries": [{"urls": url if isinstance(url, list) else [url], **registry}]}
    settings, problems, _ = read_sync_settings(_lower(raw))
    assert not problems, problems
    return settings


def _lower(value: Any) -> Any:
    if isinstance(value, dict):
        return {key.lower(): _lower(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_lower(item) for item in value]
    return value


class SyncTestCase(unittest.TestCase):
    timeout = 60

    async def upstream(self, auth: str | None = None) -> tuple[ImageStore, Gate, str]:
        store = local_store(self.mktemp())
        gate = Gate(registry_resource(store), auth)
        base = await serve(self, gate)
        gate.base = base
        return store, gate, base

    def make_client(self, clock: Any) -> Any:
        return lambda registry, credentials: UpstreamClient(registry, http_client(self), clock, credentials)

    def service(self, settings: Any, clock: Any = reactor, owns: Any = None, credentials: dict | None = None) -> tuple[SyncService, ImageStore]:
        local = local_store(self.mktemp())
        settings = attrs.evolve(settings, credentials=credentials or {})
        service = SyncService(settings, local, clock, make_client=self.make_client(clock), **({"owns": owns} if owns else {}))
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service, local


async def manifest_of(store: ImageStore, repo: str, reference: str) -> str | None:
    try:
        return str((await store.get_manifest(repo, reference)).digest)
    except Exception:
        return None


class PeriodicTests(SyncTestCase):
    async def seed(self, store: ImageStore) -> dict[str, Any]:
        images = {
            "lib/app:v1": multi_arch("app"),
            "lib/app:v1-rc1": single("app-rc"),
            "lib/app:latest": single("app-latest"),
            "lib/tool:v2.0.1": multi_arch("tool", docker=True),
            "other/thing:v1": single("thing"),
        }
        for name, image in images.items():
            repo, tag = name.split(":")
            await push_to_store(store, repo, image, tag)
        return images

    async def test_poll_mirrors_what_the_rules_select_with_identical_digests(self) -> None:
        upstream, gate, base = await self.upstream()
        images = await self.seed(upstream)
        clock = Clock()
        settings = settings_for(
            base, pollInterval="10s",
            content=[{"prefix": "/lib/**", "tags": {"regex": "^v", "excludeRegex": "-rc"}}],
        )
        service, local = self.service(settings, clock)
        service.startService()  # the first poll starts at once
        await service.idle()
        self.assertEqual(await local.repositories(), ["lib/app", "lib/tool"])
        self.assertEqual(await local.tags("lib/app"), ["v1"])
        self.assertEqual(await manifest_of(local, "lib/app", "v1"), images["lib/app:v1"].digest)
        self.assertEqual(await manifest_of(local, "lib/tool", "v2.0.1"), images["lib/tool:v2.0.1"].digest)
        for child in images["lib/app:v1"].children:  # every platform came along
            self.assertEqual(await manifest_of(local, "lib/app", child.digest), child.digest)
        for digest in images["lib/tool:v2.0.1"].blobs:
            self.assertTrue(await local.has_blob("lib/tool", parse_digest(digest)))
        report = service.registries[0].last_poll
        self.assertEqual((report.repositories, report.tags_copied, report.failed), (2, 2, []))

        # The next poll: nothing changed, nothing fetched but digests; then a tag moves upstream.
        blob_gets = gate.count("GET", "/blobs/")
        clock.advance(10)
        await service.idle()
        self.assertEqual(gate.count("GET", "/blobs/"), blob_gets)
        self.assertEqual(service.registries[0].last_poll.tags_unchanged, 2)
        moved = single("app-v1-rebuilt")
        await push_to_store(upstream, "lib/app", moved, "v1")
        clock.advance(10)
        await service.idle()
        self.assertEqual(await manifest_of(local, "lib/app", "v1"), moved.digest)
        self.assertEqual(service.registries[0].last_poll.tags_copied, 1)

        await service.stopService()
        clock.advance(100)  # stopped: no more polls
        self.assertEqual(service.idle().called, True)

    async def test_work_is_counted_in_the_sync_metrics(self) -> None:
        upstream, gate, base = await self.upstream()
        await self.seed(upstream)
        metrics = Metrics()
        settings = settings_for(base, pollInterval="1h", content=[{"prefix": "lib/**", "tags": {"regex": "^v"}}])
        local = local_store(self.mktemp())
        service = SyncService(settings, local, Clock(), counters=metrics.sync, make_client=self.make_client(reactor))
        await service.registries[0].poll()
        sample = metrics.registry.get_sample_value
        self.assertEqual(sample("zot_sync_repositories_total", {"registry": base}), 2.0)
        self.assertEqual(sample("zot_sync_images_total", {"registry": base}), 3.0)  # v1, v1-rc1, v2.0.1
        self.assertIsNone(sample("zot_sync_failures_total", {"registry": base}))

    async def test_new_settings_apply_while_running(self) -> None:
        upstream, gate, base = await self.upstream()
        await self.seed(upstream)
        clock = Clock()
        service, local = self.service(settings_for(base, pollInterval="10s", content=[{"prefix": "lib/tool"}]), clock)
        service.startService()
        await service.idle()
        self.assertEqual(await local.repositories(), ["lib/tool"])
        await service.reconfigure(settings_for(base, pollInterval="1h", content=[{"prefix": "other/**"}]))
        await service.idle()  # the new loop polled at once
        self.assertEqual(await local.repositories(), ["lib/tool", "other/thing"])
        catalog_reads = gate.count("GET", "/v2/_catalog")
        clock.advance(10)  # the old 10 s loop is gone
        await service.idle()
        self.assertEqual(gate.count("GET", "/v2/_catalog"), catalog_reads)
        await service.reconfigure(None)
        self.assertEqual(service.registries, [])

    async def test_only_owned_local_names_are_mirrored(self) -> None:
        upstream, gate, base = await self.upstream()
        await self.seed(upstream)
        settings = settings_for(
            base, pollInterval="1h",
            content=[{"prefix": "/lib/**", "destination": "/mirror", "stripPrefix": True}],
        )
        asked: list[str] = []

        def owns(name: str) -> bool:
            asked.append(name)
            return name == "mirror/tool"

        service, local = self.service(settings, Clock(), owns)
        report = await service.registries[0].poll()
        self.assertEqual(sorted(asked), ["mirror/app", "mirror/tool"])  # local names, not upstream ones
        self.assertEqual(await local.repositories(), ["mirror/tool"])
        self.assertEqual((report.repositories, report.skipped_not_owner), (1, 1))
        self.assertEqual(gate.count("GET", "/v2/lib/app/"), 0)

    async def test_one_failing_repository_does_not_stop_the_poll(self) -> None:
        upstream, gate, base = await self.upstream()
        await self.seed(upstream)
        # Break lib/app upstream: a layer of its v1 image is gone.
        blob = next(iter(multi_arch("app").blobs))
        os.remove(os.path.join(upstream.driver.root, "lib", "app", "blobs", "sha256", blob.split(":")[1]))
        settings = settings_for(base, pollInterval="1h", content=[{"prefix": "lib/**", "tags": {"regex": "^v"}}])
        service, local = self.service(settings, Clock())
        with _CapturedLogs() as logged:
            report = await service.registries[0].poll()
        self.assertEqual(report.failed, ["lib/app"])
        self.assertIn("lib/tool", await local.repositories())
        self.assertTrue(any("lib/app" in line and "failed" in line for line in logged), logged)


class _CapturedLogs:
    """Collects the text of zotpy log events while active."""

    def __enter__(self) -> list[str]:
        from twisted.logger import formatEvent, globalLogPublisher

        self.lines: list[str] = []
        self.observer = lambda event: self.lines.append(formatEvent(event))
        self.publisher = globalLogPublisher
        self.publisher.addObserver(self.observer)
        return self.lines

    def __exit__(self, *exc: object) -> None:
        self.publisher.removeObserver(self.observer)


class OnDemandTests(SyncTestCase):
    async def test_concurrent_requests_share_one_fetch(self) -> None:
        upstream, gate, base = await self.upstream()
        image = multi_arch("app")
        await push_to_store(upstream, "lib/app", image, "v1")
        service, local = self.service(settings_for(base, onDemand=True))
        results = await Deferred.fromCoroutine(_gather([service.manifest("lib/app", "v1") for _ in range(10)]))
        self.assertEqual(results, [True] * 10)
        self.assertEqual(await manifest_of(local, "lib/app", "v1"), image.digest)
        self.assertEqual(gate.count("GET", "/manifests/v1"), 1)
        self.assertEqual(gate.count("HEAD", "/manifests/v1"), 1)
        for digest in image.blobs:
            self.assertEqual(gate.count("GET", f"/blobs/{digest}"), 1)

    async def test_a_client_hanging_up_does_not_stop_the_fetch(self) -> None:
        upstream, gate, base = await self.upstream()
        image = single("app", layer_sizes=(SINK_CHUNK + 12345,))  # more than one chunk into the store
        await push_to_store(upstream, "lib/app", image, "v1")
        service, local = self.service(settings_for(base, onDemand=True))
        first = service.manifest("lib/app", "v1")
        second = service.manifest("lib/app", "v1")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertTrue(await second)
        self.assertEqual(await manifest_of(local, "lib/app", "v1"), image.digest)

    async def test_rules_decide_and_failures_fall_back(self) -> None:
        upstream, gate, base = await self.upstream()
        await push_to_store(upstream, "lib/app", single("app"), "v1")
        await push_to_store(upstream, "lib/app", single("app2"), "beta")
        settings = settings_for(
            base, onDemand=True,
            content=[{"prefix": "/lib/**", "destination": "/mirror", "stripPrefix": True, "tags": {"regex": "^v"}}],
        )
        service, local = self.service(settings)
        self.assertTrue(await service.manifest("mirror/app", "v1"))
        self.assertEqual(await local.tags("mirror/app"), ["v1"])
        self.assertFalse(await service.manifest("mirror/app", "beta"))  # excluded tag: not even asked
        self.assertFalse(await service.manifest("lib/app", "v1"))  # no rule maps this local name
        self.assertFalse(await service.manifest("mirror/none", "v1"))  # 404 upstream
        self.assertEqual(gate.count("HEAD", "/v2/lib/app/manifests/beta"), 0)

    async def test_upstream_down_serves_what_is_stored(self) -> None:
        service, local = self.service(settings_for("http://127.0.0.1:1", onDemand=True))
        await push_to_store(local, "lib/app", single("app"), "v1")
        with _CapturedLogs() as logged:
            self.assertFalse(await service.manifest("lib/app", "v1"))
        self.assertTrue(any("on-demand lib/app:v1 failed" in line for line in logged), logged)

    async def test_api_fetches_on_demand_then_serves_without_upstream(self) -> None:
        upstream, gate, base = await self.upstream()
        image = multi_arch("app")
        await push_to_store(upstream, "lib/app", image, "v1")
        service, local = self.service(settings_for(base, onDemand=True))
        mirror = await serve(self, registry_resource(local, service))
        client = http_client(self)
        response = await client.get(f"{mirror}/v2/lib/app/manifests/v1", headers={"Accept": [image.media_type]})
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.content(), image.top.body)
        child = image.children[0].digest
        response = await client.get(f"{mirror}/v2/lib/app/manifests/{child}")
        self.assertEqual((response.code, await response.content()), (200, image.children[0].body))
        self.assertEqual(gate.count("GET", f"/manifests/{child}"), 1)  # brought with the index, not again
        response = await client.get(f"{mirror}/v2/lib/app/manifests/nothere")
        self.assertEqual(response.code, 404)
        await response.content()

    async def test_referrers_come_along_and_on_demand(self) -> None:
        upstream, gate, base = await self.upstream()
        image = single("app")
        signature = signature_for(image)
        await push_to_store(upstream, "lib/app", image, "v1")
        await push_to_store(upstream, "lib/app", signature, None)
        service, local = self.service(settings_for(base, onDemand=True))
        self.assertTrue(await service.manifest("lib/app", "v1"))
        self.assertEqual(await manifest_of(local, "lib/app", signature.digest), signature.digest)
        # A referrer added upstream later is fetched by a referrers GET.
        later = signature_for(image, "sbom")
        await push_to_store(upstream, "lib/app", later, None)
        self.assertTrue(await service.referrers("lib/app", image.digest))
        listed = await local.referrers("lib/app", parse_digest(image.digest), None)
        self.assertEqual(sorted(m["digest"] for m in listed["manifests"]), sorted([signature.digest, later.digest]))


class AuthTests(SyncTestCase):
    async def test_bearer_token_flow(self) -> None:
        upstream, gate, base = await self.upstream(auth="bearer")
        image = multi_arch("app")
        await push_to_store(upstream, "lib/app", image, "v1")
        host = base.split("://")[1]
        settings = settings_for(base, pollInterval="1h", content=[{"prefix": "lib/**"}])
        service, local = self.service(settings, Clock(), credentials={host: Credentials("alice", "s3cret")})
        report = await service.registries[0].poll()
        self.assertEqual((report.tags_copied, report.failed), (1, []))
        self.assertEqual(await manifest_of(local, "lib/app", "v1"), image.digest)
        # One token for the catalog, one for the repository, reused for every request on it.
        self.assertEqual(gate.tokens_issued, 2)

    async def test_wrong_basic_password_is_reported_and_retried(self) -> None:
        upstream, gate, base = await self.upstream(auth="basic")
        await push_to_store(upstream, "lib/app", single("app"), "v1")
        host = base.split("://")[1]
        settings = settings_for(base, onDemand=True, maxRetries=2, retryDelay="10ms")
        service, local = self.service(settings, credentials={host: Credentials("alice", "wrong")})
        with _CapturedLogs() as logged:
            self.assertFalse(await service.manifest("lib/app", "v1"))
        text = "\n".join(logged)
        self.assertIn("the credentials of user 'alice' from extensions.sync.credentialsFile were refused", text)
        self.assertIn("retry 2 of 2", text)
        # The challenge, then the refused password once per attempt (it is not sent twice in a row).
        self.assertEqual(gate.count("HEAD", "/manifests/v1"), 1 + 3)

    async def test_right_basic_password(self) -> None:
        upstream, gate, base = await self.upstream(auth="basic")
        await push_to_store(upstream, "lib/app", single("app"), "v1")
        host = base.split("://")[1]
        service, local = self.service(settings_for(base, onDemand=True), credentials={host: Credentials("alice", "s3cret")})
        self.assertTrue(await service.manifest("lib/app", "v1"))

    async def test_no_credentials_says_which_host(self) -> None:
        upstream, gate, base = await self.upstream(auth="basic")
        client = UpstreamClient(settings_for(base).registries[0], http_client(self), reactor)
        error = await self.assertFailure(ensureDeferred(client.tags("lib/app")), UpstreamAuthError)
        self.assertIn(f"credentialsFile has none for {base.split('://')[1]!r}", str(error))


class ClientTests(SyncTestCase):
    async def test_first_answering_url_wins(self) -> None:
        upstream, gate, base = await self.upstream()
        await push_to_store(upstream, "lib/app", single("app"), "v1")
        client = UpstreamClient(settings_for(["http://127.0.0.1:1", base]).registries[0], http_client(self), reactor)
        self.assertEqual(await client.tags("lib/app"), ["v1"])
        self.assertEqual(await client.catalog(), ["lib/app"])

    async def test_unreachable_is_retried_then_reported(self) -> None:
        settings = settings_for(["http://127.0.0.1:1", "http://127.0.0.1:2"], maxRetries=1, retryDelay="5ms")
        client = UpstreamClient(settings.registries[0], http_client(self), reactor)
        error = await self.assertFailure(ensureDeferred(client.catalog()), UpstreamUnreachable)
        self.assertIn("http://127.0.0.1:2", str(error))

    async def test_catalog_and_tags_follow_pagination(self) -> None:
        upstream, gate, base = await self.upstream()
        for index in range(5):
            await push_to_store(upstream, f"repo{index}", single(f"r{index}"), "v1")
        client = UpstreamClient(settings_for(base).registries[0], http_client(self), reactor)
        import zotpy.sync.client as module

        self.patch(module, "PAGE_SIZE", 2)
        self.assertEqual(await client.catalog(), [f"repo{index}" for index in range(5)])
        self.assertEqual(gate.count("GET", "/v2/_catalog"), 3)


class CoalescerTests(unittest.TestCase):
    def test_waiters_share_one_run_and_leave_alone(self) -> None:
        coalescer: Coalescer[int] = Coalescer()
        started: list[Deferred[int]] = []

        def work() -> Deferred[int]:
            started.append(Deferred())
            return started[-1]

        first = coalescer.run("k", work)
        second = coalescer.run("k", work)
        third = coalescer.run("k", work)
        self.assertEqual(len(started), 1)
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.assertFalse(started[0].called)  # the work goes on
        started[0].callback(7)
        self.assertEqual((self.successResultOf(first), self.successResultOf(third)), (7, 7))
        self.assertFalse(coalescer.running("k"))
        coalescer.run("k", work)
        self.assertEqual(len(started), 2)  # a new run once the last one ended


async def _gather(deferreds: list[Deferred[Any]]) -> list[Any]:
    return [await d for d in deferreds]


async def _later(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class ServiceTreeTests(unittest.TestCase):
    """How ``twistd zotpy`` wires sync: a child service, the API's on-demand hook, SIGHUP reload."""

    def write(self, path: str, root: str, registries: list[dict[str, Any]]) -> None:
        with open(path, "w") as stream:
            json.dump({
                "storage": {"rootDirectory": root, "gc": False, "dedupe": False},
                "http": {"address": "127.0.0.1", "port": 0},
                "extensions": {"sync": {"registries": registries}},
            }, stream)

    def test_sighup_applies_new_sync_rules(self) -> None:
        from zotpy.config import load_config
        from zotpy.observability.service import Operations
        from zotpy.tap import build_service

        path, root = self.mktemp(), os.path.abspath(self.mktemp())
        self.write(path, root, [{"urls": ["http://127.0.0.1:1"], "onDemand": True}])
        config = load_config(path)
        operations = Operations(config, reactor)
        tree = build_service(config, reactor, operations=operations)
        sync = tree.getServiceNamed("sync")
        self.assertTrue(sync.handles("any/thing"))
        self.write(path, root, [{"urls": ["http://127.0.0.1:2"], "onDemand": True, "content": [{"prefix": "lib/**"}]}])
        self.assertEqual(operations.reloader.reload(), ["extensions.sync"])
        self.assertEqual(sync.registries[0].settings.urls, ("http://127.0.0.1:2",))
        self.assertEqual((sync.handles("any/thing"), sync.handles("lib/x")), (False, True))


class TLSTests(SyncTestCase):
    """An upstream serving https with a private CA and requiring client certificates (``certDir``)."""

    async def tls_upstream(self) -> tuple[str, str]:
        import shutil

        from tests.certs import CertificateAuthority
        from zotpy.config import TLSConfig
        from zotpy.tap import _tls_options

        ca = CertificateAuthority(os.path.abspath(self.mktemp()))
        server = ca.issue("server", ["127.0.0.1"])
        client = ca.issue("client", [], client=True)
        store = local_store(self.mktemp())
        await push_to_store(store, "lib/app", single("app"), "v1")
        from zotpy.api.site import ConnectionTrackingFactory, registry_site

        factory = ConnectionTrackingFactory(registry_site(registry_resource(store)))
        options = _tls_options(TLSConfig(server.cert_path, server.key_path, ca.pair.cert_path))
        port = reactor.listenSSL(0, factory, options, interface="127.0.0.1")

        async def stop() -> None:
            await port.stopListening()
            await factory.close_connections()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        cert_dir = os.path.abspath(self.mktemp())
        os.makedirs(cert_dir)
        shutil.copy(client.cert_path, os.path.join(cert_dir, "client.cert"))
        shutil.copy(client.key_path, os.path.join(cert_dir, "client.key"))
        shutil.copy(ca.pair.cert_path, os.path.join(cert_dir, "upstream-ca.crt"))
        return f"https://127.0.0.1:{port.getHost().port}", cert_dir

    def real_client(self, settings: Any) -> UpstreamClient:
        from zotpy.sync.client import make_http_client

        http, pool = make_http_client(reactor, settings.registries[0])
        self.addCleanup(pool.closeCachedConnections)
        return UpstreamClient(settings.registries[0], http, reactor)

    async def test_cert_dir_ca_and_client_certificate(self) -> None:
        base, cert_dir = await self.tls_upstream()
        client = self.real_client(settings_for(base, onDemand=True, certDir=cert_dir))
        self.assertEqual(await client.tags("lib/app"), ["v1"])

    async def test_untrusted_upstream_is_refused_unless_tls_verify_is_false(self) -> None:
        base, cert_dir = await self.tls_upstream()
        os.remove(os.path.join(cert_dir, "upstream-ca.crt"))
        client = self.real_client(settings_for(base, onDemand=True, certDir=cert_dir))
        await self.assertFailure(ensureDeferred(client.tags("lib/app")), UpstreamUnreachable)
        client = self.real_client(settings_for(base, onDemand=True, certDir=cert_dir, tlsVerify=False))
        self.assertEqual(await client.tags("lib/app"), ["v1"])
