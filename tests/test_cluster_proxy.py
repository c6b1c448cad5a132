"""ClusterResource over real sockets: what is forwarded, how, and what happens when it cannot be."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from twisted.web.client import URI
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.driversuite import async_test
from tests.test_api import recording_sent_length
from tests.support import serve
from zotpy.transport import splice
from zotpy.cluster.identity import Identity
from zotpy.cluster.membership import Membership, PeerView, View
from zotpy.cluster.peers import peer_agent, tls_policy
from zotpy.cluster.proxy import HOP_HEADER, MAX_LOGGED_VIEW_PAIRS, ClusterResource, Forwarder
from zotpy.cluster.ring import Ring
from zotpy.transport.endpoints import CachedEndpoints
from zotpy.storage.driver import IStreamedSource

KEY = b"loremipsumdolors"
BIG = bytes(range(256)) * 32768  # 8 MiB


@attrs.define
class Seen:
    method: bytes
    uri: bytes
    headers: dict[bytes, list[bytes]]
    body: bytes


class Recorder(Resource):
    """A member that records what reaches it and answers by path."""

    isLeaf = True

    def __init__(self, name: bytes) -> None:
        super().__init__()
        self.name = name
        self.seen: list[Seen] = []

    def render(self, request: Any) -> Any:
        if IStreamedSource.providedBy(request.content):  # an upload's body, still arriving
            Deferred.fromCoroutine(self._answer_streamed(request))
            return NOT_DONE_YET
        return self._answer(request, request.content.read())

    async def _answer_streamed(self, request: Any) -> None:
        body = b""
        while data := await request.content.read():
            body += data
        answer = self._answer(request, body)
        if answer is not NOT_DONE_YET:
            request.write(answer)
            request.finish()

    def _answer(self, request: Any, body: bytes) -> Any:
        self.seen.append(Seen(request.method, request.uri, dict(request.requestHeaders.getAllRawHeaders()), body))
        if b"/hang" in request.path:
            return NOT_DONE_YET  # never answers
        request.setHeader(b"X-Member", self.name)
        request.setHeader(b"X-Body-Sha256", hashlib.sha256(body).hexdigest().encode())
        request.setHeader(b"Location", b"/v2/some/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f")
        if request.path.endswith(b"/blobs/sha256:" + b"b" * 64):
            request.setHeader(b"Content-Length", str(len(BIG)).encode())
            return BIG
        if b"/chunked" in request.path:
            request.write(b"part one, ")
            request.write(b"part two")
            request.finish()
            return NOT_DONE_YET
        request.setResponseCode(201 if request.method == b"PUT" else 200)
        return b"from " + self.name


def owned_by(ring: Ring, index: int, prefix: str) -> str:
    """A repository name the ring gives to member ``index``."""
    return next(f"{prefix}{n}" for n in range(1000) if ring.owner_index(f"{prefix}{n}") == index)


class _Raw(Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object) -> None:
        self.done.callback(self.received)


@attrs.frozen
class RawReply:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


async def raw_request(
    base: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"", source: str | None = None
) -> RawReply:
    """Send exactly these bytes (and ``Connection: close``), from address ``source`` when given,
    and parse the reply."""
    host, port = base.removeprefix("http://").split(":")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    protocol = _Raw(data)
    bind = (source, 0) if source is not None else None
    await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port), bindAddress=bind), protocol)
    received = await protocol.done
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed.setdefault(name.strip().lower(), []).append(value.strip())
    if parsed.get("transfer-encoding") == ["chunked"]:
        rest = _dechunk(rest)
    return RawReply(int(status_line.split()[1]), parsed, rest)


def _dechunk(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]


class ForwardingTests(unittest.TestCase):
    @async_test
    async def setUp(self) -> None:
        self.peer = Recorder(b"peer")
        self.local = Recorder(b"local")
        peer_url = await serve(self, self.peer)
        self.peer_member = peer_url.removeprefix("http://")
        self.ring = Ring(("127.0.0.1:1", self.peer_member), KEY)
        self.base = await self.cluster(self.ring, Identity(0, "127.0.0.1:1", "test"))
        self.remote = owned_by(self.ring, 1, "remote")
        self.mine = owned_by(self.ring, 0, "mine")

    async def cluster(self, ring: Ring, identity: Identity, idle_timeout: float = 120.0) -> str:
        agent, pool = peer_agent(reactor, None)
        self.addCleanup(pool.closeCachedConnections)
        forwarder = Forwarder(agent, reactor, "http", idle_timeout=idle_timeout)
        self.membership = Membership(View(ring.members, ring.hash_key), identity, settled=True)
        return await serve(self, ClusterResource(self.local, self.membership, forwarder))

    @async_test
    async def test_request_is_forwarded_with_end_to_end_headers(self) -> None:
        reply = await raw_request(
            self.base,
            "GET",
            f"/v2/{self.remote}/tags/list?n=2&last=a%3Ab",
            [
                ("Authorization", "Basic dXNlcjpwYXNz"),
                ("Accept", "application/json"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Proxy-Authorization", "Basic secret"),
                ("X-Private-Hop", "drop me"),
                ("Connection", "X-Private-Hop"),
            ],
        )
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, b"from peer")
        [seen] = self.peer.seen
        self.assertEqual(self.local.seen, [])
        self.assertEqual((seen.method, seen.uri), (b"GET", f"/v2/{self.remote}/tags/list?n=2&last=a%3Ab".encode()))
        self.assertEqual(seen.headers[b"Authorization"], [b"Basic dXNlcjpwYXNz"])
        self.assertEqual(seen.headers[b"Accept"], [b"application/json"])
        self.assertEqual(seen.headers[HOP_HEADER], [b"1"])
        self.assertEqual(seen.headers[b"Host"], [self.peer_member.encode()])
        for dropped in (b"Keep-Alive", b"Te", b"Proxy-Authorization", b"X-Private-Hop"):
            self.assertNotIn(dropped, seen.headers)
        self.assertNotIn(b"Content-Length", seen.headers)  # a GET without a body stays without one

    @async_test
    async def test_reply_is_relayed_unchanged(self) -> None:
        reply = await raw_request(self.base, "PUT", f"/v2/{self.remote}/manifests/v1", [("Content-Length", "3")], b"abc")
        self.assertEqual(reply.status, 201)
        self.assertEqual(reply.header("X-Member"), "peer")
        self.assertEqual(reply.header("Location"), "/v2/some/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f")
        self.assertEqual(reply.header("X-Body-Sha256"), hashlib.sha256(b"abc").hexdigest())
        self.assertEqual(reply.header("Content-Length"), str(len(b"from peer")))

    @async_test
    async def test_zero_length_body_stays_zero(self) -> None:
        reply = await raw_request(self.base, "POST", f"/v2/{self.remote}/blobs/uploads/", [("Content-Length", "0")])
        self.assertEqual(reply.status, 200)
        [seen] = self.peer.seen
        self.assertEqual(seen.headers[b"Content-Length"], [b"0"])
        self.assertNotIn(b"Transfer-Encoding", seen.headers)
        self.assertEqual(seen.body, b"")

    @async_test
    async def test_a_body_of_undeclared_length_is_forwarded_as_it_arrives(self) -> None:
        chunks = b"".join(b"%x\r\n" % len(BIG[i : i + 65536]) + BIG[i : i + 65536] + b"\r\n" for i in range(0, len(BIG), 65536))
        upload = await raw_request(
            self.base, "PATCH", f"/v2/{self.remote}/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f",
            [("Transfer-Encoding", "chunked")], chunks + b"0\r\n\r\n",
        )
        self.assertEqual(upload.header("X-Body-Sha256"), hashlib.sha256(BIG).hexdigest())
        self.assertEqual(self.peer.seen[0].headers[b"Transfer-Encoding"], [b"chunked"])

    @async_test
    async def test_large_bodies_stream_both_ways(self) -> None:
        upload = await raw_request(
            self.base, "PATCH", f"/v2/{self.remote}/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f",
            [("Content-Length", str(len(BIG)))], BIG,
        )
        self.assertEqual(upload.header("X-Body-Sha256"), hashlib.sha256(BIG).hexdigest())
        self.assertEqual(self.peer.seen[0].headers[b"Content-Length"], [str(len(BIG)).encode()])
        spliced, kept = splice.stats.bodies, splice.stats.sources_kept
        sent: list[tuple[int, int]] = []
        self.patch(Request, "finish", recording_sent_length(Request.finish, sent))
        download = await raw_request(self.base, "GET", f"/v2/{self.remote}/blobs/sha256:{'b' * 64}", [])
        self.assertEqual(download.status, 200)
        self.assertEqual(download.header("Content-Length"), str(len(BIG)))
        self.assertEqual(hashlib.sha256(download.body).digest(), hashlib.sha256(BIG).digest())
        self.assertEqual(splice.stats.bodies - spliced, 1)  # plain TCP both ways: relayed in the kernel
        self.assertEqual(splice.stats.sources_kept - kept, 1)  # the connection to the owner is kept
        forwarding_port = int(self.base.rsplit(":", 1)[1])
        self.assertIn((forwarding_port, len(BIG)), sent)  # the forwarding side's bodySize counts spliced bytes

    @async_test
    async def test_chunked_reply_is_relayed(self) -> None:
        chunked = owned_by(self.ring, 1, "x/chunked")
        reply = await raw_request(self.base, "GET", f"/v2/{chunked}/tags/list", [])
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.header("Transfer-Encoding"), "chunked")
        self.assertEqual(reply.body, b"part one, part two")

    @async_test
    async def test_head_is_relayed_without_body(self) -> None:
        reply = await raw_request(self.base, "HEAD", f"/v2/{self.remote}/blobs/sha256:{'b' * 64}", [])
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.header("Content-Length"), str(len(BIG)))
        self.assertEqual(reply.body, b"")
        self.assertEqual(self.peer.seen[0].method, b"HEAD")

    @async_test
    async def test_owned_and_unforwarded_requests_stay_local(self) -> None:
        for method, path in [
            ("GET", f"/v2/{self.mine}/tags/list"),
            ("GET", "/v2/"),
            ("GET", "/v2/_catalog"),
            ("GET", "/metrics"),
            ("POST", f"/v2/{self.remote}/manifests/v1"),  # not a forwarded method: local 405
            ("GET", "/v2/Invalid_Name/tags/list"),  # not a valid name: local 400
        ]:
            reply = await raw_request(self.base, method, path, [("Content-Length", "0")])
            self.assertEqual(reply.body, b"from local", path)
        self.assertEqual(self.peer.seen, [])

    @async_test
    async def test_an_escaped_slash_is_routed_by_the_decoded_name(self) -> None:
        """``team%2Fapp0`` is served as ``team/app0``: its owner serves it, relayed byte for byte."""
        remote = owned_by(self.ring, 1, "team/app").replace("/", "%2F")
        mine = owned_by(self.ring, 0, "team/app").replace("/", "%2F")
        reply = await raw_request(self.base, "GET", f"/v2/{remote}/tags/list", [])
        self.assertEqual(reply.body, b"from peer")
        self.assertEqual(self.peer.seen[0].uri, f"/v2/{remote}/tags/list".encode())
        reply = await raw_request(self.base, "GET", f"/v2/{mine}/tags/list", [])
        self.assertEqual(reply.body, b"from local")
        self.assertEqual(len(self.peer.seen), 1)

    @async_test
    async def test_hop_header_at_owner_is_served_locally(self) -> None:
        reply = await raw_request(self.base, "GET", f"/v2/{self.mine}/tags/list", [("X-Zot-Cluster-Hop-Count", "1")])
        self.assertEqual(reply.body, b"from local")

    @async_test
    async def test_hop_header_at_non_owner_names_the_disagreement(self) -> None:
        reply = await raw_request(self.base, "GET", f"/v2/{self.remote}/tags/list", [("X-Zot-Cluster-Hop-Count", "1")])
        self.assertEqual(reply.status, 503)  # retryable: zot answers 500, zotpy answered 508 before
        self.assertEqual(reply.header("Retry-After"), "1")
        error = json.loads(reply.body)["errors"][0]
        self.assertEqual(error["code"], "UNAVAILABLE")
        self.assertIn("cluster.members differ", error["message"])
        self.assertEqual(error["detail"]["owner"], self.peer_member)
        self.assertEqual(error["detail"]["view"], self.membership.view.fingerprint)
        self.assertIsNone(error["detail"]["senderView"])
        self.assertEqual(self.peer.seen, [])
        self.flushLoggedErrors()
        # The member keeps serving.
        self.assertEqual((await raw_request(self.base, "GET", "/v2/", [])).body, b"from local")

    @async_test
    async def test_a_request_routed_by_another_view_names_both_views(self) -> None:
        reply = await raw_request(
            self.base, "PUT", f"/v2/{self.remote}/manifests/v1",
            [("X-Zot-Cluster-Hop-Count", "1"), ("X-Zotpy-Cluster-View", "0123456789ab"), ("Content-Length", "0")],
        )
        self.assertEqual(reply.status, 503)
        self.assertEqual(reply.header("Retry-After"), "1")
        detail = json.loads(reply.body)["errors"][0]["detail"]
        self.assertEqual((detail["senderView"], detail["view"]), ("0123456789ab", self.membership.view.fingerprint))
        self.assertEqual(self.peer.seen + self.local.seen, [])

    @async_test
    async def test_forged_views_cannot_grow_memory_or_flood_the_log(self) -> None:
        """The hop and view headers come from anyone who can reach a replica: each new sender view
        is logged once, so distinct forged ones must not each cost a log line and a remembered pair."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for number in range(MAX_LOGGED_VIEW_PAIRS + 20):
            reply = await raw_request(
                self.base, "GET", f"/v2/{self.remote}/tags/list",
                [("X-Zot-Cluster-Hop-Count", "1"), ("X-Zotpy-Cluster-View", f"{number:012x}")],
            )
            self.assertEqual(reply.status, 503)
        for _ in range(3):
            reply = await raw_request(
                self.base, "GET", f"/v2/{self.remote}/tags/list",
                [("X-Zot-Cluster-Hop-Count", "1"), ("X-Zotpy-Cluster-View", "forged line")],
            )
            self.assertIsNone(json.loads(reply.body)["errors"][0]["detail"]["senderView"])
        logged = [event for event in events if "differ" in (event.get("log_format") or "")]
        self.assertLessEqual(len(logged), MAX_LOGGED_VIEW_PAIRS)
        self.assertFalse(any("forged" in formatEvent(event) for event in logged))

    @async_test
    async def test_the_local_scope_is_a_members_request_only(self) -> None:
        """``X-Zotpy-Scope: local`` makes a member answer from its own storage whoever owns the
        repository (a new owner copying from the previous one). From anyone else it is ignored: a
        client must not read a previous owner's stale copy (tags since moved, images since deleted)."""
        scoped = [("X-Zotpy-Scope", "local")]
        reply = await raw_request(self.base, "GET", f"/v2/{self.remote}/tags/list", scoped)
        self.assertEqual(reply.body, b"from local")  # 127.0.0.1: a member's host
        reply = await raw_request(self.base, "GET", f"/v2/{self.remote}/tags/list", scoped, source="127.0.0.2")
        self.assertEqual(reply.body, b"from peer")
        self.assertEqual(self.peer.seen[-1].headers.get(b"X-Zotpy-Scope"), None)

    @async_test
    async def test_forwarded_requests_carry_this_members_view(self) -> None:
        await raw_request(self.base, "GET", f"/v2/{self.remote}/tags/list", [("X-Zotpy-Cluster-View", "forged")])
        [seen] = self.peer.seen
        self.assertEqual(seen.headers[b"X-Zotpy-Cluster-View"], [self.membership.view.fingerprint.encode()])

    @async_test
    async def test_status_reports_the_view(self) -> None:
        reply = await raw_request(self.base, "GET", "/_zotpy/cluster", [])
        self.assertEqual(reply.status, 200)
        status = json.loads(reply.body)
        self.assertEqual(status["fingerprint"], self.membership.view.fingerprint)
        self.assertEqual(status["members"], list(self.ring.members))
        self.assertEqual((status["member"], status["index"], status["settled"]), ("127.0.0.1:1", 0, True))

    @async_test
    async def test_writes_wait_while_the_previous_owner_may_hold_the_repository(self) -> None:
        # This member just took "mine" over from the peer (the previous list had the members the
        # other way round) and has not heard from the peer yet: writes wait, reads are served.
        self.membership.previous = View((self.peer_member, "127.0.0.1:1"), KEY)
        self.membership.settled = False
        moved = next(
            name for name in (f"moved-{n}" for n in range(1000))
            if self.ring.owner_index(name) == 0 and self.membership.previous.owner(name) == self.peer_member
        )
        put = await raw_request(self.base, "PUT", f"/v2/{moved}/manifests/v1", [("Content-Length", "0")])
        self.assertEqual(put.status, 503)
        self.assertEqual(put.header("Retry-After"), "1")
        detail = json.loads(put.body)["errors"][0]["detail"]
        self.assertEqual((detail["holder"], detail["holderView"]), (self.peer_member, self.membership.previous.fingerprint))
        get = await raw_request(self.base, "GET", f"/v2/{moved}/tags/list", [])
        self.assertEqual(get.body, b"from local")
        self.membership.answered({self.peer_member: PeerView(self.membership.view.fingerprint, self.ring.members)})
        put = await raw_request(self.base, "PUT", f"/v2/{moved}/manifests/v1", [("Content-Length", "0")])
        self.assertEqual(put.body, b"from local")


