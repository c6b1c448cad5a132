"""The metadata keeper: events batched and flushed by the owner, rebuilt from the layout."""

from __future__ import annotations

import json
import os
import tempfile

from twisted.internet import reactor, task
from twisted.trial import unittest

from tests.storeimages import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, digest, encode, push_image, push_index, put_blob
from tests.test_api import async_test
from zotpy.meta.details import MAX_CONFIG_BYTES, DetailsReader
from zotpy.meta.keeper import META_FILE, MetaKeeper
from zotpy.meta.model import ImageMeta, RepositoryMeta
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver


class KeeperTests(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="zotpy-meta-")
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.driver = LocalDriver(self.root, reactor, reactor.getThreadPool())
        self.owned = {"app", "team/web"}
        self.keeper = MetaKeeper(self.driver, self.clock, lambda repo: repo in self.owned)
        self.store = ImageStore(self.driver, events=self.keeper)

    def stored(self, repo: str) -> dict:
        with open(os.path.join(self.root, repo, META_FILE), "rb") as stream:
            return json.load(stream)

    @async_test
    async def test_push_then_pulls_are_batched_until_flush(self) -> None:
        digest, body = await push_image(self.store, "app", "v1", [b"layer-a", b"layer-b"])
        await self.keeper.flush()
        image = self.stored("app")["images"][0]
        self.assertEqual((image["digest"], image["tags"], image["pushed_at"]), (digest, ["v1"], 1_000_000))
        self.assertEqual(image["pull_count"], 0)
        self.assertEqual(image["size"], len(body) + sum(image["parts"].values()))

        self.clock.advance(60)
        for reference in ("v1", digest, "v1"):
            await self.store.get_manifest("app", reference, pull=True)
        await self.store.get_manifest("app", "v1")  # a HEAD or an internal read is no download
        self.assertEqual(self.stored("app")["images"][0]["pull_count"], 0, "a pull wrote to storage")
        await self.keeper.flush()
        image = self.stored("app")["images"][0]
        self.assertEqual((image["pull_count"], image["last_pulled_at"]), (3, 1_000_060))
        self.assertEqual(self.keeper.pending(), set())

    @async_test
    async def test_tags_move_untag_and_delete(self) -> None:
        first, _ = await push_image(self.store, "app", "latest", [b"one"])
        second, _ = await push_image(self.store, "app", "latest", [b"two"])
        await self.store.delete_manifest("app", "latest")
        meta = await self.keeper.get("app")
        self.assertEqual({d: i.tags for d, i in meta.images.items()}, {first: [], second: []})
        await self.store.delete_manifest("app", first)
        meta = await self.keeper.get("app")
        self.assertEqual(list(meta.images), [second])

    @async_test
    async def test_missing_or_corrupt_file_is_rebuilt_from_the_layout(self) -> None:
        digest, _ = await push_image(self.store, "app", "v1", [b"layer"])
        child, child_body = await push_image(self.store, "app", "amd64", [b"layer"])
        index, _ = await push_index(self.store, "app", "multi", [child_body])
        # A fresh keeper (a replica that just became owner) with no file: rebuilt.
        keeper = MetaKeeper(self.driver, self.clock)
        meta = await keeper.get("app")
        self.assertEqual(meta.tagged().keys(), {"v1", "amd64", "multi"})
        self.assertEqual(meta.images[index].parts, {child: len(child_body)})
        blob = os.path.join(self.root, "app", "blobs", "sha256", digest.split(":")[1])
        self.assertEqual(meta.images[digest].pushed_at, os.stat(blob).st_mtime)
        # A corrupt file: rebuilt too, and the next write replaces it.
        with open(os.path.join(self.root, "app", META_FILE), "wb") as stream:
            stream.write(b"{not json")
        keeper.pulled("app", meta.images[digest].digest)  # type: ignore[arg-type]
        await keeper.flush()
        self.assertEqual({i["digest"]: i["pull_count"] for i in self.stored("app")["images"]}[digest], 1)

    @async_test
    async def test_repositories_owned_elsewhere_are_never_written(self) -> None:
        await push_image(self.store, "other", "v1", [b"layer"])
        await self.store.get_manifest("other", "v1", pull=True)
        self.assertEqual(self.keeper.pending(), set())
        await self.keeper.flush()
        self.assertFalse(os.path.exists(os.path.join(self.root, "other", META_FILE)))


