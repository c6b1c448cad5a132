"""Pull counts of reads answered away from the owner, reported to the owner in batches.

A manifest pulled through a member that does not own the repository (a local read on shared
storage, :mod:`zotpy.cluster.localreads`) never reaches the owner, which alone keeps the
repository's metadata (download counts, last pull). The member counts such pulls in memory
(:class:`PullReports`, told by the metadata keeper) and every few seconds POSTs each owner its
share, one request per owner whatever the number of pulls: ``{"pulls": [{"repository",
"digest", "count", "at"}]}`` to :data:`PATH`, over the peer client (member TLS certificates).
A report that fails is kept for the next round (bounded: beyond :data:`MAX_PENDING` distinct
manifests new ones are dropped with a warning), so an owner that restarts loses nothing.

The owner's side (:class:`PullReportReceiver`) sits in front of everything else on the site: it
takes only POSTs to :data:`PATH`, only from members (a verified certificate naming one, or on a
connection without a client certificate the address of one, :func:`from_member`), and refuses
anything else there before reading it. What it accepts it adds to its own counts, for the
repositories it owns.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Collection

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from zotpy.api.responses import reply_error
from zotpy.oci.digest import Digest, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.names import validate_name
from zotpy.transport.failures import describe_failure
from zotpy.transport.peercerts import from_member, member_host

log = Logger()

PATH = b"/_zotpy/cluster/pulls"
#: Distinct (repository, manifest) pairs waiting to be reported; more are dropped, with a warning.
MAX_PENDING = 100_000
#: Entries in one report the owner accepts (a sender sends at most this many per request).
MAX_REPORT_ENTRIES = 10_000
#: Bytes of a report the owner reads (10,000 entries of ~250 bytes).
MAX_REPORT_BYTES = 4 * 1024 * 1024
REPORT_TIMEOUT_SECONDS = 10.0
#: The most pulls one entry may report (far beyond what a member answers between two reports).
MAX_COUNT = 2**32

#: Records pulls counted elsewhere: (repository, digest, count, time of the last) -> counted here.
CountPulls = Callable[[str, str, int, float], bool]


@attrs.define(eq=False)
class PullReports:
    """The sending side: pulls answered here for repositories other members own, until reported.

    ``owner_of`` names the member that owns a repository (None: this one, after a membership
    change); ``count_here`` counts them then. ``client`` is a treq client over the peer agent.
    """

    client: Any
    scheme: str
    owner_of: Callable[[str], str | None]
    count_here: CountPulls
    clock: Callable[[], float] = time.time
    max_pending: int = MAX_PENDING
    _pending: dict[tuple[str, str], tuple[int, float]] = attrs.field(factory=dict, init=False)
    _dropped: int = attrs.field(default=0, init=False)

    def pulled(self, repo: str, digest: Digest) -> None:
        self._add(repo, str(digest), 1, self.clock())

    def _add(self, repo: str, digest: str, count: int, when: float) -> None:
        key = (repo, digest)
        before = self._pending.get(key)
        if before is None and len(self._pending) >= self.max_pending:
            self._dropped += count
            return
        total, last = before or (0, 0.0)
        self._pending[key] = (total + count, max(last, when))

    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Report every pending count to its owner (one request each); keep what fails."""
        if self._dropped:
            log.warn("{count} pulls of repositories other members own were not counted: more than "
                     "{limit} manifests waited to be reported", count=self._dropped, limit=self.max_pending)
            self._dropped = 0
        pending, self._pending = self._pending, {}
        by_owner: dict[str, list[tuple[str, str, int, float]]] = {}
        for (repo, digest), (count, when) in pending.items():
            owner = self.owner_of(repo)
            if owner is None:
                self.count_here(repo, digest, count, when)
            else:
                by_owner.setdefault(owner, []).append((repo, digest, count, when))
        reports = []
        for owner, entries in by_owner.items():
            for start in range(0, len(entries), MAX_REPORT_ENTRIES):
                reports.append(Deferred.fromCoroutine(self._report(owner, entries[start : start + MAX_REPORT_ENTRIES])))
        await DeferredList(reports, consumeErrors=True)

    async def _report(self, owner: str, entries: list[tuple[str, str, int, float]]) -> None:
        body = {"pulls": [{"repository": r, "digest": d, "count": c, "at": w} for r, d, c, w in entries]}
        url = f"{self.scheme}://{owner}".encode("ascii") + PATH
        try:
            response = await self.client.post(url, json=body, timeout=REPORT_TIMEOUT_SECONDS)
            await response.content()
            if response.code != 204:
                raise ValueError(f"answered {response.code}")
        except Exception as error:
            log.warn("pull counts not reported to {owner} yet ({count} manifests): {why}", owner=owner,
                     count=len(entries), why=describe_failure(error))
            for repo, digest, count, when in entries:
                self._add(repo, digest, count, when)


