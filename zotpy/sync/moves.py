"""Per-instance storage after a resize: a member copies the repositories it took over.

With a local root per replica, a repository whose owner changed stays on the previous owner's disk.
The new owner gets it through the sync machinery (:class:`~zotpy.sync.mirror.Mirror`: streamed,
digest-verified, a manifest stored only once everything it needs is here), with the previous owner
as the upstream over the peer connections (``cluster.tls``). Requests carry ``X-Zotpy-Scope: local``:
the peer answers from its own storage instead of forwarding back to the new owner.

- **On demand** (:meth:`Mover.arrive`, called by ``ClusterResource`` before it serves a repository
  it owns): the first request for a repository whose previous owner (by the previous member list)
  is another member waits for the copy; concurrent requests share it (coalesced). The client's
  ``Authorization`` goes along, so the previous owner applies the same policy.
- **In the background** (:class:`Rebalancer`): once the members agree, every other member's own
  catalog (``X-Zotpy-Catalog-Scope: local``) is read, and the names this member now owns are
  copied one by one, a few per second.

**Tags during a move.** Writes to a repository wait (503) while its previous owner may still write it
(:mod:`zotpy.cluster.membership`); then the copy runs before the first write is served. A copy made
before the members agreed is refreshed once they do. A tag this member already holds is kept
unless it is one the copy itself wrote earlier (so a push here is never overwritten by the copy,
and a tag the previous owner moved before it reloaded is followed). The previous owner keeps its
copy unless ``cluster.rebalance.dropMoved`` lets its garbage collection drop it once this member
holds every tag (:mod:`zotpy.lifecycle.moved`).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import attrs
from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from zotpy.cluster.catalog import FOR_MEMBER_HEADER
from zotpy.cluster.membership import SCOPE_HEADER, Membership
from zotpy.oci.digest import Digest
from zotpy.storage.imagestore import ImageStore
from zotpy.sync.client import UpstreamClient, UpstreamError, UpstreamNotFound
from zotpy.sync.coalesce import Coalescer
from zotpy.sync.mirror import Mirror, local_manifest_digest
from zotpy.sync.settings import RegistrySettings

log = Logger()

CATALOG_SCOPE_HEADER = "X-Zotpy-Catalog-Scope"  # zotpy.cluster.catalog's: a member's own repositories
TICK_SECONDS = 0.2
MAX_ATTEMPTS = 3


@attrs.define(eq=False)
class Mover:
    """Copies a repository from the member that held it into this member's store."""

    membership: Membership
    store: ImageStore
    http: HTTPClient
    clock: Any
    scheme: str = "http"
    #: told ``(member, outcome, bytes)`` per repository copied ("copied") or not ("failed")
    report: Callable[[str, str, int], None] = lambda member, outcome, size: None
    #: repositories fully copied since the member list last changed
    done: set[str] = attrs.field(factory=set)
    #: (repository, tag) -> the digest the copy stored under that tag
    _copied: dict[tuple[str, str], Digest] = attrs.field(factory=dict)
    _running: Coalescer[None] = attrs.field(factory=Coalescer)
    _for_view: str = ""

    def __attrs_post_init__(self) -> None:
        self._for_view = self.membership.view.fingerprint

    def _reset_if_changed(self) -> None:
        if self._for_view != self.membership.view.fingerprint:
            self._for_view = self.membership.view.fingerprint
            self.done = set()

    def previous_owner(self, repository: str) -> str | None:
        """The member that held ``repository`` before this one owned it, if it is still to be copied."""
        self._reset_if_changed()
        previous = self.membership.previous
        if previous is None or repository in self.done or not self.membership.owns(repository):
            return None
        holder = previous.owner(repository)
        return None if holder == self.membership.identity.member else holder

    def arrive(self, repository: str, request: IRequest) -> Deferred[None] | None:
        """For ``ClusterResource``: a Deferred to wait for before serving ``repository`` here, or
        None to serve it at once."""
        source = self.previous_owner(repository)
        if source is None:
            return None
        authorization = request.getHeader("authorization")
        return ensureDeferred(self.ensure(repository, source, authorization))

    async def ensure(self, repository: str, source: str, authorization: str | None = None) -> None:
        """Copy ``repository`` from ``source``; once the members agree, until it is complete."""
        while True:
            final = self.membership.settled
            try:
                await self._running.run(repository, lambda: self.move(repository, source, final, authorization))
            except Exception as error:
                log.warn("rebalance: copying {repository} from {source} failed: {error}",
                         repository=repository, source=source, error=str(error)[:300])
                return
            if not final or repository in self.done or not self.membership.settled:
                return

    async def move(
        self, repository: str, source: str, final: bool, authorization: str | None = None, why: str = "on demand"
    ) -> None:
        """One copy of every tag of ``repository`` held by ``source`` (see the module docstring)."""
        self._reset_if_changed()
        if repository in self.done:
            return
        headers = {SCOPE_HEADER.decode(): "local"}
        if authorization:
            headers["Authorization"] = authorization
        client = UpstreamClient(
            RegistrySettings(urls=(f"{self.scheme}://{source}",), max_retries=1, retry_delay=0.5),
            self.http, self.clock, user_agent="zotpy-rebalance", headers=headers,
        )
        mirror = Mirror(client, self.store)
        try:
            tags = await client.tags(repository)
        except UpstreamNotFound:
            tags = []
        except UpstreamError as error:
            self.report(source, "failed", 0)
            raise error
        try:
            for tag in tags:
                await self._tag(client, mirror, repository, tag)
        except Exception:
            self.report(source, "failed", mirror.bytes_copied)
            raise
        if final:
            self.done.add(repository)
        if tags:
            self.report(source, "copied", mirror.bytes_copied)
            log.info(
                "rebalance: {repository} copied from {source} {why} ({tags} tags, {manifests} manifests and "
                "{blobs} blobs, {size} bytes moved){more}",
                repository=repository, source=source, why=why, tags=len(tags), manifests=mirror.manifests_copied,
                blobs=mirror.blobs_copied, size=mirror.bytes_copied,
                more="" if final else "; copied again once the members agree",
            )

    async def _tag(self, client: UpstreamClient, mirror: Mirror, repository: str, tag: str) -> None:
        here = await local_manifest_digest(self.store, repository, tag)
        if here is not None and self._copied.get((repository, tag)) != here:
            return  # pushed here: this member's write wins
        there = await client.manifest_digest(repository, tag)
        if here is not None and there == here:
            return
        self._copied[(repository, tag)] = await mirror.image(repository, repository, tag)