class UnreachableOwnerTests(unittest.TestCase):
    @async_test
    async def test_unreachable_owner_is_a_retryable_oci_error(self) -> None:
        self.local = Recorder(b"local")
        closed = "127.0.0.1:9"  # discard port: nothing listens there
        ring = Ring(("127.0.0.1:1", closed), KEY)
        base = await ForwardingTests.cluster(self, ring, Identity(0, "127.0.0.1:1", "test"))  # type: ignore[arg-type]
        remote = owned_by(ring, 1, "remote")
        reply = await raw_request(base, "GET", f"/v2/{remote}/manifests/latest", [])
        self.assertEqual(reply.status, 503)
        self.assertEqual(reply.header("Retry-After"), "5")
        self.assertEqual(reply.header("Content-Type"), "application/json")
        error = json.loads(reply.body)["errors"][0]
        self.assertEqual(error["code"], "UNAVAILABLE")
        self.assertEqual(error["detail"]["member"], closed)
        self.assertIn("refused", error["detail"]["reason"])
        head = await raw_request(base, "HEAD", f"/v2/{remote}/manifests/latest", [])
        self.assertEqual((head.status, head.body), (503, b""))
        self.assertEqual((await raw_request(base, "GET", "/v2/", [])).body, b"from local")

    @async_test
    async def test_owner_that_stops_answering_hits_the_idle_timeout(self) -> None:
        self.local = Recorder(b"local")
        peer = Recorder(b"peer")
        member = (await serve(self, peer)).removeprefix("http://")
        ring = Ring(("127.0.0.1:1", member), KEY)
        base = await ForwardingTests.cluster(self, ring, Identity(0, "127.0.0.1:1", "test"), idle_timeout=0.3)  # type: ignore[arg-type]
        hanging = owned_by(ring, 1, "a/hang")
        reply = await raw_request(base, "GET", f"/v2/{hanging}/tags/list", [])
        self.assertEqual(reply.status, 503)
        self.assertIn("no answer", json.loads(reply.body)["errors"][0]["detail"]["reason"])


class PeerEndpointTests(unittest.TestCase):
    @async_test
    async def test_one_endpoint_per_peer_and_no_nagle_delay(self) -> None:
        endpoints = CachedEndpoints(reactor, tls_policy(None), 5.0)
        first = endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:5000/v2/a"))
        again = endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:5000/v2/b"))
        other = endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.2:5000/v2/a"))
        self.assertIs(first, again)
        self.assertIsNot(first, other)
        base = await serve(self, Recorder(b"peer"))
        host, port = base.removeprefix("http://").split(":")
        endpoint = endpoints.endpointForURI(URI.fromBytes(f"http://{host}:{port}/".encode()))
        protocol = await endpoint.connect(Factory.forProtocol(Protocol))
        self.addCleanup(protocol.transport.loseConnection)
        self.assertTrue(protocol.transport.getTcpNoDelay())
