"""``ClusterResource``: serve the repositories this member owns, forward the others to their owner.

The wrapper sits between the Site and the registry resource. For a request that
carries a repository name (see :mod:`zotpy.cluster.routes`) it hashes the name;
when another member owns it, the request goes there with the same method, path and
raw query, end-to-end headers copied, ``X-Zot-Cluster-Hop-Count: 1`` added, and the
owner's reply (status, headers, body) is relayed unchanged, streaming with
backpressure both ways. Failures become OCI errors a client can act on.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorFDSet, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IRequest, IResponse
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from zotpy.transport import splice
from zotpy.api.responses import reply_error, reply_json
from zotpy.cluster.localreads import LocalReads
from zotpy.cluster.membership import RETRY_AFTER_SECONDS as MEMBERSHIP_RETRY_SECONDS
from zotpy.cluster.membership import (
    SCOPE_HEADER,
    STATUS_PATH,
    VIEW_HEADER,
    Membership,
    is_fingerprint,
    is_write,
    local_scope,
)
from zotpy.cluster.routes import request_repository
from zotpy.oci.errors import RegistryError
from zotpy.storage.driver import IStreamedSource
from zotpy.storage.streamed import StreamedPart
from zotpy.transport.failures import describe_failure
from zotpy.transport.peercerts import from_member, member_host

log = Logger()

HOP_HEADER = b"X-Zot-Cluster-Hop-Count"
#: Pairs of (sender's, this member's) views a disagreement is logged for, once each: a roll has a
#: handful; the headers come from whoever reaches the replica, so forged ones must stay bounded.
MAX_LOGGED_VIEW_PAIRS = 16
# Not forwarded: hop-by-hop headers (RFC 9110 7.6.1), Host (set to the member),
# Content-Length (set from the body), Expect (the body is already here).
_REQUEST_DROPPED = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
        b"upgrade", b"proxy-authenticate", b"proxy-authorization", b"host", b"content-length", b"expect",
    }
)
_RESPONSE_DROPPED = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
        b"upgrade", b"proxy-authenticate", b"proxy-authorization",
    }
)
RETRY_AFTER_SECONDS = 5
IDLE_TIMEOUT_SECONDS = 120.0


def _listed_in_connection(headers: Headers) -> set[bytes]:
    """Headers named in ``Connection`` are hop-by-hop too."""
    names: set[bytes] = set()
    for value in headers.getRawHeaders(b"connection", []):
        names.update(part.strip().lower() for part in value.split(b","))
    return names


def forwarded_headers(incoming: Headers) -> Headers:
    """The end-to-end headers of a request (Authorization included) plus the hop marker."""
    dropped = _REQUEST_DROPPED | _listed_in_connection(incoming)
    outgoing = Headers()
    for name, values in incoming.getAllRawHeaders():
        if name.lower() not in dropped:
            outgoing.setRawHeaders(name, values)
    outgoing.setRawHeaders(HOP_HEADER, [b"1"])
    return outgoing


def relayed_headers(response: Headers, request: IRequest) -> None:
    """Copy the owner's reply headers onto the client's reply, minus hop-by-hop ones."""
    dropped = _RESPONSE_DROPPED | _listed_in_connection(response)
    for name, values in response.getAllRawHeaders():
        if name.lower() not in dropped:
            request.responseHeaders.setRawHeaders(name, values)


@attrs.define(eq=False)
class _IdleTimer:
    """Fires ``expire`` when nothing moved for ``seconds``; every transfer of bytes resets it.

    There is deliberately no limit on a transfer's total time (zot cuts proxied
    transfers at 5 minutes): a slow but moving 10 GiB layer must get through.
    """

    clock: IReactorTime
    seconds: float
    expire: Any
    _call: IDelayedCall | None = None

    def touch(self) -> None:
        if self._call is not None and self._call.active():
            self._call.reset(self.seconds)
        else:
            self._call = self.clock.callLater(self.seconds, self.expire)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


@implementer(IConsumer)
@attrs.define(eq=False)
class _TouchingConsumer:
    """Passes body bytes to the connection and tells the idle timer that they moved."""

    consumer: IConsumer
    timer: _IdleTimer

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.consumer.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.consumer.unregisterProducer()

    def write(self, data: bytes) -> None:
        self.timer.touch()
        self.consumer.write(data)


@implementer(IBodyProducer)
@attrs.define(eq=False)
class _RequestBody:
    """The client's request body, spooled or still arriving, sent on with its exact length (0 stays 0)."""

    source: IBodyProducer
    timer: _IdleTimer

    @property
    def length(self) -> int:
        return self.source.length

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        return self.source.startProducing(_TouchingConsumer(consumer, self.timer))

    def pauseProducing(self) -> None:
        self.source.pauseProducing()

    def resumeProducing(self) -> None:
        self.source.resumeProducing()

    def stopProducing(self) -> None:
        self.source.stopProducing()


