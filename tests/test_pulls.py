"""Pull reports (:mod:`zotpy.cluster.pulls`): a member's pulls of other members' repositories reach
the owner's counts in one request per owner and round, and the owner takes reports from members only."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest
from twisted.web.resource import Resource

from tests.driversuite import async_test
from tests.support import http_client, serve
from tests.test_cluster_proxy import _Raw
from zotpy.cluster.pulls import PATH, PullReportReceiver, PullReports
from zotpy.oci.digest import parse_digest

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


class Everything(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"the registry"


class Owner:
    """An owner's counts, as the metadata keeper keeps them (only for what it owns)."""

    def __init__(self, owns: str = "") -> None:
        self.owns = owns
        self.counted: list[tuple[str, str, int, float]] = []

    def count(self, repo: str, digest: str, count: int, when: float) -> bool:
        if not repo.startswith(self.owns):
            return False
        self.counted.append((repo, digest, count, when))
        return True


async def post(base: str, body: bytes, method: str = "POST", source: str = "127.0.0.1") -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    request = (
        f"{method} {PATH.decode()} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    protocol = _Raw(request)
    await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port), bindAddress=(source, 0)), protocol)
    received = await protocol.done
    head, _, rest = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


class ReceiverTests(unittest.TestCase):
    @async_test
    async def setUp(self) -> None:
        self.owner = Owner()
        self.base = await serve(self, PullReportReceiver(Everything(), ["127.0.0.1:1", "127.0.0.2:1"], self.owner.count))

    @async_test
    async def test_members_report(self) -> None:
        report = {"pulls": [{"repository": "a/b", "digest": A, "count": 3, "at": 100.5}]}
        status, _ = await post(self.base, json.dumps(report).encode())
        self.assertEqual(status, 204)
        self.assertEqual(self.owner.counted, [("a/b", A, 3, 100.5)])

    @async_test
    async def test_others_are_refused(self) -> None:
        report = json.dumps({"pulls": [{"repository": "a/b", "digest": A, "count": 3, "at": 1}]}).encode()
        status, body = await post(self.base, report, source="127.0.0.9")
        self.assertEqual((status, json.loads(body)["errors"][0]["code"]), (403, "DENIED"))
        self.assertEqual(self.owner.counted, [])

    @async_test
    async def test_bad_reports_are_refused_whole(self) -> None:
        good = {"repository": "a/b", "digest": A, "count": 1, "at": 1}
        for bad in [b"nonsense", b"[]", b'{"pulls": 3}',
                    json.dumps({"pulls": [good, {**good, "count": 0}]}).encode(),
                    json.dumps({"pulls": [good, {**good, "count": True}]}).encode(),
                    json.dumps({"pulls": [good, {**good, "repository": "Bad Name"}]}).encode(),
                    json.dumps({"pulls": [good, {**good, "digest": "sha256:x"}]}).encode(),
                    json.dumps({"pulls": [good, {**good, "at": "now"}]}).encode(),
                    # a time that is no time: it would win every max() and be written as
                    # Infinity/NaN, which is not JSON, into the repository's metadata
                    json.dumps({"pulls": [good, {**good, "at": float("inf")}]}).encode(),
                    json.dumps({"pulls": [good, {**good, "at": float("nan")}]}).encode(),
                    json.dumps({"pulls": [good, {**good, "count": 10**30}]}).encode(),
                    json.dumps({"pulls": [{"repository": "a/b"}]}).encode()]:
            status, body = await post(self.base, bad)
            self.assertEqual((status, json.loads(body)["errors"][0]["code"]), (400, "UNSUPPORTED"), bad)
        status, _ = await post(self.base, b"", method="GET")
        self.assertEqual(status, 405)
        self.assertEqual(self.owner.counted, [])

    @async_test
    async def test_everything_else_passes(self) -> None:
        response = await http_client(self).get(self.base + "/v2/")
        self.assertEqual(await response.content(), b"the registry")


class ReportsTests(unittest.TestCase):
    @async_test
    async def test_one_request_per_owner_and_nothing_lost_when_one_fails(self) -> None:
        owner = Owner()
        base = await serve(self, PullReportReceiver(Everything(), ["127.0.0.1:1"], owner.count))
        here = Owner()
        members = {"x": base.removeprefix("http://"), "y": "127.0.0.1:1", "z": None}
        reports = PullReports(http_client(self), "http", lambda repo: members[repo[0]], here.count,
                              clock=lambda: 50.0)
        for repo, digest in [("x/a", A), ("x/a", A), ("x/b", B), ("y/a", A), ("z/a", A)]:
            reports.pulled(repo, parse_digest(digest))
        await reports.flush()
        self.assertEqual(sorted(owner.counted), [("x/a", A, 2, 50.0), ("x/b", B, 1, 50.0)])
        self.assertEqual(here.counted, [("z/a", A, 1, 50.0)])  # owned here now: counted here
        self.assertEqual(reports.pending(), 1)  # y's owner did not answer: kept for the next round
        self.flushLoggedErrors()

    def test_pending_is_bounded(self) -> None:
        reports = PullReports(None, "http", lambda repo: "m:1", Owner().count, max_pending=2)
        for name in ("a", "b", "c", "a"):
            reports.pulled(name, parse_digest(A))
        self.assertEqual(reports.pending(), 2)
