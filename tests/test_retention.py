"""Retention: which tags keepTags keeps (zot's rule precedence), keepUntagged, dryRun, with an injected clock."""

from __future__ import annotations

import tempfile
import time

from twisted.internet import reactor, task
from twisted.trial import unittest

from tests.storeimages import push_image
from tests.test_api import async_test
from zotpy.lifecycle.gc import Collector
from zotpy.lifecycle.retention import retained_tags, retained_untagged
from zotpy.lifecycle.settings import KeepRule, LifecycleSettings, RetentionPolicy
from zotpy.meta.keeper import MetaKeeper
from zotpy.meta.model import ImageMeta, RepositoryMeta
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver

DAY = 86400.0
NOW = 1_000 * DAY


def meta(**images: tuple[float, float | None]) -> RepositoryMeta:
    """tag -> (pushed days ago, pulled days ago or None); one manifest per tag."""
    repository = RepositoryMeta("prod/app")
    for tag, (pushed, pulled) in images.items():
        repository.pushed(ImageMeta(
            f"sha256:{tag}", "m", 1, NOW - pushed * DAY, [tag],
            last_pulled_at=None if pulled is None else NOW - pulled * DAY,
        ))
    return repository


def settings(*rules: KeepRule, untagged: KeepRule | None = None) -> LifecycleSettings:
    return LifecycleSettings(policies=(
        RetentionPolicy(repositories=("prod/**",), keep_tags=rules, keep_untagged=untagged),
    ))


class KeepTagsTests(unittest.TestCase):
    tags = {"v1.0": (90, None), "v1.1": (60, 1), "v2.0": (30, 40), "v2.1": (2, None), "dev": (1, 0)}

    def kept(self, config: LifecycleSettings, repo: str = "prod/app") -> set[str]:
        return retained_tags(config, repo, meta(**self.tags), list(self.tags), NOW)

    def test_tags_no_pattern_matches_go_and_a_rule_without_limits_keeps_its_group(self) -> None:
        self.assertEqual(self.kept(settings(KeepRule(patterns=("^v2",)))), {"v2.0", "v2.1"})
        self.assertEqual(self.kept(settings(KeepRule())), set(self.tags))  # no patterns: every tag

    def test_limits_are_or_and_counts_rank_within_the_group(self) -> None:
        newest_two = KeepRule(patterns=(r"^v",), most_recently_pushed_count=2)
        self.assertEqual(self.kept(settings(newest_two)), {"v2.0", "v2.1"})
        pulled = KeepRule(patterns=(r"^v",), most_recently_pulled_count=1)
        self.assertEqual(self.kept(settings(pulled)), {"v1.1"})
        both = KeepRule(patterns=(r"^v",), most_recently_pushed_count=1, most_recently_pulled_count=1)
        self.assertEqual(self.kept(settings(both)), {"v2.1", "v1.1"})

    def test_pulled_within_also_keeps_what_was_pushed_within(self) -> None:
        week = KeepRule(pulled_within=7 * DAY)
        self.assertEqual(self.kept(settings(week)), {"v1.1", "v2.1", "dev"})  # v2.1: pushed 2 days ago
        pushed = KeepRule(pushed_within=7 * DAY)
        self.assertEqual(self.kept(settings(pushed)), {"v2.1", "dev"})

    def test_first_matching_entry_decides_a_tag(self) -> None:
        # "v2.0" matches both: the first entry (only the newest push among its tags) decides.
        rules = (KeepRule(patterns=("^v2",), most_recently_pushed_count=1), KeepRule(patterns=(".*",)))
        self.assertEqual(self.kept(settings(*rules)), {"v2.1", "v1.0", "v1.1", "dev"})

    def test_unmatched_repository_unknown_tags_and_policies_without_keep_tags_keep_all(self) -> None:
        self.assertEqual(self.kept(settings(KeepRule(patterns=("^v2",))), "other/app"), set(self.tags))
        no_keep_tags = LifecycleSettings(policies=(RetentionPolicy(repositories=("**",)),))
        self.assertEqual(self.kept(no_keep_tags), set(self.tags))
        kept = retained_tags(settings(KeepRule(patterns=("^v2",))), "prod/app", meta(), ["v1.0"], NOW)
        self.assertEqual(kept, {"v1.0"})  # no statistics: kept, as zot does

    def test_keep_untagged(self) -> None:
        repository = meta(a=(1, None), b=(30, None), c=(60, 2))
        for image in repository.images.values():
            image.tags = []
        config = settings(untagged=KeepRule(pulled_within=7 * DAY))
        self.assertEqual(retained_untagged(config, "prod/app", repository, repository.images, NOW),
                         {"sha256:a", "sha256:c"})


class RetentionPassTests(unittest.TestCase):
    """keepTags through a GC pass: tags go, then their manifests and blobs; dryRun changes nothing."""

    def setUp(self) -> None:
        root = tempfile.mkdtemp(prefix="zotpy-retention-")
        self.driver = LocalDriver(root, reactor, reactor.getThreadPool())
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.keeper = MetaKeeper(self.driver, self.clock)
        self.store = ImageStore(self.driver, events=self.keeper)

    async def push_versions(self) -> dict[str, str]:
        digests = {}
        for number, tag in enumerate(["v1", "v2", "v3", "v4"]):
            digests[tag], _ = await push_image(self.store, "prod/app", tag, [f"layer {tag}".encode()])
            self.clock.advance(DAY)
        await self.store.get_manifest("prod/app", "v1", pull=True)  # v1: old but pulled yesterday-ish
        self.clock.advance(3 * DAY)
        return digests

    def collector(self, dry_run: bool = False) -> Collector:
        rule = KeepRule(most_recently_pushed_count=1, pulled_within=5 * DAY)
        config = LifecycleSettings(
            gc_delay=0, retention_delay=0, dry_run=dry_run,
            policies=(RetentionPolicy(repositories=("prod/**",), keep_tags=(rule,)),),
        )
        return Collector(self.store, config, self.clock, metadata=self.keeper)

    @async_test
    async def test_tags_outside_the_policy_go_with_their_images(self) -> None:
        digests = await self.push_versions()
        report = await self.collector().collect("prod/app")
        self.assertEqual(sorted(report.tags), ["v2", "v3"])
        self.assertEqual(sorted(report.manifests), sorted([digests["v2"], digests["v3"]]))
        self.assertEqual(await self.store.tags("prod/app"), ["v1", "v4"])
        self.assertEqual(report.blobs.count, 6)  # two manifests, their layers and configs
        meta = await self.keeper.get("prod/app")
        self.assertEqual(set(meta.images), {digests["v1"], digests["v4"]})

    @async_test
    async def test_dry_run_reports_and_keeps_index_and_blobs(self) -> None:
        digests = await self.push_versions()
        report = await self.collector(dry_run=True).collect("prod/app")
        self.assertEqual(sorted(report.tags), ["v2", "v3"])
        self.assertIn("retention would remove 2 tags and 2 manifests", report.summary())
        self.assertEqual(await self.store.tags("prod/app"), ["v1", "v2", "v3", "v4"])
        self.assertEqual(report.blobs.count, 0)
        pulled = await self.store.get_manifest("prod/app", "v2")
        self.assertEqual(str(pulled.digest), digests["v2"])
