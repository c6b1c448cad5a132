"""The membership view: fingerprints, which reloads of ``cluster.members`` are refused, and when a
replica whose list changed may write a repository it now owns (unit tests: no network)."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from zotpy.cluster.identity import Identity, identify
from zotpy.cluster.membership import Membership, PeerView, View, fingerprint, peer_view, reload_problems
from zotpy.cluster.resize import MembersReload
from zotpy.config import load_config
from zotpy.observability.reload import Reloader

KEY = b"loremipsumdolors"
THREE = ("127.0.0.1:5000", "127.0.0.2:5000", "127.0.0.3:5000")
FOUR = THREE + ("127.0.0.4:5000",)


def membership(members: tuple[str, ...], address: str) -> Membership:
    return Membership(View(members, KEY), identify(members, address, 5000))


class FingerprintTests(unittest.TestCase):
    def test_any_member_their_order_or_the_key_changes_it(self) -> None:
        base = fingerprint(THREE, KEY)
        self.assertRegex(base, r"^[0-9a-f]{12}$")
        self.assertEqual(base, View(THREE, KEY).fingerprint)
        others = {
            fingerprint(FOUR, KEY), fingerprint(tuple(reversed(THREE)), KEY),
            fingerprint(THREE, b"sixteen byte key"), fingerprint(THREE[:2], KEY),
        }
        self.assertEqual(len(others), 4)
        self.assertNotIn(base, others)

    def test_a_peers_members_are_trusted_only_when_they_hash_to_its_fingerprint(self) -> None:
        document = {"fingerprint": fingerprint(FOUR, KEY), "members": list(FOUR)}
        self.assertEqual(peer_view(document, KEY), PeerView(document["fingerprint"], FOUR))
        self.assertIsNone(peer_view(document, b"sixteen byte key").members)  # another hashKey
        with self.assertRaises(ValueError):
            peer_view({"fingerprint": "x", "members": "127.0.0.1:1"}, KEY)


class ReloadProblemTests(unittest.TestCase):
    def setUp(self) -> None:
        self.membership = membership(THREE, "127.0.0.2")

    def judge(self, members: tuple[str, ...], key: bytes = KEY, address: str = "127.0.0.2") -> Any:
        return reload_problems(self.membership, members, key, address, 5000)

    def test_a_new_list_gives_the_view_and_this_replicas_place(self) -> None:
        problems, view, identity = self.judge(("127.0.0.4:5000", "127.0.0.2:5000"))
        self.assertEqual(problems, [])
        self.assertEqual(view, View(("127.0.0.4:5000", "127.0.0.2:5000"), KEY))
        self.assertEqual((identity.index, identity.member), (1, "127.0.0.2:5000"))

    def test_duplicates_are_refused_at_their_index(self) -> None:
        problems, view, _ = self.judge(THREE + ("127.0.0.2:5000",))
        self.assertEqual([path for path, _ in problems], ["cluster.members[3]"])
        self.assertIn("cluster.members[1]", problems[0][1])
        self.assertIsNone(view)

    def test_a_hash_key_change_needs_a_restart(self) -> None:
        problems, view, _ = self.judge(FOUR, key=b"sixteen byte key")
        self.assertEqual([path for path, _ in problems], ["cluster.hashKey"])
        self.assertIn("restart", problems[0][1])

    def test_a_list_without_this_replica_is_refused(self) -> None:
        problems, _, _ = self.judge(("127.0.0.1:5000", "127.0.0.3:5000"))
        self.assertEqual([path for path, _ in problems], ["cluster.members"])
        self.assertIn("not in the new list", problems[0][1])

    def test_dropping_the_cluster_or_going_to_one_member_needs_a_restart(self) -> None:
        self.assertEqual([p for p, _ in reload_problems(self.membership, None, None, "127.0.0.2", 5000)[0]], ["cluster"])
        self.assertEqual([p for p, _ in self.judge(("127.0.0.2:5000",))[0]], ["cluster.members"])


class WriteHolderTests(unittest.TestCase):
    """Rule 2 of :mod:`zotpy.cluster.membership`: the replica whose view changed yields."""

    def setUp(self) -> None:
        self.membership = membership(THREE, "127.0.0.1")
        self.old = self.membership.view
        new_identity = identify(FOUR, "127.0.0.1", 5000)
        self.membership.change(View(FOUR, KEY), new_identity)
        self.new = self.membership.view
        names = [f"repo-{n}" for n in range(400)]
        me = "127.0.0.1:5000"
        self.kept = next(n for n in names if self.new.owner(n) == me and self.old.owner(n) == me)
        self.gained = next(n for n in names if self.new.owner(n) == me and self.old.owner(n) != me)
        self.previous_owner = self.old.owner(self.gained)

    def test_before_asking_the_previous_owner_is_presumed_to_hold_it(self) -> None:
        self.assertEqual(self.membership.previous, self.old)
        self.assertEqual(self.membership.write_holder(self.gained), (self.previous_owner, self.old.fingerprint))
        self.assertIsNone(self.membership.write_holder(self.kept))

    def test_members_on_the_old_list_hold_what_they_own_by_it(self) -> None:
        old = PeerView(self.old.fingerprint, self.old.members)
        new = PeerView(self.new.fingerprint, self.new.members)
        peers = {member: old for member in THREE[1:]}
        self.membership.answered(peers)  # 127.0.0.4 is not up yet: it counts for nothing
        self.assertFalse(self.membership.settled)
        self.assertEqual(self.membership.write_holder(self.gained), (self.previous_owner, self.old.fingerprint))
        self.assertIsNone(self.membership.write_holder(self.kept))
        # The previous owner reloads: the repository is this replica's to write.
        peers[self.previous_owner] = new
        self.membership.answered(peers)
        self.assertIsNone(self.membership.write_holder(self.gained))
        peers.update({member: new for member in FOUR[1:]})
        self.membership.answered(peers)
        self.assertTrue(self.membership.settled)
        self.assertEqual(self.membership.to_ask(), list(FOUR[1:]))  # the old list is no longer asked

    def test_a_peer_hashing_with_another_key_holds_everything(self) -> None:
        self.membership.answered({THREE[1]: PeerView("someother0000", None)})
        self.assertEqual(self.membership.write_holder(self.kept), (THREE[1], "someother0000"))

    def test_a_replica_that_joins_learns_the_list_the_others_still_hold(self) -> None:
        joining = membership(FOUR, "127.0.0.4")
        self.assertIsNone(joining.previous)
        joining.answered({THREE[0]: PeerView(self.old.fingerprint, THREE)})  # the others have not reloaded yet
        self.assertEqual(joining.previous, self.old)
        self.assertFalse(joining.settled)

    def test_listeners_learn_of_a_change_and_a_same_list_changes_nothing(self) -> None:
        seen: list[str] = []
        self.membership.listeners.append(lambda m: seen.append(m.view.fingerprint))
        self.membership.change(View(FOUR, KEY), self.membership.identity)
        self.assertEqual(seen, [])
        self.membership.change(View(THREE, KEY), identify(THREE, "127.0.0.1", 5000))
        self.assertEqual(seen, [self.old.fingerprint])


class MembersReloadTests(unittest.TestCase):
    """SIGHUP's path: the reloader asks the check, refuses with the key path, or applies."""

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.root = os.path.abspath(self.mktemp())
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.write(THREE)
        self.reloader = Reloader(load_config(self.path))
        self.membership = membership(THREE, "127.0.0.2")
        reload = MembersReload(self.membership, "127.0.0.2", 5000)
        self.reloader.register(("cluster.members", "cluster.hashKey"), reload.apply, check=reload.check)

    def write(self, members: tuple[str, ...], key: bytes = KEY) -> None:
        document = {
            "distSpecVersion": "1.1.0",
            "storage": {"rootDirectory": self.root},
            "http": {"address": "127.0.0.2", "port": "5000"},
            "cluster": {"members": list(members), "hashKey": key.decode()},
        }
        with open(self.path, "w") as stream:
            json.dump(document, stream)

    def messages(self) -> str:
        return "\n".join(formatEvent(event) for event in self.events)

    def test_refused_reloads_change_nothing_and_name_the_key(self) -> None:
        for members, key, path in [
            (FOUR + ("127.0.0.1:5000",), KEY, "cluster.members[4]"),
            (FOUR, b"sixteen byte key", "cluster.hashKey"),
            (("127.0.0.1:5000", "127.0.0.3:5000"), KEY, "cluster.members: this replica is not in the new list"),
        ]:
            del self.events[:]
            self.write(members, key)
            self.assertEqual(self.reloader.reload(), [])
            self.assertEqual(self.membership.view, View(THREE, KEY))
            self.assertIn(path, self.messages())
            self.assertIn("not applied", self.messages())

    def test_a_good_list_is_applied(self) -> None:
        self.write(FOUR)
        self.assertEqual(self.reloader.reload(), ["cluster.members"])
        self.assertEqual(self.membership.view, View(FOUR, KEY))
        self.assertEqual(self.membership.identity, Identity(1, "127.0.0.2:5000", "http.address 127.0.0.2:5000"))
        self.assertEqual(self.membership.previous, View(THREE, KEY))
        self.assertIn("cluster members changed", self.messages())
