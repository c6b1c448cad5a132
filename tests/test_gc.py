"""Garbage collection rules, each at its boundary, with an injected clock over a real local store."""

from __future__ import annotations

import datetime
import os
import tempfile
import time

from prometheus_client import CollectorRegistry
from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.storeimages import digest, push_image, push_index, put_blob
from tests.test_api import async_test
from tests.test_config import FIXTURES
from zotpy.config import ConfigError, load_config, parse_config
from zotpy.lifecycle.gc import Collector
from zotpy.api.site import IDLE_TIMEOUT_SECONDS
from zotpy.lifecycle.service import GCService
from zotpy.lifecycle.settings import LifecycleSettings, RetentionPolicy, TimeWindow, parse_time_window
from zotpy.observability.metrics import GCMetrics
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver

HOUR = 3600.0
DAY = 24 * HOUR


class CollectorTests(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="zotpy-gc-")
        self.store = ImageStore(LocalDriver(self.root, reactor, reactor.getThreadPool()))
        self.clock = task.Clock()
        self.start = time.time()
        self.clock.advance(self.start)

    def collector(self, **settings: object) -> Collector:
        return Collector(self.store, LifecycleSettings(**settings), self.clock)  # type: ignore[arg-type]

    def age(self, seconds: float) -> None:
        """Everything written so far is now ``seconds`` old (files were written just before)."""
        self.clock.advance(self.start + seconds + 1 - self.clock.seconds())

    def blob_exists(self, repo: str, data_digest: str) -> bool:
        return os.path.exists(os.path.join(self.root, repo, "blobs", "sha256", data_digest.split(":")[1]))

    def files(self, repo: str) -> set[str]:
        found = set()
        for directory, _, names in os.walk(os.path.join(self.root, repo)):
            found.update(os.path.relpath(os.path.join(directory, n), os.path.join(self.root, repo)) for n in names)
        return found

    def plant_temporary_files(self, repo: str) -> list[str]:
        """What interrupted writes leave: a blob's .tmp- file and the index's."""
        leftovers = [
            os.path.join(self.root, repo, "blobs", "sha256", ".tmp-abc"),
            os.path.join(self.root, repo, ".tmp-index"),
        ]
        for path in leftovers:
            with open(path, "wb") as stream:
                stream.write(b"partial")
        return leftovers

    @async_test
    async def test_unreferenced_blob_goes_at_gc_delay_not_before(self) -> None:
        await push_image(self.store, "app", "v1", [b"kept"])
        orphan = await put_blob(self.store, "app", b"orphan layer")
        self.clock.advance(HOUR - 2)  # written within the last second: at most gcDelay - 1 s old
        report = await self.collector(gc_delay=HOUR).collect("app")
        self.assertTrue(self.blob_exists("app", orphan))
        self.assertEqual(report.blobs.count, 0)
        self.age(HOUR)
        report = await self.collector(gc_delay=HOUR).collect("app")
        self.assertFalse(self.blob_exists("app", orphan))
        self.assertEqual((report.blobs.count, report.blobs.bytes), (1, len(b"orphan layer")))
        self.assertTrue(self.blob_exists("app", digest(b"kept")))

    @async_test
    async def test_untagged_manifest_goes_after_retention_delay_with_its_own_blobs_only(self) -> None:
        old, old_body = await push_image(self.store, "app", "latest", [b"in both", b"old only"])
        new, _ = await push_image(self.store, "app", "latest", [b"in both", b"new only"])
        self.age(2 * HOUR)  # past gcDelay, not past retention.delay
        report = await self.collector(gc_delay=HOUR).collect("app")
        self.assertEqual(report.manifests, [])
        self.assertTrue(self.blob_exists("app", old))
        self.age(DAY)
        report = await self.collector(gc_delay=HOUR).collect("app")
        self.assertEqual(report.manifests, [old])
        self.assertEqual(report.blobs.count, 2)  # the manifest and its own layer (the config is shared)
        self.assertFalse(self.blob_exists("app", digest(b"old only")))
        self.assertTrue(self.blob_exists("app", digest(b"in both")))
        self.assertTrue(self.blob_exists("app", new))
        self.assertEqual(await self.store.tags("app"), ["latest"])

    @async_test
    async def test_index_children_and_referrers_of_kept_images_stay(self) -> None:
        _, child_a = await push_image(self.store, "app", "a", [b"la"])
        _, child_b = await push_image(self.store, "app", "b", [b"lb"])
        index, _ = await push_index(self.store, "app", "multi", [child_a, child_b])
        await self.store.delete_manifest("app", "a")  # children now untagged, listed by the index
        await self.store.delete_manifest("app", "b")
        gone, gone_body = await push_image(self.store, "app", "gone", [b"lg"])
        sbom, _ = await push_image(self.store, "app", "sbom-kept", [b"s1"], subject=child_a)
        orphan_sig, _ = await push_image(self.store, "app", "sig-orphan", [b"s2"], subject=gone_body)
        await self.store.delete_manifest("app", gone)
        self.age(2 * DAY)
        # zot keeps a referrer whose subject is gone unless a policy says deleteReferrers...
        report = await self.collector(gc_delay=HOUR).collect("app")
        self.assertEqual(report.manifests, [])
        # ...and then it goes, although tagged.
        referrers = RetentionPolicy(repositories=("**",), delete_referrers=True)
        report = await self.collector(gc_delay=HOUR, policies=(referrers,)).collect("app")
        self.assertEqual(report.manifests, [orphan_sig])
        for kept in (index, digest(child_a), digest(child_b), sbom, digest(b"la"), digest(b"lb")):
            self.assertTrue(self.blob_exists("app", kept), kept)
        self.assertFalse(self.blob_exists("app", gone))
        self.assertEqual(await self.store.tags("app"), ["multi", "sbom-kept"])

    @async_test
    async def test_policies_decide_untagged_and_referrers(self) -> None:
        old, _ = await push_image(self.store, "prod/app", "latest", [b"one"])
        await push_image(self.store, "prod/app", "latest", [b"two"])
        self.age(2 * DAY)
        keep_untagged = RetentionPolicy(repositories=("prod/**",), delete_untagged=False)
        report = await self.collector(policies=(keep_untagged,)).collect("prod/app")
        self.assertEqual(report.manifests, [])
        # A repository no policy matches keeps its tags, but loses untagged manifests (zot's default).
        other = RetentionPolicy(repositories=("tmp/**",), delete_untagged=False)
        self.assertEqual((await self.collector(policies=(other,)).collect("prod/app")).manifests, [old])

    @async_test
    async def test_stale_uploads_and_temporary_files(self) -> None:
        await push_image(self.store, "app", "v1", [b"layer"])
        session = await self.store.start_upload("app")
        leftovers = self.plant_temporary_files("app")
        self.clock.advance(HOUR - 5)
        report = await self.collector(gc_delay=HOUR).collect("app")
        self.assertEqual((report.uploads.count, report.temporary.count, report.blobs.count), (0, 0, 0))
        self.age(HOUR)
        report = await self.collector(gc_delay=HOUR).collect("app")
        self.assertEqual((report.uploads.count, report.blobs.count), (1, 1))  # blobs/: the .tmp- file
        self.assertEqual(report.temporary.count, 1)
        self.assertFalse(os.path.exists(os.path.join(self.root, "app", ".uploads", session)))
        self.assertFalse(any(os.path.exists(path) for path in leftovers))

    @async_test
    async def test_temporary_files_wait_out_a_stalled_clients_idle_timeout(self) -> None:
        """A .tmp- file is a write in progress until its client's connection is closed as idle:
        a gcDelay below that timeout must not remove the file under a client that is only slow."""
        await push_image(self.store, "app", "v1", [b"layer"])
        leftovers = self.plant_temporary_files("app")
        self.age(IDLE_TIMEOUT_SECONDS - 10)
        report = await self.collector(gc_delay=60).collect("app")
        self.assertEqual((report.temporary.count, report.blobs.count), (0, 0))
        self.assertTrue(all(os.path.exists(path) for path in leftovers))
        self.age(IDLE_TIMEOUT_SECONDS)
        report = await self.collector(gc_delay=60).collect("app")
        self.assertEqual((report.temporary.count, report.blobs.count), (1, 1))  # blobs/: the .tmp- file
        self.assertFalse(any(os.path.exists(path) for path in leftovers))

    @async_test
    async def test_dry_run_reports_and_removes_nothing(self) -> None:
        await push_image(self.store, "app", "latest", [b"one"])
        await push_image(self.store, "app", "latest", [b"two"])
        await put_blob(self.store, "app", b"orphan")
        before = self.files("app")
        self.age(2 * DAY)
        collector = self.collector()
        collector.dry_run = True
        report = await collector.collect("app")
        self.assertEqual((len(report.manifests), report.blobs.count), (1, 3))  # manifest, layer, orphan
        self.assertIn("would remove", report.summary())
        self.assertEqual(self.files("app"), before)

    @async_test
    async def test_one_pass_leaves_exactly_the_reachable_content(self) -> None:
        keep, keep_body = await push_image(self.store, "app", "v1", [b"l1", b"l2"])
        await push_image(self.store, "app", "v2", [b"l3"])
        await self.store.delete_manifest("app", "v2")
        await put_blob(self.store, "app", b"abandoned")
        await self.store.start_upload("app")
        self.age(2 * DAY)
        await self.collector().collect("app")
        config = [name for name in self.files("app") if name.startswith("blobs/")]
        expected = {f"blobs/sha256/{digest(data).split(':')[1]}" for data in (keep_body, b"l1", b"l2")}
        self.assertEqual(len(config), 4)  # the three above and the image's config
        self.assertTrue(expected < set(config))
        self.assertEqual(self.files("app") - set(config), {"index.json", "oci-layout"})
        pulled = await self.store.get_manifest("app", "v1")
        self.assertEqual(str(pulled.digest), keep)


