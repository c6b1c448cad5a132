"""Copying a repository this member took over from its previous owner (per-instance storage after a
resize): a real registry in process plays the previous owner; tests/integration/test_resize.py runs
the whole thing on real replicas."""

from __future__ import annotations

import tempfile

from twisted.internet import reactor
from twisted.trial import unittest

from tests.driversuite import async_test
from tests.storeimages import push_image
from tests.support import http_client, local_store, serve
from zotpy.api.site import registry_resource
from zotpy.cluster.identity import Identity
from zotpy.cluster.membership import Membership, PeerView, View
from zotpy.sync.moves import Mover, Rebalancer

KEY = b"loremipsumdolors"
ME = "127.0.0.1:1"


class MoverTests(unittest.TestCase):
    @async_test
    async def setUp(self) -> None:
        self.source = local_store(tempfile.mkdtemp(prefix="zotpy-test-"))
        self.here = local_store(tempfile.mkdtemp(prefix="zotpy-test-"))
        self.holder = (await serve(self, registry_resource(self.source))).removeprefix("http://")
        current = View((ME, self.holder), KEY)
        previous = View((self.holder, ME), KEY)
        self.membership = Membership(current, Identity(0, ME, "test"), previous=previous)
        self.membership.answered({self.holder: PeerView(current.fingerprint, current.members)})
        self.assertTrue(self.membership.settled)
        names = (f"moved/repo-{n}" for n in range(1000))
        self.repo = next(n for n in names if current.owner(n) == ME and previous.owner(n) == self.holder)
        self.mover = Mover(self.membership, self.here, http_client(self), reactor)

    async def digest(self, repo: str, tag: str) -> str:
        return str((await self.here.get_manifest(repo, tag)).digest)

    @async_test
    async def test_every_tag_is_copied_verified_and_the_repository_is_done(self) -> None:
        v1, _ = await push_image(self.source, self.repo, "v1", [b"layer one" * 100])
        v2, _ = await push_image(self.source, self.repo, "v2", [b"layer two" * 100])
        self.assertEqual(self.mover.previous_owner(self.repo), self.holder)
        await self.mover.ensure(self.repo, self.holder)
        self.assertEqual((await self.digest(self.repo, "v1"), await self.digest(self.repo, "v2")), (v1, v2))
        self.assertIsNone(self.mover.previous_owner(self.repo))  # done: no more waiting for it

    @async_test
    async def test_a_push_here_wins_and_a_tag_the_previous_owner_moved_is_followed(self) -> None:
        await push_image(self.source, self.repo, "v1", [b"first"])
        await push_image(self.source, self.repo, "v2", [b"second"])
        await self.mover.move(self.repo, self.holder, final=False)  # a copy before the members agreed
        moved, _ = await push_image(self.source, self.repo, "v1", [b"first, moved on the previous owner"])
        mine, _ = await push_image(self.here, self.repo, "v2", [b"pushed here"])
        await push_image(self.source, self.repo, "v3", [b"third"])
        await self.mover.move(self.repo, self.holder, final=True)
        self.assertEqual(await self.digest(self.repo, "v1"), moved)
        self.assertEqual(await self.digest(self.repo, "v2"), mine)
        self.assertEqual(sorted(await self.here.tags(self.repo)), ["v1", "v2", "v3"])

    @async_test
    async def test_nothing_held_there_is_nothing_to_copy(self) -> None:
        await self.mover.ensure(self.repo, self.holder)
        self.assertEqual(await self.here.repositories(), [])
        self.assertIsNone(self.mover.previous_owner(self.repo))

    @async_test
    async def test_the_rebalancer_finds_what_it_took_over_in_the_others_catalogs(self) -> None:
        stays = next(n for n in (f"stays/repo-{i}" for i in range(1000)) if self.membership.view.owner(n) == self.holder)
        await push_image(self.source, self.repo, "v1", [b"moves"])
        await push_image(self.source, stays, "v1", [b"stays"])
        rebalancer = Rebalancer(self.mover)
        self.assertEqual(await rebalancer.walk(), [(self.repo, self.holder, 0)])
        await rebalancer.step()  # reads the catalogs
        await rebalancer.step()  # copies
        self.assertEqual(await self.here.tags(self.repo), ["v1"])
        self.assertEqual((rebalancer.pending, rebalancer.copied), ([], 1))
