"""The previous owner dropping a repository its new owner holds (``cluster.rebalance.dropMoved``):
the decision, with a fake owner answer over a real local store; tests/integration/test_resize.py
runs it on real replicas."""

from __future__ import annotations

import os
import tempfile

from twisted.internet import reactor
from twisted.trial import unittest

from tests.driversuite import async_test
from tests.storeimages import push_image
from tests.support import local_store
from zotpy.cluster.identity import Identity
from zotpy.cluster.membership import Membership, PeerView, View
from zotpy.lifecycle.moved import MovedDropper
from zotpy.oci.digest import Digest, parse_digest

KEY = b"loremipsumdolors"
ME, OWNER = "127.0.0.1:1", "127.0.0.2:1"


class MovedDropperTests(unittest.TestCase):
    @async_test
    async def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="zotpy-test-")
        self.store = local_store(self.root)
        view = View((ME, OWNER), KEY)
        self.membership = Membership(view, Identity(0, ME, "test"))
        self.membership.answered({OWNER: PeerView(view.fingerprint, view.members)})
        names = (f"moved/repo-{n}" for n in range(1000))
        self.repo = next(n for n in names if view.owner(n) == OWNER)
        self.mine = next(n for n in (f"kept/repo-{n}" for n in range(1000)) if view.owner(n) == ME)
        self.v1, _ = await push_image(self.store, self.repo, "v1", [b"one"])
        self.v2, _ = await push_image(self.store, self.repo, "v2", [b"two"])
        self.nested = f"{self.repo}/nested"  # a repository under the moved one's directory stays
        await push_image(self.store, self.nested, "v1", [b"nested"])
        await push_image(self.store, self.mine, "v1", [b"mine"])
        self.answer: dict[str, Digest | None] | Exception = {"v1": parse_digest(self.v1), "v2": parse_digest(self.v2)}
        self.asked: list[tuple[str, str, list[str]]] = []
        self.dropper = MovedDropper(self.membership, self.store, reactor, 0.0, self.ask)

    async def ask(self, owner: str, repository: str, tags: list[str]) -> dict[str, Digest | None]:
        self.asked.append((owner, repository, tags))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def run_pass(self) -> list[str]:
        return await self.dropper.pass_over(await self.store.repositories())

    def held(self, repository: str) -> bool:
        return os.path.exists(os.path.join(self.root, repository, "index.json"))

    @async_test
    async def test_dropped_when_the_owner_holds_every_tag_with_the_same_digest(self) -> None:
        self.assertEqual(await self.run_pass(), [self.repo])
        self.assertIn((OWNER, self.repo, ["v1", "v2"]), self.asked)
        self.assertFalse(self.held(self.repo))
        self.assertFalse(os.path.exists(os.path.join(self.root, self.repo, "blobs")))
        self.assertTrue(self.held(self.mine))  # its own: never asked about
        self.assertNotIn(self.mine, [repository for _, repository, _ in self.asked])
        self.assertEqual(await self.store.repositories(), sorted([self.mine, self.nested]))  # nested: other tags

    @async_test
    async def test_kept_when_the_owner_lacks_a_tag_or_differs(self) -> None:
        self.answer = {"v1": parse_digest(self.v1), "v2": None}
        self.assertNotIn(self.repo, await self.run_pass())
        self.answer = {"v1": parse_digest(self.v1), "v2": parse_digest(self.v1)}
        self.assertNotIn(self.repo, await self.run_pass())
        self.assertTrue(self.held(self.repo))
        self.assertEqual(sorted(await self.store.tags(self.repo)), ["v1", "v2"])

    @async_test
    async def test_kept_when_the_owner_cannot_be_asked(self) -> None:
        self.answer = ConnectionRefusedError("connection refused")
        self.assertEqual(await self.run_pass(), [])
        self.assertTrue(self.held(self.repo))

    @async_test
    async def test_nothing_dropped_before_the_members_agree_or_within_gc_delay(self) -> None:
        self.membership.settled = False
        self.assertEqual(await self.run_pass(), [])
        self.membership.settled = True
        self.dropper.gc_delay = 3600.0  # the list changed (here: the dropper started) just now
        self.assertEqual(await self.run_pass(), [])
        self.dropper.changed_at -= 7200.0  # long ago, but the copy here was written just now
        self.assertEqual(await self.run_pass(), [])
        self.assertEqual(self.asked, [])
        self.assertTrue(self.held(self.repo))