class Rebalancer(Service):
    """Copies, in the background and a few per second, every repository this member took over.

    Runs once the members agree after a change of the member list (the previous owners no longer
    write what they gave up): reads each other member's own catalog, then copies the names this
    member owns that another member holds. Failed copies are tried again, ``MAX_ATTEMPTS`` times.
    """

    def __init__(self, mover: Mover, pending_gauge: Any = None, tick: float = TICK_SECONDS) -> None:
        self.mover = mover
        self.pending_gauge = pending_gauge
        self.tick = tick
        self.pending: list[tuple[str, str, int]] = []  # (repository, holder, attempt)
        self._walked: str | None = None  # the view whose catalogs were read
        self._loop: LoopingCall | None = None
        self._busy = False
        self.copied = 0
        self.failed = 0

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._step)
        self._loop.clock = self.mover.clock
        self._loop.start(self.tick, now=False).addErrback(lambda failure: log.failure("rebalance stopped", failure))

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _step(self) -> None:
        if self._busy:
            return
        self._busy = True
        ensureDeferred(self.step()).addErrback(
            lambda failure: log.failure("rebalance step failed", failure)
        ).addBoth(lambda _: setattr(self, "_busy", False))

    async def step(self) -> None:
        """One tick: read the catalogs after a change, else copy the next repository."""
        membership = self.mover.membership
        if membership.previous is None or not membership.settled:
            return
        if self._walked != membership.view.fingerprint:
            self._walked = membership.view.fingerprint
            self.pending = await self.walk()
            self.copied = self.failed = 0
            if self.pending:
                log.info("rebalance: {count} repositories to copy to this member", count=len(self.pending))
        elif self.pending:
            repository, holder, attempt = self.pending.pop(0)
            if repository not in self.mover.done:
                try:
                    await self._copy(repository, holder)
                except Exception as error:
                    if attempt + 1 < MAX_ATTEMPTS:
                        self.pending.append((repository, holder, attempt + 1))
                    else:
                        self.failed += 1
                        log.warn("rebalance: gave up copying {repository} from {holder}: {error}",
                                 repository=repository, holder=holder, error=str(error)[:300])
                else:
                    self.copied += 1
            if not self.pending:
                log.info("rebalance: done, {copied} repositories copied, {failed} failed",
                         copied=self.copied, failed=self.failed)
        if self.pending_gauge is not None:
            self.pending_gauge.set(len(self.pending))

    async def _copy(self, repository: str, holder: str) -> None:
        mover = self.mover
        await mover._running.run(
            repository, lambda: mover.move(repository, holder, mover.membership.settled, why="in the background")
        )

    async def walk(self) -> list[tuple[str, str, int]]:
        """(repository, holder, 0) for each repository another member holds and this one now owns."""
        membership = self.mover.membership
        me = membership.identity.member
        members = list(membership.view.members)
        if membership.previous is not None:
            members += [member for member in membership.previous.members if member not in members]
        found: list[tuple[str, str, int]] = []
        seen: set[str] = set()
        for member in members:
            if member == me:
                continue
            try:
                names = await self._catalog(member)
            except Exception as error:
                log.warn("rebalance: cannot list what {member} holds: {error}", member=member, error=str(error)[:300])
                continue
            for name in names:
                if name not in seen and membership.owns(name) and name not in self.mover.done:
                    seen.add(name)
                    found.append((name, member, 0))
        return found

    async def _catalog(self, member: str) -> list[str]:
        url = f"{self.mover.scheme}://{member}/v2/_catalog"
        headers = {CATALOG_SCOPE_HEADER: ["local"], FOR_MEMBER_HEADER.decode(): ["1"]}
        response = await self.mover.http.get(url, headers=headers, timeout=30)
        body = await response.content()
        if response.code != 200:
            raise UpstreamError(f"its catalog answered {response.code}")
        names = json.loads(body).get("repositories") or []
        return [name for name in names if isinstance(name, str)]
