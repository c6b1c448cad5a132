"""Dedupe on local disk: one inode for a layer stored in 20 repositories, a client's check linking
the blob instead of an upload, and GC of 19 repositories leaving the 20th intact."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time

from twisted.internet import reactor, task
from twisted.trial import unittest

from tests.storeimages import digest, push_image
from tests.test_api import async_test
from zotpy.lifecycle.dedupe import BlobLocator
from zotpy.lifecycle.gc import Collector
from zotpy.lifecycle.settings import LifecycleSettings
from zotpy.lifecycle.warmup import learn_layout
from zotpy.oci.digest import parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver

LAYERS = [os.urandom(64 * 1024), os.urandom(16 * 1024)]


class DedupeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="zotpy-dedupe-")
        self.locator = BlobLocator(lambda repo: not repo.startswith("elsewhere/"))
        self.store = ImageStore(LocalDriver(self.root, reactor, reactor.getThreadPool()), blobs=self.locator)

    def blob(self, repo: str, data: bytes) -> os.stat_result:
        return os.stat(os.path.join(self.root, repo, "blobs", "sha256", digest(data)[7:]))

    @async_test
    async def test_twenty_repositories_one_copy_and_gc_of_nineteen(self) -> None:
        repos = [f"team/app{i}" for i in range(20)]
        for repo in repos:  # each pushes the blobs whole (no check first): replaced by links
            await push_image(self.store, repo, "v1", LAYERS)
        inodes = {self.blob(repo, LAYERS[0]).st_ino for repo in repos}
        self.assertEqual(len(inodes), 1)
        self.assertEqual(self.blob(repos[0], LAYERS[0]).st_nlink, 20)

        clock = task.Clock()
        clock.advance(time.time() + 2 * 86400)
        collector = Collector(self.store, LifecycleSettings(), clock)
        for repo in repos[:19]:
            await self.store.delete_manifest(repo, "v1")
            report = await collector.collect(repo)
            self.assertGreaterEqual(report.blobs.count, 3)
        last = repos[19]
        self.assertEqual(self.blob(last, LAYERS[0]).st_nlink, 1)
        manifest = await self.store.get_manifest(last, "v1")
        self.assertEqual(str(manifest.digest), digest(manifest.body))
        for layer in LAYERS:
            path = os.path.join(self.root, last, "blobs", "sha256", digest(layer)[7:])
            with open(path, "rb") as stream:
                self.assertEqual(hashlib.sha256(stream.read()).hexdigest(), digest(layer)[7:])

    @async_test
    async def test_a_check_links_the_blob_so_the_upload_is_skipped(self) -> None:
        await push_image(self.store, "team/base", "v1", LAYERS)
        size = await self.store.blob_size("team/new", parse_digest(digest(LAYERS[0])))
        self.assertEqual(size, len(LAYERS[0]))
        self.assertEqual(self.blob("team/new", LAYERS[0]).st_ino, self.blob("team/base", LAYERS[0]).st_ino)
        # A repository this replica does not own is never written, and an unknown blob stays unknown.
        with self.assertRaises(RegistryError):
            await self.store.blob_size("elsewhere/app", parse_digest(digest(LAYERS[0])))
        self.assertFalse(os.path.exists(os.path.join(self.root, "elsewhere")))
        with self.assertRaises(RegistryError):
            await self.store.blob_size("team/new", parse_digest(digest(b"never stored")))

    @async_test
    async def test_a_collected_source_is_forgotten_not_linked(self) -> None:
        await self.store.put_blob("team/a", parse_digest(digest(LAYERS[1])), io.BytesIO(LAYERS[1]))
        os.unlink(os.path.join(self.root, "team/a", "blobs", "sha256", digest(LAYERS[1])[7:]))  # as GC would
        with self.assertRaises(RegistryError):
            await self.store.blob_size("team/b", parse_digest(digest(LAYERS[1])))
        self.assertIsNone(self.locator.source("team/b", parse_digest(digest(LAYERS[1]))))
        await self.store.put_blob("team/b", parse_digest(digest(LAYERS[1])), io.BytesIO(LAYERS[1]))
        self.assertEqual(self.blob("team/b", LAYERS[1]).st_nlink, 1)


class WarmupTests(unittest.TestCase):
    """After a restart the locator is empty; the warm-up learns the layout so dedupe goes on."""

    @async_test
    async def test_a_restarted_owner_links_what_was_stored_before(self) -> None:
        root = tempfile.mkdtemp(prefix="zotpy-dedupe-warmup-")
        before = ImageStore(LocalDriver(root, reactor, reactor.getThreadPool()), blobs=BlobLocator())
        await push_image(before, "team/base", "v1", LAYERS)
        await before.put_blob("team/base", parse_digest(digest(b"x")), io.BytesIO(b"x"))
        os.rename(  # a leftover of a killed writer: skipped, not learnt as a blob
            os.path.join(root, "team/base", "blobs", "sha256", digest(b"x")[7:]),
            os.path.join(root, "team/base", "blobs", "sha256", ".tmp-killed"),
        )
        locator = BlobLocator()
        after = ImageStore(LocalDriver(root, reactor, reactor.getThreadPool()), blobs=locator)
        pauses: list[None] = []

        async def pause() -> None:
            pauses.append(None)

        self.assertEqual(await learn_layout(locator, after, pause), (1, 4))  # 2 layers, config, manifest
        self.assertTrue(pauses)
        self.assertEqual(await after.blob_size("team/new", parse_digest(digest(LAYERS[0]))), len(LAYERS[0]))
        linked = os.stat(os.path.join(root, "team/new", "blobs", "sha256", digest(LAYERS[0])[7:]))
        self.assertEqual(linked.st_nlink, 2)
