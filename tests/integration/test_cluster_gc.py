"""Garbage collection in a 3-replica cluster on one SeaweedFS bucket, under load.

Every replica collects every 2 seconds (gcDelay and retention.delay 5 s) while pushers push new
tags through random replicas and delete some of their earlier images (making garbage), and pullers
pull acknowledged images through random replicas. For about a minute: no pull of an image whose
push was acknowledged (and that the test did not delete) may fail; each replica's log must show GC
of repositories it owns only; the deleted images' garbage must have been collected.
"""

from __future__ import annotations

import random
import time

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.cluster import (
    RegistryClient,
    RegistryError,
    ZotpyCluster,
    log_records,
    seaweed_storage_driver,
    small_image,
)
from tests.integration.daemon import sleep
from tests.test_api import async_test

LOAD_SECONDS = 60.0
PUSHERS = 3
PULLERS = 3


class ClusterGCTests(unittest.TestCase):
    timeout = 400

    @async_test
    async def test_gc_under_load_loses_no_acknowledged_image_and_runs_on_owners_only(self) -> None:
        lifecycle = {"gc": True, "gcDelay": "5s", "gcInterval": "2s", "retention": {"delay": "5s"}}
        cluster = ZotpyCluster(
            self.mktemp(), storage_driver=seaweed_storage_driver(),
            extra={"storage": lifecycle, "log": {"level": "info"}},
        )
        await cluster.start()
        self.addCleanup(cluster.stop)
        client = RegistryClient()
        self.addCleanup(client.close)
        repositories = cluster.spread_names("gc/app", 2)  # two owned by each member
        randomness = random.Random(15)
        acknowledged: dict[tuple[str, str], object] = {}
        deleted: set[tuple[str, str]] = set()
        failures: list[str] = []
        counts = {"pushes": 0, "push_errors": 0, "pulls": 0, "deletes": 0}
        ends = time.monotonic() + LOAD_SECONDS

        def base() -> str:
            return cluster.url(randomness.randrange(len(cluster.replicas)))

        async def pusher(worker: int) -> None:
            number = 0
            while time.monotonic() < ends:
                repo = repositories[(worker + number) % len(repositories)]
                tag = f"w{worker}-{number}"
                image = small_image(f"{repo}/{tag}", layer_sizes=(512, 20_000))
                try:
                    await client.push_image(base(), repo, image, tag)
                except RegistryError as error:  # not acknowledged: never pulled, only counted
                    counts["push_errors"] += 1
                    failures.append(f"push {repo}:{tag} (not acknowledged): {str(error)[:200]}")
                else:
                    acknowledged[(repo, tag)] = image
                    counts["pushes"] += 1
                if number % 3 == 2:  # delete an earlier image of this worker: garbage for GC
                    old = (repositories[(worker + number - 2) % len(repositories)], f"w{worker}-{number - 2}")
                    image = acknowledged.pop(old, None)
                    if image is not None:
                        deleted.add(old)
                        await client.expect(202, "DELETE", f"{base()}/v2/{old[0]}/manifests/{image.digest}")  # type: ignore[attr-defined]
                        counts["deletes"] += 1
                number += 1

        async def puller() -> None:
            while time.monotonic() < ends:
                if not acknowledged:
                    await sleep(0.1)
                    continue
                key = randomness.choice(sorted(acknowledged))
                image = acknowledged.get(key)
                if image is None:
                    continue
                try:
                    await client.pull_image(base(), key[0], key[1], image)  # type: ignore[arg-type]
                    counts["pulls"] += 1
                except RegistryError as error:
                    if key not in deleted:
                        failures.append(f"pull {key[0]}:{key[1]}: {str(error)[:300]}")

        await defer.gatherResults(
            [defer.ensureDeferred(pusher(w)) for w in range(PUSHERS)]
            + [defer.ensureDeferred(puller()) for _ in range(PULLERS)]
        )
        await sleep(5 + 2 + 3)  # one more delay and interval: the last deletions' garbage goes
        for (repo, tag), image in sorted(acknowledged.items()):
            await client.pull_image(base(), repo, tag, image)  # type: ignore[arg-type]

        pull_failures = [f for f in failures if f.startswith("pull")]
        self.assertEqual(pull_failures, [], f"{counts}")
        self.assertGreater(counts["pulls"], 50, counts)
        self.assertGreater(counts["deletes"], 5, counts)
        collected: dict[int, set[str]] = {}
        freed = 0
        for index, replica in enumerate(cluster.replicas):
            for record in log_records(replica.log_text(), strict=False):
                if record.get("module") == "zotpy.lifecycle.service" and record.get("repository"):
                    collected.setdefault(index, set()).add(record["repository"])
                    freed += int(record.get("bytes_freed") or 0)
        for index, repos in collected.items():
            strangers = {repo for repo in repos if cluster.owner(repo) != index}
            self.assertEqual(strangers, set(), f"replica {index} collected repositories it does not own")
        self.assertEqual(len(collected), len(cluster.replicas), f"not every replica collected: {collected}")
        self.assertGreater(freed, 0)
        print(f"\n{counts}; GC freed {freed} bytes; push errors: {failures[:3]}")
