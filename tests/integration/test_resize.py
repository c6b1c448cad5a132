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

import json
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

    def __init__(self, client: RegistryClient, bases: list[str], repositories: list[str] | None = None) -> None:
        self.client = client
        self.bases = bases
        self.repositories = repositories  # None: each worker its own four
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

    async def push(self, base: str, repository: str, tag: str, image: SmallImage) -> bool:
        for data in image.blobs.values():
            started = await self.call(202, "POST", f"{base}/v2/{repository}/blobs/uploads/")
            if started is None:
                return False
            location = base + location_path(started.header("Location"))
            digest = _digest(data)
            if await self.call(201, "PUT", with_query(location, digest=digest), data=data) is None:
                return False
        put = await self.call(
            201, "PUT", f"{base}/v2/{repository}/manifests/{tag}",
            headers={"Content-Type": MEDIA_TYPE_MANIFEST}, data=image.manifest,
        )
        return put is not None

    async def worker(self, number: int) -> None:
        iteration = 0
        while self.running:
            base = self.bases[(number + iteration) % len(self.bases)]
            if self.repositories is None:
                repository = f"resize/w{number}-{iteration % 4}"
            else:
                repository = self.repositories[(number * 7 + iteration) % len(self.repositories)]
            tag = f"w{number}-t{iteration}"
            image = small_image(f"{repository}:{tag}", layer_sizes=(256,))
            if await self.push(base, repository, tag, image):
                self.acknowledged[(repository, tag)] = image
                pulled = await self.call(
                    200, "GET", f"{base}/v2/{repository}/manifests/{tag}", headers={"Accept": MEDIA_TYPE_MANIFEST}
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


class RollSteps:
    """An operator's steps during a roll, for the test cases below (``self.client`` set by them)."""

    client: RegistryClient
    fail: Any

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


class ResizeSharedStorageTests(RollSteps, unittest.TestCase):
    timeout = 240

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
        load = Load(self.client, [haproxy.base_url])
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


class ResizePerInstanceStorageTests(RollSteps, unittest.TestCase):
    """2 -> 3 replicas, each with its own local root, 30 repositories."""

    timeout = 240

    @async_test
    async def test_moved_repositories_pull_at_once_and_reach_their_new_owner(self) -> None:
        # dropMoved with a short gcDelay: the previous owners' GC drops what the new owner holds.
        extra = {
            "log": {"level": "info"},
            "storage": {"gc": True, "gcDelay": "2s", "gcInterval": "1s"},
            "cluster": {"rebalance": {"dropMoved": True}},
        }
        cluster = ZotpyCluster(self.mktemp(), size=3, extra=extra)
        self.addCleanup(cluster.stop)
        three = list(cluster.members)
        two = three[:2]
        for index in (0, 1):
            cluster.rewrite_config(index, lambda config: config["cluster"].update(members=two))
        await defer.gatherResults([defer.ensureDeferred(cluster.start_replica(i)) for i in (0, 1)])
        self.client = RegistryClient()
        self.addCleanup(self.client.close)
        old, new = View(tuple(two), cluster.hash_key), View(tuple(three), cluster.hash_key)
        names = [f"move/repo-{n}" for n in range(30)]
        images = {name: small_image(name, layer_sizes=(128,)) for name in names}
        limit = defer.DeferredSemaphore(6)
        await defer.gatherResults([
            limit.run(lambda n=name: defer.ensureDeferred(self.client.push_image(cluster.url(0), n, images[n], "v1")))
            for name in names
        ])
        moving = [name for name in names if old.owner(name) != new.owner(name)]
        self.assertGreater(len(moving), 10)
        # The half of the moving repositories that clients use during the move (the rest is left to the rebalancer).
        touched, untouched = moving[::2], moving[1::2]

        await cluster.start_replica(2)  # with the 3-member list: it learns the 2-member one from the others
        load = Load(self.client, [cluster.url(i) for i in range(3)], touched)
        load.start()
        self.addCleanup(load.stop)
        for index in (0, 1):
            await sleep(0.3)
            await self.reload(cluster, index, three)
        await self.settled(cluster, [0, 1, 2], three)
        settled_at = time.monotonic()

        # Right after the roll, on demand: every repository the clients use pulls from every replica.
        await defer.gatherResults([
            limit.run(lambda i=i, n=name: defer.ensureDeferred(self.client.pull_image(cluster.url(i), n, "v1", images[n])))
            for name in touched for i in range(3)
        ])
        await sleep(0.5)
        await load.stop()
        self.assertEqual(load.failures, [])

        # In the background, within a bounded time, every moved repository is in its new owner's root.
        def missing() -> list[str]:
            return [name for name in moving if "v1" not in _root_tags(cluster.repo_dir(new.ring.owner_index(name), name))]

        while missing() and time.monotonic() - settled_at < 30:
            await sleep(0.2)
        self.assertEqual(missing(), [], cluster.describe())
        moved_within = time.monotonic() - settled_at
        logs = "".join(cluster.replicas[i].log_text() for i in range(3))
        self.assertIn("in the background", logs)
        self.assertIn("on demand", logs)

        # Nothing lost: every image pulls from every replica, and the tags pushed during the move are
        # in the new owner's root.
        await defer.gatherResults([
            limit.run(lambda i=i, n=name: defer.ensureDeferred(self.client.pull_image(cluster.url(i), n, "v1", images[n])))
            for name in names for i in range(3)
        ])
        await defer.gatherResults([
            limit.run(lambda i=i, r=repo, t=tag, m=image: defer.ensureDeferred(self.client.pull_image(cluster.url(i), r, t, m)))
            for (repo, tag), image in load.acknowledged.items() for i in range(3)
        ])
        for (repo, tag) in load.acknowledged:
            self.assertIn(tag, _root_tags(cluster.repo_dir(new.ring.owner_index(repo), repo)), repo)

        # The previous owners' GC drops each moved repository, never before its new owner has every tag.
        def still_held() -> list[str]:
            held = []
            for name in moving:
                if _root_tags(cluster.repo_dir(old.ring.owner_index(name), name)):
                    held.append(name)
                else:
                    self.assertIn("v1", _root_tags(cluster.repo_dir(new.ring.owner_index(name), name)), name)
            return held

        while still_held() and time.monotonic() - settled_at < 60:
            await sleep(0.2)
        self.assertEqual(still_held(), [], cluster.describe())
        dropped_within = time.monotonic() - settled_at
        staying = [name for name in names if name not in moving]
        self.assertEqual([n for n in staying if "v1" not in _root_tags(cluster.repo_dir(old.ring.owner_index(n), n))], [])
        await defer.gatherResults([
            limit.run(lambda i=i, n=name: defer.ensureDeferred(self.client.pull_image(cluster.url(i), n, "v1", images[n])))
            for name in moving for i in range(3)
        ])
        print(
            f"\nper-instance 2->3: {len(moving)} of 30 repositories moved, all in their new owner's root "
            f"{moved_within:.1f} s after the roll settled, dropped from the previous owners' roots after "
            f"{dropped_within:.1f} s; {len(load.acknowledged)} pushes during the move kept, {load.unavailable} 503s retried"
        )


def _root_tags(directory: str) -> set[str]:
    """The tags in a repository's ``index.json`` on disk (none when it is not there)."""
    try:
        with open(os.path.join(directory, "index.json")) as stream:
            index = json.load(stream)
    except OSError:
        return set()
    return {
        (manifest.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        for manifest in index.get("manifests") or []
    } - {None}