@implementer(IPushProducer)
class _ReplyRelay(Protocol):
    """Streams the owner's reply body into the client's request, pausing the owner when the client
    lags; a large body between plain TCP connections goes on in the kernel (:mod:`zotpy.transport.splice`)."""

    def __init__(self, request: IRequest, timer: _IdleTimer, done: Deferred[None]) -> None:
        self.request = request
        self.timer = timer
        self.done = done
        self.received = 0
        self.spliced: splice.Splice | None = None

    def connectionMade(self) -> None:
        self.request.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        if self.spliced is not None:
            return
        self.timer.touch()
        self.received += len(data)
        self.request.write(data)

    def begin_splice(self, spliced: splice.Splice) -> None:
        self.request.unregisterProducer()
        self.spliced = spliced

        def ended(result: Any) -> None:
            self.timer.stop()
            splice.count_sent(self.request, spliced.sent)
            if not self.done.called:
                self.done.errback(result) if isinstance(result, Failure) else self.done.callback(None)

        spliced.start().addBoth(ended)

    def connectionLost(self, reason: Failure = ResponseDone()) -> None:  # type: ignore[assignment]
        if self.spliced is not None:  # the splice closed the owner's connection and reports itself
            return
        self.timer.stop()
        self.request.unregisterProducer()
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        if self.spliced is not None:
            self.spliced.stop("the transfer was stopped")
        else:
            self.transport.stopProducing()


