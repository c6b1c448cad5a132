"""The driver suite on the local filesystem, plus what only a filesystem can show."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial import unittest

from tests.driversuite import StorageDriverTests, async_test
from zotpy.storage.local import LocalDriver


class LocalDriverTests(StorageDriverTests, unittest.TestCase):
    def make_driver(self) -> LocalDriver:
        self.root = self.mktemp()
        os.makedirs(self.root)
        return LocalDriver(self.root, reactor, reactor.getThreadPool())

    async def leftovers(self, directory: str) -> list[str]:
        full = os.path.join(self.root, directory)
        return os.listdir(full) if os.path.isdir(full) else []

    @async_test
    async def test_put_content_leaves_no_temporary_files(self) -> None:
        await self.driver.put_content("r/index.json", b"{}")
        await self.driver.put_content("r/index.json", b"{ }")
        self.assertEqual(os.listdir(os.path.join(self.root, "r")), ["index.json"])

    @async_test
    async def test_copy_of_immutable_blob_is_a_hard_link(self) -> None:
        await self.driver.put_content("a/blobs/sha256/x", b"layer")
        await self.driver.copy("a/blobs/sha256/x", "b/blobs/sha256/x")
        source = os.stat(os.path.join(self.root, "a/blobs/sha256/x"))
        copy = os.stat(os.path.join(self.root, "b/blobs/sha256/x"))
        self.assertEqual(source.st_ino, copy.st_ino)
