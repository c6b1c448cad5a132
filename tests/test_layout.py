"""The index.json model: tags, untagged manifests, zot's quirks."""

from __future__ import annotations

import json

from twisted.trial import unittest

from zotpy.oci.digest import parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import OCI_MANIFEST, REF_NAME_ANNOTATION
from zotpy.storage.layout import RepositoryIndex

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