@attrs.define(eq=False)
class Forwarder:
    """Sends one request to a member and relays the member's reply to the client."""

    agent: IAgent
    clock: IReactorTime
    scheme: str = "http"
    idle_timeout: float = IDLE_TIMEOUT_SECONDS

    def forward(self, request: IRequest, member: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._forward(request, member))

    async def _forward(self, request: IRequest, member: str) -> None:
        url = f"{self.scheme}://{member}".encode("ascii") + request.uri
        relay: _ReplyRelay | None = None

        def expire() -> None:
            # Before the reply: give up waiting (the owner counts as unavailable).
            # During the reply: cut the transfer. (``sending.called`` cannot tell the
            # two apart: treq's Deferred is "called" while it waits on the Agent's.)
            if relay is None:
                sending.cancel()
            elif relay.transport is not None:
                relay.stopProducing()

        timer = _IdleTimer(self.clock, self.idle_timeout, expire)
        body = None
        if IStreamedSource.providedBy(request.content):  # forwarded as it arrives
            body = _RequestBody(StreamedPart(request.content, request.content.length, self.clock), timer)
        elif any(request.requestHeaders.hasHeader(name) for name in (b"content-length", b"transfer-encoding")):
            request.content.seek(0)
            body = _RequestBody(FileBodyProducer(request.content), timer)
        timer.touch()
        # The bare Agent: it follows no redirects, keeps no cookies and decodes no gzip.
        sending: Deferred[IResponse] = self.agent.request(
            request.method, url, forwarded_headers(request.requestHeaders), body
        )
        request.notifyFinish().addErrback(lambda _: expire())  # the client left: stop the owner's work
        try:
            response = await sending
        except Exception as error:  # connection refused, TLS refused, idle timeout, reset...
            timer.stop()
            self._unavailable(request, member, error)
            return
        request.setResponseCode(response.code, response.phrase)
        relayed_headers(response.headers, request)
        if response.length is not UNKNOWN_LENGTH and request.method != b"HEAD":
            # Twisted's client keeps Content-Length out of ``headers`` (it is connection
            # control, except on HEAD) and gives it as ``length``: relay it, so a sized
            # reply stays sized rather than turning chunked.
            request.setHeader(b"Content-Length", b"%d" % response.length)
        done: Deferred[None] = Deferred()
        relay = _ReplyRelay(request, timer, done)
        response.deliverBody(relay)
        self._maybe_splice(request, response, relay, timer)
        try:
            await done
        except Exception as error:
            # The reply had started: all we can do is cut the connection so the client sees it short.
            log.warn("relay from {member} broke off: {error}", member=member, error=error)
            if request.channel is not None:
                request.forward_failure = "interrupted"  # read by the metrics and the access log
                request.channel.transport.abortConnection()
            return
        if not request.finished and request.channel is not None:
            request.finish()

    def _maybe_splice(self, request: IRequest, response: IResponse, relay: _ReplyRelay, timer: _IdleTimer) -> None:
        """A large reply to a GET (its request sent whole) between plain TCP connections: the rest of
        it is spliced in the kernel rather than copied through Python."""
        length = response.length
        if request.method != b"GET" or length is UNKNOWN_LENGTH or length < splice.MINIMUM_LENGTH:
            return
        if not IReactorFDSet.providedBy(self.clock):
            return
        source = splice.source_of(response)
        target = splice.target_of(request) if source is not None else None
        if source is None or target is None:
            return

        def remaining() -> int | None:
            gone = relay.done.called or request.finished or request.channel is None  # None: the client left
            return None if gone else length - relay.received

        def moved(count: int) -> None:
            timer.touch()

        splice.hand_over_later(self.clock, source, target, remaining, relay.begin_splice, moved)

    def _unavailable(self, request: IRequest, member: str, error: Exception) -> None:
        if request.finished or request.channel is None:
            return  # the client left; nothing to answer
        request.forward_failure = "unreachable"  # read by the metrics and the access log
        reason = f"no answer within {self.idle_timeout:g} s" if _cancelled(error) else describe_failure(error)
        log.warn("owner {member} unreachable for {method} {path}: {reason}",
                 member=member, method=request.method.decode("ascii", "replace"),
                 path=request.path.decode("ascii", "replace"), reason=reason)
        failure = RegistryError(
            "UNAVAILABLE",
            "the cluster member that owns this repository cannot be reached",
            detail={"member": member, "reason": reason},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
        request.write(reply_error(request, failure))
        request.finish()


def _cancelled(error: Exception) -> bool:
    reasons = getattr(error, "reasons", None) or []
    return isinstance(error, CancelledError) or any(reason.check(CancelledError) for reason in reasons)


@implementer(IResource)
@attrs.define(eq=False)
class ClusterResource:
    """Routes each request to the local registry or to the repository's owner, by the current
    :class:`~zotpy.cluster.membership.Membership` (which a reload may change between two requests)."""

    local: IResource
    membership: Membership
    forwarder: Forwarder
    #: reads answered here on shared storage (:mod:`zotpy.cluster.localreads`); None forwards all
    local_reads: LocalReads | None = None
    #: before this member serves a repository it owns: a Deferred to wait for (per-instance storage:
    #: the copy from its previous owner, :mod:`zotpy.sync.moves`), or None
    arrivals: Callable[[str, IRequest], Deferred[None] | None] | None = None
    isLeaf = True
    _logged: set[tuple[str, str]] = attrs.field(factory=set)

    def _render_local(self, request: IRequest) -> None:
        if request.finished or request.channel is None:
            return  # the client left while the copy ran
        body = self.local.render(request)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def render(self, request: IRequest) -> Any:
        if request.path == STATUS_PATH:
            return self._status(request)
        repository = request_repository(request)
        if repository is None:
            return self.local.render(request)
        if local_scope(request):
            if self._from_member(request):
                return self.local.render(request)
            request.requestHeaders.removeHeader(SCOPE_HEADER)  # routed as any client's request
        membership = self.membership
        owner = membership.owner_index(repository)
        if owner != membership.me and request.requestHeaders.hasHeader(HOP_HEADER):
            return self._disagreement(request, repository, owner)
        if owner == membership.me:
            holder = membership.write_holder(repository) if is_write(request.method) else None
            if holder is not None:
                return self._held(request, repository, *holder)
            waiting = self.arrivals(repository, request) if self.arrivals is not None else None
            if waiting is not None:  # taken over from another member: its copy comes first
                waiting.addBoth(lambda _: self._render_local(request))
                return NOT_DONE_YET
            return self.local.render(request)
        member = membership.view.members[owner]
        if self.local_reads is not None and self.local_reads.take(request, self.forwarder, member):
            return self.local.render(request)
        request.requestHeaders.setRawHeaders(VIEW_HEADER, [membership.view.fingerprint.encode("ascii")])
        self.forwarder.forward(request, member)
        return NOT_DONE_YET

    def _from_member(self, request: IRequest) -> bool:
        """Whether a member (of the current list, or of the one before a resize) sent ``request``:
        only a member copying a repository it took over may ask for another member's own copy."""
        membership = self.membership
        members = (*membership.view.members, *(membership.previous.members if membership.previous else ()))
        return from_member(request, {member_host(member) for member in members})

    def _status(self, request: IRequest) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            return reply_error(request, RegistryError("UNSUPPORTED", "the cluster status is read with GET", status=405))
        return reply_json(request, 200, self.membership.status())

    def _disagreement(self, request: IRequest, repository: str, owner: int) -> bytes:
        """A forwarded request reached a member that does not own it: the senders' list is not this one."""
        membership = self.membership
        theirs = request.requestHeaders.getRawHeaders(VIEW_HEADER, [b""])[0].decode("ascii", "replace").strip()
        if not is_fingerprint(theirs):
            theirs = ""  # not a view any member sends: no text of it reaches the log or the reply
        mine = membership.view.fingerprint
        if (theirs, mine) in self._logged or len(self._logged) >= MAX_LOGGED_VIEW_PAIRS:
            pass  # said already (each reply names both views)
        elif theirs and theirs != mine:  # a roll in progress: expected, logged once per pair of views
            self._logged.add((theirs, mine))
            log.warn(
                "cluster.members differ: forwarded requests routed by cluster view {theirs} arrive here "
                "({me}, view {mine}); answered 503 until the members agree (a resize in progress?)",
                theirs=theirs, me=membership.identity.member, mine=mine,
            )
        else:
            self._logged.add((theirs, mine))
            log.error(
                "forwarded request for {repository} arrived here ({me}) but this member's list says "
                "{owner} owns it: cluster.members differ between replicas",
                repository=repository, me=membership.identity.member, owner=membership.view.members[owner],
            )
        return self._unavailable(
            request,
            "cluster members disagree on who owns this repository (cluster.members differ)",
            {
                "repository": repository, "member": membership.identity.member,
                "owner": membership.view.members[owner], "view": mine, "senderView": theirs or None,
            },
        )

    def _held(self, request: IRequest, repository: str, holder: str, view: str) -> bytes:
        """A write this member will take once ``holder``, still on another list, has given it up."""
        membership = self.membership
        return self._unavailable(
            request,
            "the cluster is changing its member list; the previous owner still holds this repository",
            {
                "repository": repository, "member": membership.identity.member, "view": membership.view.fingerprint,
                "holder": holder, "holderView": view,
            },
        )

    def _unavailable(self, request: IRequest, message: str, detail: dict[str, Any]) -> bytes:
        error = RegistryError(
            "UNAVAILABLE", message, detail=detail, headers={"Retry-After": str(MEMBERSHIP_RETRY_SECONDS)}
        )
        return reply_error(request, error)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("ClusterResource is a leaf")
