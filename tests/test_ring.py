"""The ring against zot's SipHash vectors (zot-compatible ownership; tests/fixtures/README.md)."""

from __future__ import annotations

import json
import pathlib

from siphash24 import siphash24
from twisted.trial import unittest

from zotpy.cluster.ring import Ring, repository_hash

VECTORS = pathlib.Path(__file__).resolve().parent / "fixtures" / "ring-vectors.json"


class RingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.vectors = json.loads(VECTORS.read_text())
        self.key = self.vectors["hashKey"].encode()

    def test_reference_vector(self) -> None:
        reference = self.vectors["reference_vector"]
        digest = siphash24(bytes.fromhex(reference["message_hex"]), key=bytes.fromhex(reference["key_hex"])).digest()
        self.assertEqual(int.from_bytes(digest, "little"), int(reference["sum64"], 16))

    def test_repository_hashes(self) -> None:
        for vector in self.vectors["vectors"]:
            self.assertEqual(repository_hash(vector["repo"], self.key), int(vector["sum64"], 16), vector["repo"])

    def test_owners_for_every_member_count(self) -> None:
        for vector in self.vectors["vectors"]:
            for count, owner in vector["owner"].items():
                members = tuple(f"10.0.0.{i}:9000" for i in range(int(count)))
                ring = Ring(members, self.key)
                self.assertEqual(ring.owner_index(vector["repo"]), owner, (vector["repo"], count))
                self.assertEqual(ring.owner(vector["repo"]), members[owner])

    def test_hash_is_unsigned(self) -> None:
        # alpine's SipHash has the top bit set: a signed reading would give a negative owner.
        self.assertGreater(repository_hash("alpine", self.key), 2**63)

    def test_hash_key_must_be_sixteen_bytes(self) -> None:
        for key in (b"short", b"seventeen bytes!!"):
            with self.assertRaises(ValueError):
                Ring(("a:1", "b:1"), key)
