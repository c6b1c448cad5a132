"""Shared fixtures: a real zotpy HTTP listener on loopback, and an HTTP client that leaves nothing behind."""

from __future__ import annotations

import tempfile
import unittest

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import IResource
from treq.client import HTTPClient

from zotpy.api.site import ConnectionTrackingFactory, registry_resource, registry_site
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver


def local_store(root: str) -> ImageStore:
    return ImageStore(LocalDriver(root, reactor, reactor.getThreadPool()))


async def serve(testcase: unittest.TestCase, resource: IResource) -> str:
    """Serve ``resource`` on 127.0.0.1:<ephemeral> until the test ends; return the base URL."""
    factory = ConnectionTrackingFactory(registry_site(resource))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    async def stop() -> None:
        await port.stopListening()
        await factory.close_connections()

    testcase.addCleanup(lambda: Deferred.fromCoroutine(stop()))
    return f"http://127.0.0.1:{port.getHost().port}"


async def start_local_registry(testcase: unittest.TestCase, root: str | None = None) -> str:
    """Start zotpy's HTTP site with local storage (a temp dir unless ``root``); return its base URL."""
    if root is None:
        root = tempfile.mkdtemp(prefix="zotpy-test-")
    return await serve(testcase, registry_resource(local_store(root)))


def http_client(testcase: unittest.TestCase) -> HTTPClient:
    """A treq client whose connections are closed when the test ends."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    testcase.addCleanup(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool))