class ModelTests(unittest.TestCase):
    def image(self, digest: str, pushed: float, tags: list[str], parts: dict[str, int]) -> ImageMeta:
        return ImageMeta(digest, "m", 100 + sum(parts.values()), pushed, tags, parts=parts)

    def test_size_counts_shared_blobs_once_and_queries(self) -> None:
        meta = RepositoryMeta("app")
        meta.pushed(self.image("sha256:a", 10, ["v1"], {"sha256:l1": 1000, "sha256:c1": 10}))
        meta.pushed(self.image("sha256:b", 20, ["v2"], {"sha256:l1": 1000, "sha256:c2": 10}))
        meta.pushed(self.image("sha256:c", 30, [], {"sha256:l1": 1000}))
        self.assertEqual(meta.size, 3 * 100 + 1000 + 10 + 10)
        self.assertEqual(meta.newest_image().digest, "sha256:b")  # the newest *tagged* one
        self.assertEqual(meta.last_updated, 30)
        meta.pulled("sha256:a", 50, 2)
        meta.pulled("sha256:a", 40)
        self.assertEqual((meta.download_count, meta.images["sha256:a"].last_pulled_at), (3, 50))
        # A tag pushed onto another manifest leaves the first; pull history survives a re-push.
        meta.pushed(self.image("sha256:a", 60, ["v2"], {}))
        self.assertEqual(meta.tagged(), {"v1": meta.images["sha256:a"], "v2": meta.images["sha256:a"]})
        self.assertEqual(meta.images["sha256:a"].pull_count, 3)
        self.assertEqual(RepositoryMeta.parse(meta.serialize(), "app"), meta)
        with self.assertRaises(ValueError):
            RepositoryMeta.parse(meta.serialize(), "other")


class ReconcileTests(unittest.TestCase):
    @async_test
    async def test_a_file_left_stale_by_another_writer_heals_keeping_pull_history(self) -> None:
        root = tempfile.mkdtemp(prefix="zotpy-meta-stale-")
        driver = LocalDriver(root, reactor, reactor.getThreadPool())
        clock = task.Clock()
        keeper = MetaKeeper(driver, clock)
        store = ImageStore(driver, events=keeper)
        kept, _ = await push_image(store, "app", "v1", [b"one"])
        gone, _ = await push_image(store, "app", "v2", [b"two"])
        await store.get_manifest("app", "v1", pull=True)
        await keeper.flush()
        # Another writer (an offline GC, zot) changes index.json without telling this keeper.
        other = ImageStore(driver)
        await other.delete_manifest("app", gone)
        await other.put_manifest("app", "latest", (await other.get_manifest("app", "v1")).body, None)
        meta = await MetaKeeper(driver, clock).get("app")
        self.assertEqual(list(meta.images), [kept])
        self.assertEqual(sorted(meta.images[kept].tags), ["latest", "v1"])
        self.assertEqual(meta.images[kept].pull_count, 1)


class RecentTests(unittest.TestCase):
    """``recent``: a copy kept for listings, dropped by any event, and by age; the search's listing."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.driver = LocalDriver(tempfile.mkdtemp(prefix="zotpy-meta-"), reactor, reactor.getThreadPool())
        self.keeper = MetaKeeper(self.driver, self.clock)
        self.store = ImageStore(self.driver, events=self.keeper)

    @async_test
    async def test_kept_until_an_event_or_its_age(self) -> None:
        keeper = self.keeper
        digest, _ = await push_image(self.store, "app", "v1", [b"layer"])
        first = await keeper.recent("app", 5)
        self.assertIs(await keeper.recent("app", 5), first)
        await self.store.get_manifest("app", "v1", pull=True)  # an event: read again
        second = await keeper.recent("app", 5)
        self.assertIsNot(second, first)
        self.assertEqual(second.images[digest].pull_count, 1)
        self.assertIs(await keeper.recent("app", 5), second)
        self.clock.advance(6)  # too old: read again (heals changes made behind the keeper's back)
        self.assertIsNot(await keeper.recent("app", 5), second)

    @async_test
    async def test_search_listing_kept_and_joined_with_pushes(self) -> None:
        from zotpy.search.listing import RecentListing

        await push_image(ImageStore(self.driver), "elsewhere", "v1", [b"layer"])  # behind the keeper's back
        walks: list[int] = []

        async def walk() -> list[str]:
            walks.append(1)
            return await self.store.repositories()

        listing = RecentListing(walk, self.keeper.seen, self.clock, 5)
        self.assertEqual(await listing.repositories(), ["elsewhere"])
        await push_image(self.store, "app", "v1", [b"layer"])
        self.assertEqual((await listing.repositories(), len(walks)), (["app", "elsewhere"], 1))  # at once, no walk
        await push_image(ImageStore(self.driver), "late", "v1", [b"layer"])
        self.assertEqual(await listing.repositories(), ["app", "elsewhere"])
        self.clock.advance(6)
        self.assertEqual((await listing.repositories(), len(walks)), (["app", "elsewhere", "late"], 2))
