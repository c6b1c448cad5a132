"""Who the members are right now, and whether this replica may write a repository it owns.

``cluster.members`` can change while the replicas serve (SIGHUP, one replica at a time). Each
replica then routes by its own :class:`View` (the ordered member list and the hash key), and for a
while the replicas disagree. Two rules keep every repository at one writer during such a roll:

1. **A forwarded request carries the sender's view** (``X-Zotpy-Cluster-View: <fingerprint>``). A
   receiver whose view differs answers ``503 UNAVAILABLE`` with ``Retry-After: 1``, naming both
   fingerprints, instead of serving a request routed by a list it does not hold (zot's answer to
   that case is a 500; zotpy's was a 508).
2. **A replica whose view changed (or that just started) writes a repository it owns only once no
   other view still assigns that repository elsewhere.** It asks every member of its current and
   previous list for their view (``GET /_zotpy/cluster``, every half second until all of them
   agree). Until then a write to a repository that some disagreeing, reachable member owns under
   its own view is answered 503 the same way: that member still writes it, by its older list, and
   will stop as soon as it reloads. A member that cannot be reached writes nothing and blocks
   nothing; a member that was removed keeps its repositories until it is stopped.

Reads are never held back: the owner by this replica's view answers them. Replicas that never
changed view do not wait for anybody: the replica that changed view is the one that yields.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable

import attrs

from zotpy.cluster.identity import Identity, IdentityError, identify
from zotpy.cluster.ring import Ring

#: The header a forwarding replica adds: its view's fingerprint.
VIEW_HEADER = b"X-Zotpy-Cluster-View"
#: ``local`` on a read: answer from this member's own storage, whoever owns the repository (a member
#: copying a repository it took over asks the previous owner so; the caller's policy still applies).
#: Believed from members only (``ClusterResource``): a client must not read a previous owner's stale copy.
SCOPE_HEADER = b"X-Zotpy-Scope"
#: Where every replica reports its view, unauthenticated like the probes (peers poll it).
STATUS_PATH = b"/_zotpy/cluster"
#: What a 503 caused by a disagreement asks clients to wait, in seconds.
RETRY_AFTER_SECONDS = 1

_READ_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


def fingerprint(members: Iterable[str], hash_key: bytes) -> str:
    """12 hex digits that change with any member, their order or the hash key (which does not leak:
    it is only ever hashed together with the list)."""
    text = json.dumps([list(members), hash_key.hex()], separators=(",", ":")).encode()
    return hashlib.sha256(b"zotpy cluster view\0" + text).hexdigest()[:12]


def is_fingerprint(text: str) -> bool:
    """Whether ``text`` has the shape :func:`fingerprint` gives (12 lower-case hex digits)."""
    return len(text) == 12 and all(character in "0123456789abcdef" for character in text)


@attrs.frozen
class View:
    """One membership: the ordered ``cluster.members`` and the ``hashKey`` they are hashed with."""

    members: tuple[str, ...]
    hash_key: bytes = attrs.field(repr=False)
    ring: Ring = attrs.field(init=False, repr=False, eq=False)
    fingerprint: str = attrs.field(init=False, eq=False)

    @ring.default
    def _ring(self) -> Ring:
        return Ring(self.members, self.hash_key)

    @fingerprint.default
    def _fingerprint(self) -> str:
        return fingerprint(self.members, self.hash_key)

    def owner(self, repository: str) -> str:
        return self.ring.owner(repository)


@attrs.frozen
class PeerView:
    """What a member said its view is (its members, when they hash to the fingerprint it gave)."""

    fingerprint: str
    members: tuple[str, ...] | None


def is_write(method: bytes) -> bool:
    return method not in _READ_METHODS


def local_scope(request: Any) -> bool:
    """Whether a read asks for this member's own copy (:data:`SCOPE_HEADER`)."""
    if is_write(request.method):
        return False
    return request.requestHeaders.getRawHeaders(SCOPE_HEADER, [b""])[0].strip().lower() == b"local"


