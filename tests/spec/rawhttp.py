"""One HTTP/1.1 request written whole over a fresh connection, for requests a registry refuses early.

A registry may answer before it has read the request (an oversized manifest gets its 413 from the
headers): Twisted's Agent then hands the test the reply while its body producer is still writing,
and the test would end with the write under way. Here the whole request is written, the write side
shut (FIN), and the reply read until the server closes: the test knows when the exchange is over.
"""

from __future__ import annotations

from typing import Mapping
from urllib.parse import urlsplit

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from tests.integration.daemon import HTTPResult


@implementer(IHalfCloseableProtocol)
class _WholeExchange(Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = bytearray()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)
        self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: object) -> None:
        self.closed.callback(None)


def _parse(raw: bytes) -> HTTPResult:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip(), []).append(value.strip())
    return HTTPResult(code=int(lines[0].split()[1]), headers=headers, body=body)


async def exchange(method: str, url: str, headers: Mapping[str, str], body: bytes) -> HTTPResult:
    """Send ``method url`` with ``body`` (Content-Length declared) and return the server's reply."""
    parts = urlsplit(url)
    lines = [f"{method} {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    protocol = _WholeExchange(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    endpoint = TCP4ClientEndpoint(reactor, parts.hostname, parts.port or 80, timeout=10)
    await connectProtocol(endpoint, protocol)
    await protocol.closed
    if not protocol.received:
        raise AssertionError(f"{method} {url}: the connection closed without a reply")
    return _parse(bytes(protocol.received))
