"""zotpy's connection pools connect without twisted's per-connection log lines."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource

from tests.driversuite import async_test
from tests.support import serve
from zotpy.transport.pools import persistent_pool


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello"


class PoolTests(unittest.TestCase):
    @async_test
    async def test_new_connections_are_not_logged(self) -> None:
        base = await serve(self, Hello())
        seen: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            seen.append(str(event.get("log_format") or event.get("format") or event.get("message") or ""))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        pool = persistent_pool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        response = await Agent(reactor, pool=pool).request(b"GET", base.encode() + b"/")
        self.assertEqual(await readBody(response), b"hello")
        await pool.closeCachedConnections()
        self.assertFalse([line for line in seen if "factory" in line.lower()], seen)
