"""Asks the other members for their view until they all agree with this replica's.

Runs at start and after every change of ``cluster.members``: every ``interval`` seconds it asks each
member of the current list (and, until they agree, of the previous one) for ``GET /_zotpy/cluster``,
with a short timeout, in parallel, and hands the answers to :class:`Membership` (which then holds
back writes another view still owns, see :mod:`zotpy.cluster.membership`). Once every reachable
member reports this replica's view it stops: a settled cluster costs no requests at all.
"""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from zotpy.cluster.membership import STATUS_PATH, Membership, PeerView, peer_view

log = Logger()

INTERVAL_SECONDS = 0.5
TIMEOUT_SECONDS = 1.0


class AgreementChecker(Service):
    """Keeps :attr:`Membership.peers` current while the members disagree."""

    def __init__(
        self, membership: Membership, client: HTTPClient, clock: Any, scheme: str = "http",
        interval: float = INTERVAL_SECONDS, timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.membership = membership
        self.client = client
        self.clock = clock
        self.scheme = scheme
        self.interval = interval
        self.timeout = timeout
        self._loop: LoopingCall | None = None
        self._reported: tuple[Any, ...] | None = None
        membership.unsettled = self.kick

    def startService(self) -> None:
        super().startService()
        self.kick()

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def kick(self) -> None:
        """Start asking (again), unless already asking or stopped."""
        if not self.running or (self._loop is not None and self._loop.running):
            return
        self._loop = LoopingCall(lambda: ensureDeferred(self.round()))
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda failure: log.failure("asking the cluster members for their view failed", failure)
        )

    async def round(self) -> None:
        """Ask every member once; stop the loop when they agree."""
        membership = self.membership
        asked_for = membership.view
        members = membership.to_ask()
        results = await DeferredList([ensureDeferred(self._ask(member)) for member in members], consumeErrors=True)
        if membership.view != asked_for:
            return  # the view changed meanwhile: the next round asks again
        peers: dict[str, PeerView] = {}
        for member, (ok, result) in zip(members, results):
            if ok and result is not None:
                peers[member] = result
        membership.answered(peers)
        self._log(peers)
        if membership.settled and self._loop is not None and self._loop.running:
            self._loop.stop()

    async def _ask(self, member: str) -> PeerView | None:
        url = f"{self.scheme}://{member}".encode("ascii") + STATUS_PATH
        try:
            response = await self.client.get(url, timeout=self.timeout)
            body = await response.content()
            if response.code != 200:
                return None
            return peer_view(json.loads(body), self.membership.view.hash_key)
        except Exception:
            return None  # not reachable, not a zotpy: it serves nothing that could clash

    def _log(self, peers: dict[str, PeerView]) -> None:
        """One line when what the members say changes (not one per round)."""
        mine = self.membership.view.fingerprint
        disagreeing = {member: peer.fingerprint for member, peer in peers.items() if peer.fingerprint != mine}
        state = (mine, tuple(sorted(disagreeing.items())), tuple(sorted(peers)))
        if state == self._reported:
            return
        self._reported = state
        if self.membership.settled:
            log.info(
                "cluster view {view} settled: every member that answers ({count}) holds it",
                view=mine, count=len(peers), clusterView=mine,
            )
        else:
            log.warn(
                "cluster view {view}: members still on another view: {disagreeing}; their repositories "
                "wait (503, Retry-After) until they reload",
                view=mine, disagreeing=disagreeing, clusterView=mine,
            )