class PullReportService(Service):
    """Reports every ``interval`` seconds while running, and once more at stop."""

    def __init__(self, reports: PullReports, interval: float, clock: Any) -> None:
        self.reports = reports
        self.loop = LoopingCall(lambda: Deferred.fromCoroutine(reports.flush()))
        self.loop.clock = clock
        self.interval = interval

    def startService(self) -> None:
        super().startService()
        self.loop.start(self.interval, now=False).addErrback(
            lambda failure: log.failure("pull report loop stopped", failure)
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.loop.running:
            self.loop.stop()
        if not self.reports.pending():
            return None
        return Deferred.fromCoroutine(self.reports.flush())


@implementer(IResource)
class PullReportReceiver:
    """The owner's side, in front of ``wrapped`` (the whole site): counts members' reports."""

    isLeaf = True

    def __init__(self, wrapped: IResource, members: Collection[str], count: CountPulls) -> None:
        self.wrapped = wrapped
        self.member_hosts = frozenset(member_host(member) for member in members)
        self.count = count

    def render(self, request: IRequest) -> Any:
        if request.path != PATH:
            return self.wrapped.render(request)
        if not from_member(request, self.member_hosts):
            return reply_error(request, RegistryError("DENIED", "only cluster members report pulls", status=403))
        if request.method != b"POST":
            return reply_error(request, RegistryError("UNSUPPORTED", "method not allowed here", headers={"Allow": "POST"}))
        try:
            entries = _parse_report(request)
        except ValueError as error:
            return reply_error(request, RegistryError("UNSUPPORTED", f"not a pull report: {error}", status=400))
        for repo, digest, count, when in entries:
            self.count(repo, digest, count, when)
        request.setResponseCode(204)
        return b""

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("PullReportReceiver is a leaf")


def _parse_report(request: IRequest) -> list[tuple[str, str, int, float]]:
    data = request.content.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise ValueError(f"more than {MAX_REPORT_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"not JSON ({error})") from None
    pulls = document.get("pulls") if isinstance(document, dict) else None
    if not isinstance(pulls, list) or len(pulls) > MAX_REPORT_ENTRIES:
        raise ValueError(f'"pulls" must be a list of at most {MAX_REPORT_ENTRIES} entries')
    entries = []
    for entry in pulls:
        try:
            repo, digest = entry["repository"], entry["digest"]
            count, when = entry["count"], entry["at"]
            validate_name(repo)
            parse_digest(digest)
        except (KeyError, TypeError, RegistryError):
            raise ValueError("an entry without a valid repository, digest, count and at") from None
        if type(count) is not int or not 1 <= count <= MAX_COUNT:
            raise ValueError(f"count must be an integer from 1 to {MAX_COUNT}")
        if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when):
            raise ValueError("at must be a time in seconds")  # json reads Infinity and NaN
        entries.append((repo, digest, count, float(when)))
    return entries
