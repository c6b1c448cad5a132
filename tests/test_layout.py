"""The index.json model: tags, untagged manifests, zot's quirks; and when the store looks for it."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests.driversuite import async_test

from zotpy.oci.digest import parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import OCI_MANIFEST, REF_NAME_ANNOTATION
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.layout import RepositoryIndex
from zotpy.storage.local import LocalDriver

A = parse_digest("sha256:" + "a" * 64)
B = parse_digest("sha256:" + "b" * 64)


class RepositoryIndexTests(unittest.TestCase):
    def test_zot_null_manifests(self) -> None:
        index = RepositoryIndex.parse(b'{"schemaVersion":2,"manifests":null}', "r")
        self.assertEqual(index.tags(), [])

    def test_corrupt_index_is_a_clear_error(self) -> None:
        for data in (b"{", b'{"manifests":[{"digest":"x"}]}', b"[]"):
            with self.assertRaises(RegistryError) as caught:
                RepositoryIndex.parse(data, "repo")
            self.assertEqual(caught.exception.detail["repository"], "repo")

    def test_tag_round_trip_keeps_unknown_fields(self) -> None:
        data = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": str(A), "size": 7, "platform": {"os": "linux"},
                     "annotations": {REF_NAME_ANNOTATION: "v1", "other": "x"}}
                ],
            }
        ).encode()
        again = json.loads(RepositoryIndex.parse(data, "r").serialize())
        self.assertEqual(again["mediaType"], "application/vnd.oci.image.index.v1+json")
        entry = again["manifests"][0]
        self.assertEqual(entry["platform"], {"os": "linux"})
        self.assertEqual(entry["annotations"], {REF_NAME_ANNOTATION: "v1", "other": "x"})

    def test_add_moves_tag_and_keeps_old_manifest_untagged(self) -> None:
        index = RepositoryIndex([])
        self.assertTrue(index.add(OCI_MANIFEST, A, 1, "latest"))
        self.assertFalse(index.add(OCI_MANIFEST, A, 1, "latest"))
        self.assertTrue(index.add(OCI_MANIFEST, B, 2, "latest"))
        self.assertEqual(index.by_tag("latest").digest, B)
        self.assertIsNone(index.by_digest(A).tag)
        self.assertEqual(index.tags(), ["latest"])

    def test_several_tags_one_manifest(self) -> None:
        index = RepositoryIndex([])
        index.add(OCI_MANIFEST, A, 1, "v1")
        index.add(OCI_MANIFEST, A, 1, "latest")
        self.assertEqual(index.tags(), ["latest", "v1"])
        self.assertEqual(len(list(index.manifests())), 1)
        self.assertTrue(index.remove_tag("v1"))
        self.assertEqual(index.tags(), ["latest"])
        self.assertEqual(len(index.entries), 1)

    def test_untagged_push_then_tag(self) -> None:
        index = RepositoryIndex([])
        index.add(OCI_MANIFEST, A, 1, None)
        self.assertFalse(index.add(OCI_MANIFEST, A, 1, None))
        index.add(OCI_MANIFEST, A, 1, "v1")
        self.assertEqual(len(index.entries), 1)

    def test_remove_tag_keeps_manifest_by_digest(self) -> None:
        index = RepositoryIndex([])
        index.add(OCI_MANIFEST, A, 1, "v1")
        self.assertTrue(index.remove_tag("v1"))
        self.assertFalse(index.remove_tag("v1"))
        self.assertIsNotNone(index.by_digest(A))

    def test_remove_digest_drops_every_tag(self) -> None:
        index = RepositoryIndex([])
        index.add(OCI_MANIFEST, A, 1, "v1")
        index.add(OCI_MANIFEST, A, 1, "v2")
        index.add(OCI_MANIFEST, B, 1, "v3")
        self.assertTrue(index.remove_digest(A))
        self.assertEqual(index.tags(), ["v3"])
        self.assertFalse(index.remove_digest(A))


class _LookingDriver(LocalDriver):
    """Records which objects' sizes were asked for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sized: list[str] = []

    def size(self, path: str) -> defer.Deferred[int]:
        self.sized.append(path)
        return super().size(path)


class LayoutTests(unittest.TestCase):
    @async_test
    async def test_a_layout_is_looked_for_once_per_repository(self) -> None:
        """The first upload finds (or makes) index.json; later uploads and pushes to the same
        repository do not look again (on S3 each look was a HEAD)."""
        root = self.mktemp()
        os.makedirs(root)
        driver = _LookingDriver(root, reactor, reactor.getThreadPool())
        store = ImageStore(driver)
        for repo in ("one", "one", "two", "one"):
            await store.start_upload(repo)
        looked_for = [path for path in driver.sized if path.endswith("index.json")]
        self.assertEqual(looked_for, ["one/index.json", "two/index.json"])
        self.assertTrue(os.path.exists(os.path.join(root, "two", "oci-layout")))
        # A repository laid out by someone else (another replica on the same storage) is found, not rewritten.
        os.makedirs(os.path.join(root, "three"))
        with open(os.path.join(root, "three", "index.json"), "w") as index:
            index.write('{"schemaVersion": 2, "manifests": []}')
        await store.start_upload("three")
        self.assertFalse(os.path.exists(os.path.join(root, "three", "oci-layout")))