class ServiceTests(unittest.TestCase):
    """The periodic pass: owned repositories only, inside the time window, with metrics and a log line."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="zotpy-gc-service-")
        self.store = ImageStore(LocalDriver(self.root, reactor, reactor.getThreadPool()))
        self.clock = task.Clock()
        self.clock.advance(time.time() + 2 * DAY)  # everything written in the test is 2 days old

    @async_test
    async def test_only_owned_repositories_are_collected_and_counted(self) -> None:
        for repo in ("mine", "theirs"):
            await push_image(self.store, repo, "v1", [b"layer"])
            await put_blob(self.store, repo, b"orphan")
        metrics = GCMetrics(CollectorRegistry())
        messages: list[dict] = []
        globalLogPublisher.addObserver(messages.append)
        self.addCleanup(globalLogPublisher.removeObserver, messages.append)
        service = GCService(
            Collector(self.store, LifecycleSettings(gc_interval=60), self.clock),
            self.store.repositories, lambda repo: repo == "mine", self.clock, metrics,
        )
        service.startService()
        self.addCleanup(service.stopService)
        self.clock.advance(59)
        self.assertIsNone(service.running_pass)
        self.clock.advance(1)
        self.assertIsNotNone(service.running_pass)
        await service.running_pass
        self.assertFalse(os.path.exists(os.path.join(self.root, "mine", "blobs", "sha256", digest(b"orphan")[7:])))
        self.assertTrue(os.path.exists(os.path.join(self.root, "theirs", "blobs", "sha256", digest(b"orphan")[7:])))
        self.assertEqual(metrics.deleted.labels("blob")._value.get(), 1)
        self.assertEqual(metrics.runs.labels("false")._value.get(), 1)
        self.assertEqual(metrics.repositories._value.get(), 1)
        lines = [m for m in messages if m.get("repository") is not None and "gc" in m.get("log_format", "")]
        self.assertEqual([m["repository"] for m in lines], ["mine"])
        self.assertEqual(lines[0]["bytes_freed"], len(b"orphan"))

    def test_time_window_skips_ticks_outside_it(self) -> None:
        window = parse_time_window("01:00-03:00")
        service = GCService(
            Collector(self.store, LifecycleSettings(gc_interval=60, time_window=window), self.clock),
            self.store.repositories, lambda repo: True, self.clock,
        )
        day = datetime.datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
        self.clock.rightNow = (day + datetime.timedelta(hours=4)).timestamp()
        service._tick()
        self.assertIsNone(service.running_pass)
        self.assertTrue(window.contains((day + datetime.timedelta(hours=2, minutes=59)).timestamp()))
        self.assertFalse(window.contains((day + datetime.timedelta(hours=3)).timestamp()))
        overnight = parse_time_window("22:30-01:00")
        self.assertTrue(overnight.contains((day + datetime.timedelta(minutes=30)).timestamp()))
        self.assertFalse(overnight.contains((day + datetime.timedelta(hours=22)).timestamp()))


class SettingsTests(unittest.TestCase):
    def read(self, **storage: object) -> LifecycleSettings:
        config = parse_config({"storage": {"rootDirectory": "/srv", "dedupe": False, **storage}})
        return config.storage.lifecycle

    def test_zot_defaults_and_sample_files(self) -> None:
        self.assertEqual(
            (self.read().gc_delay, self.read().gc_interval, self.read().retention_delay), (HOUR, HOUR, DAY)
        )
        sample = load_config(str(FIXTURES / "zot-config-gc.json"))
        self.assertEqual(sample.storage.lifecycle.gc_delay, 2 * HOUR)
        self.assertEqual(sample.storage.lifecycle.time_window, TimeWindow(60, 480))
        settings = self.read(retention={
            "dryRun": True, "delay": "48h",
            "policies": [{"repositories": ["tmp/**"], "deleteReferrers": True, "keepTags": [
                {"patterns": ["v1.*"], "pulledWithin": "168h", "mostRecentlyPushedCount": 3}]}],
        })
        self.assertEqual((settings.dry_run, settings.retention_delay), (True, 2 * DAY))
        policy = settings.policies[0]
        self.assertEqual(policy.keep_tags[0].pulled_within, 7 * DAY)
        self.assertEqual(policy.keep_tags[0].most_recently_pushed_count, 3)
        self.assertIs(settings.policy_for("tmp/x/y"), policy)
        self.assertIsNone(settings.policy_for("prod/x"))

    def test_problems_name_their_key_path(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.read(
                gcDelay="soon", gcInterval=5, gcTimeWindow="25:00-01:00",
                retention={"delay": "-1h", "policies": [{"repositories": [], "keepTags": [{"patternz": []}]},
                                                        {"repositories": ["a/*"], "keepTags": [{"patterns": ["("]}]}]},
            )
        paths = [path for path, _ in caught.exception.problems]
        self.assertEqual(sorted(paths), [
            "storage.gcDelay", "storage.gcInterval", "storage.gcTimeWindow", "storage.retention.delay",
            "storage.retention.policies[0].repositories", "storage.retention.policies[1].keepTags[0].patterns",
        ])