@attrs.define(eq=False)
class Membership:
    """This replica's current view and its place in it, plus what the other members last said.

    :ivar previous: the view before the last change (rule 2 holds against it until the members
        have been asked; the rebalancer of per-instance storage reads who owned what from it).
    :ivar peers: member -> its view, from the last round of questions (unreachable ones absent).
    :ivar settled: this replica has seen every reachable member agree since its view last changed
        (or since it started): it holds nothing back.
    :ivar asked: at least one round of questions finished since the view last changed.
    """

    view: View
    identity: Identity
    previous: View | None = None
    peers: dict[str, PeerView] = attrs.field(factory=dict)
    settled: bool = False
    asked: bool = False
    listeners: list[Callable[["Membership"], Any]] = attrs.field(factory=list)
    unsettled: Callable[[], Any] = lambda: None  # set by the checker: start asking

    @property
    def me(self) -> int:
        return self.identity.index

    @property
    def ring(self) -> Ring:
        return self.view.ring

    def owner_index(self, repository: str) -> int:
        return self.view.ring.owner_index(repository)

    def owns(self, repository: str) -> bool:
        return self.owner_index(repository) == self.identity.index

    def change(self, view: View, identity: Identity) -> None:
        """Adopt a new member list (already checked by :func:`reload_problems`)."""
        if view == self.view:
            return
        self.previous, self.view, self.identity = self.view, view, identity
        self.peers = {}
        self.settled = self.asked = False
        for listener in list(self.listeners):
            listener(self)
        self.unsettled()

    def to_ask(self) -> list[str]:
        """The other members of the current list and, until settled, of the previous one."""
        members = list(self.view.members)
        if self.previous is not None and not self.settled:
            members += [member for member in self.previous.members if member not in members]
        return [member for member in members if member != self.identity.member]

    def answered(self, peers: dict[str, PeerView]) -> None:
        """One round of questions came back: who said what (the unreachable are left out)."""
        self.peers = peers
        self.asked = True
        self.settled = all(peer.fingerprint == self.view.fingerprint for peer in peers.values())
        if self.previous is None:
            # A replica that started with the new list learns the list the others still hold: the
            # previous owners of the repositories it takes over (per-instance storage copies them).
            older = [peer.members for peer in peers.values() if peer.fingerprint != self.view.fingerprint]
            if older and older[0] is not None:
                self.previous = View(older[0], self.view.hash_key)

    def write_holder(self, repository: str) -> tuple[str, str] | None:
        """A member that may still write ``repository`` (which this replica owns) by an older list,
        and that list's fingerprint: this replica must not write it now. None when it may.

        Before the members have been asked, the previous list's owner is presumed to hold it; after,
        any reachable member whose view differs and that owns the repository by that view does.
        """
        if self.settled:
            return None
        me = self.identity.member
        if not self.asked:
            if self.previous is not None and self.previous.owner(repository) != me:
                return self.previous.owner(repository), self.previous.fingerprint
            return None
        for member, peer in sorted(self.peers.items()):
            if peer.fingerprint == self.view.fingerprint:
                continue
            if peer.members is None or Ring(peer.members, self.view.hash_key).owner(repository) == member:
                return member, peer.fingerprint  # (members None: it hashes with another key, so anything)
        return None

    def status(self) -> dict[str, Any]:
        """What ``GET /_zotpy/cluster`` answers."""
        return {
            "member": self.identity.member,
            "index": self.identity.index,
            "fingerprint": self.view.fingerprint,
            "members": list(self.view.members),
            "settled": self.settled,
            "previous": None if self.previous is None else {
                "fingerprint": self.previous.fingerprint, "members": list(self.previous.members),
            },
            "peers": {member: peer.fingerprint for member, peer in sorted(self.peers.items())},
        }


def peer_view(document: Any, hash_key: bytes) -> PeerView:
    """A status document from a peer -> its view; ValueError when it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("fingerprint"), str):
        raise ValueError("not a cluster status document")
    members = document.get("members")
    if not isinstance(members, list) or not all(isinstance(member, str) for member in members):
        raise ValueError("its members are not a list of strings")
    same_key = fingerprint(members, hash_key) == document["fingerprint"]
    return PeerView(document["fingerprint"], tuple(members) if same_key else None)


def reload_problems(
    membership: Membership, members: tuple[str, ...] | None, hash_key: bytes | None, address: str, port: int,
    identify_: Callable[..., Identity] = identify,
) -> tuple[list[tuple[str, str]], View | None, Identity | None]:
    """Whether a reloaded ``cluster`` section can be applied while serving: its problems by key path,
    else the new view and which member this replica is in it."""
    if members is None or hash_key is None:
        return [("cluster", "removing the cluster section needs a restart of every replica")], None, None
    problems: list[tuple[str, str]] = []
    if len(members) < 2:
        problems.append(("cluster.members", "a running cluster keeps 2 or more members; going to 1 needs a restart"))
    if hash_key != membership.view.hash_key:
        problems.append((
            "cluster.hashKey",
            "changing it moves every repository at once: restart every replica together to change it",
        ))
    seen: dict[str, int] = {}
    for index, member in enumerate(members):
        if member in seen:
            problems.append((f"cluster.members[{index}]", f"{member!r} is already cluster.members[{seen[member]}]"))
        seen.setdefault(member, index)
    identity = None
    if not problems:
        try:
            identity = identify_(members, address, port)
        except IdentityError as error:
            problems.append(("cluster.members", f"this replica is not in the new list: {error}"))
        else:
            if identity.member != membership.identity.member:
                problems.append((
                    "cluster.members",
                    f"this replica is {membership.identity.member!r}, and the new list makes it {identity.member!r}",
                ))
    if problems:
        return problems, None, None
    return [], View(tuple(members), hash_key), identity
