"""Resizing a running cluster on one SeaweedFS bucket: 3 -> 4 -> 2 replicas behind real HAProxy.

The members are changed the way an operator would: the new replica starts with the new list and is
enabled in HAProxy, then every other replica gets the new ``cluster.members`` and a SIGHUP, one at
a time; to shrink, the remaining replicas are reloaded, the leaving ones drained in HAProxy
(runtime API) and stopped. A small push-and-pull load runs through HAProxy the whole time and
retries a 503 (as clients do with ``Retry-After``). Checked: no answer other than the expected
status or a retryable 503, no 503 once a roll has completed (every replica reports the new view as
settled), and every acknowledged push pulls intact from every replica after each step.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from twisted.internet import defer
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests.integration.cluster import (
    MEDIA_TYPE_MANIFEST,
    RegistryClient,
    SmallImage,
    ZotpyCluster,
    location_path,
    seaweed_storage_driver,
    small_image,
    with_query,
)
from tests.integration.daemon import sleep
from tests.integration.haproxy import HAProxy
from tests.test_api import async_test
from zotpy.cluster.membership import View

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKERS = 3
RETRY_SECONDS = 0.1
MAX_RETRIES = 100


class Load:
    """Pushers through HAProxy: each pushes a tiny image (two blobs, a manifest) and pulls its
    manifest back, tallying every answer."""

    def __init__(self, client: RegistryClient, base: str) -> None:
        self.client = client
        self.base = base
        self.acknowledged: dict[tuple[str, str], SmallImage] = {}
        self.unavailable = 0  # 503 answers (retried)
        self.failures: list[str] = []  # any other unexpected answer
        self.requests = 0
        self.running = True
        self._workers: list[defer.Deferred[None]] = []

    async def call(self, expected: int, method: str, url: str, **kwargs: Any) -> Any:
        for _ in range(MAX_RETRIES):
            self.requests += 1
            result = await self.client.request(method, url, **kwargs)
            if result.code == expected:
                return result
            if result.code != 503:
                self.failures.append(f"{method} {url}: {result.code} {result.body[:300]!r}")
                return None
            self.unavailable += 1
            await sleep(RETRY_SECONDS)
        self.failures.append(f"{method} {url}: still 503 after {MAX_RETRIES} tries")
        return None

    async def push(self, repository: str, tag: str, image: SmallImage) -> bool:
        for data in image.blobs.values():
            started = await self.call(202, "POST", f"{self.base}/v2/{repository}/blobs/uploads/")
            if started is None:
                return False
            location = self.base + location_path(started.header("Location"))
            digest = _digest(data)
            if await self.call(201, "PUT", with_query(location, digest=digest), data=data) is None:
                return False
        put = await self.call(
            201, "PUT", f"{self.base}/v2/{repository}/manifests/{tag}",
            headers={"Content-Type": MEDIA_TYPE_MANIFEST}, data=image.manifest,
        )
        return put is not None

    async def worker(self, number: int) -> None:
        iteration = 0
        while self.running:
            repository = f"resize/w{number}-{iteration % 4}"
            tag = f"t{iteration}"
            image = small_image(f"{repository}:{tag}", layer_sizes=(256,))
            if await self.push(repository, tag, image):
                self.acknowledged[(repository, tag)] = image
                pulled = await self.call(
                    200, "GET", f"{self.base}/v2/{repository}/manifests/{tag}", headers={"Accept": MEDIA_TYPE_MANIFEST}
                )
                if pulled is not None and pulled.body != image.manifest:
                    self.failures.append(f"GET {repository}:{tag}: other bytes")
            iteration += 1

    def start(self) -> None:
        self._workers = [defer.ensureDeferred(self.worker(n)) for n in range(WORKERS)]

    async def stop(self) -> None:
        self.running = False
        await defer.gatherResults(self._workers)


def _digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


class ResizeSharedStorageTests(unittest.TestCase):
    timeout = 240

    async def status(self, cluster: ZotpyCluster, index: int) -> dict[str, Any]:
        result = await self.client.expect(200, "GET", f"{cluster.url(index)}/_zotpy/cluster")
        return result.json()

    async def reload(self, cluster: ZotpyCluster, index: int, members: list[str]) -> None:
        """Give replica ``index`` the list ``members`` and SIGHUP it; wait until it routes by it."""
        cluster.rewrite_config(index, lambda config: config["cluster"].update(members=members))
        cluster.replicas[index]._transport.signalProcess("HUP")
        wanted = View(tuple(members), cluster.hash_key).fingerprint
        for _ in range(200):
            if (await self.status(cluster, index))["fingerprint"] == wanted:
                return
            await sleep(0.05)
        self.fail(f"replica {index} did not take the list {members}:\n{cluster.describe()}")

    async def settled(self, cluster: ZotpyCluster, indexes: list[int], members: list[str]) -> None:
        """Wait until every replica in ``indexes`` holds ``members`` and has seen all agree."""
        wanted = View(tuple(members), cluster.hash_key).fingerprint
        for _ in range(200):
            states = [await self.status(cluster, index) for index in indexes]
            if all(s["fingerprint"] == wanted and s["settled"] for s in states):
                return
            await sleep(0.05)
        self.fail(f"the roll to {members} did not settle: {states}")

    async def cluster_status(self, cluster: ZotpyCluster, index: int) -> tuple[int, str]:
        """``zotpy cluster status -c <replica index's config>``: exit status and output."""
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "zotpy", "cluster", "status", "-c", cluster.replicas[index].config_path],
            env=dict(os.environ, PYTHONPATH=REPO_ROOT), path=REPO_ROOT,
        )
        return code, out.decode() + err.decode()

    async def check_every_push(self, cluster: ZotpyCluster, load: Load, indexes: list[int]) -> int:
        """Every acknowledged push pulls (manifest and blobs, digests checked) from every replica."""
        pushed = dict(load.acknowledged)
        limit = defer.DeferredSemaphore(12)
        await defer.gatherResults([
            limit.run(lambda i=index, r=repository, t=tag, m=image: defer.ensureDeferred(
                self.client.pull_image(cluster.url(i), r, t, m)))
            for index in indexes for (repository, tag), image in pushed.items()
        ])
        return len(pushed)

    @async_test
    async def test_three_to_four_to_two_replicas_under_load(self) -> None:
        cluster = ZotpyCluster(self.mktemp(), size=4, storage_driver=seaweed_storage_driver())
        self.addCleanup(cluster.stop)
        four = list(cluster.members)
        three, two = four[:3], four[:2]
        for index in range(3):
            cluster.rewrite_config(index, lambda config: config["cluster"].update(members=three))
        cluster.rewrite_config(3, lambda config: config["cluster"].update(members=four))
        await defer.gatherResults([defer.ensureDeferred(cluster.start_replica(i)) for i in range(3)])
        haproxy = HAProxy(self.mktemp(), four, check_interval_ms=200, disabled={3})
        await haproxy.start()
        self.addCleanup(haproxy.stop)
        self.client = RegistryClient()
        self.addCleanup(self.client.close)
        load = Load(self.client, haproxy.base_url)
        load.start()
        self.addCleanup(load.stop)
        await sleep(0.5)
        tally: list[tuple[str, int, int]] = []
        began = time.monotonic()

        # 3 -> 4: the new replica starts with the new list, then the others reload one by one.
        await cluster.start_replica(3)
        await haproxy.set_state(3, "ready")
        for index in range(3):
            await sleep(0.3)
            await self.reload(cluster, index, four)
        await self.settled(cluster, [0, 1, 2, 3], four)
        tally.append(("3->4 roll", load.unavailable, load.requests))
        await sleep(1.0)
        self.assertEqual(load.unavailable, tally[-1][1], "503s after the roll to 4 settled")
        checked = await self.check_every_push(cluster, load, [0, 1, 2, 3])

        # 4 -> 2: the staying replicas reload; the leaving ones are drained, then stopped.
        for index in (0, 1):
            await sleep(0.3)
            await self.reload(cluster, index, two)
        code, out = await self.cluster_status(cluster, 0)
        self.assertEqual(code, 1, out)  # the leaving replicas still hold the 4-member view
        for member in four[2:]:
            self.assertRegex(out, rf"{member} +{View(tuple(four), cluster.hash_key).fingerprint} +yes +yes +not in")
        for index in (2, 3):
            await haproxy.set_state(index, "maint")
        await sleep(0.3)
        await defer.gatherResults([defer.ensureDeferred(cluster.stop_replica(i)) for i in (2, 3)])
        await self.settled(cluster, [0, 1], two)
        tally.append(("4->2 roll", load.unavailable, load.requests))
        await sleep(1.0)
        self.assertEqual(load.unavailable, tally[-1][1], "503s after the roll to 2 settled")
        await load.stop()
        checked = await self.check_every_push(cluster, load, [0, 1])
        code, out = await self.cluster_status(cluster, 1)
        self.assertEqual(code, 0, out)
        self.assertIn(f"2 of 2 members hold view {View(tuple(two), cluster.hash_key).fingerprint}", out)

        self.assertEqual(load.failures, [], f"answers other than 503:\n{cluster.describe()}")
        self.assertGreater(len(load.acknowledged), 20)
        self.assertGreaterEqual(checked, len(load.acknowledged))
        elapsed = time.monotonic() - began
        log = "; ".join(f"{step}: {count} 503s in {requests} requests so far" for step, count, requests in tally)
        print(f"\nresize under load: {log}; {len(load.acknowledged)} pushes acknowledged and pulled from every replica; {elapsed:.1f} s")
