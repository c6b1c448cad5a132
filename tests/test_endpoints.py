"""zotpy.transport.endpoints: one endpoint per server, nothing resolved for an IP address."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.trial import unittest
from twisted.web.client import URI, BrowserLikePolicyForHTTPS

from zotpy.transport.endpoints import CachedEndpoints


class CachedEndpointsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.endpoints = CachedEndpoints(reactor, BrowserLikePolicyForHTTPS(), 5.0)

    def inner(self, url: bytes) -> object:
        return self.endpoints.endpointForURI(URI.fromBytes(url)).inner  # type: ignore[attr-defined]

    def test_an_ip_address_needs_no_resolution(self) -> None:
        self.assertIsInstance(self.inner(b"http://127.0.0.1:8333/bucket/key"), TCP4ClientEndpoint)
        self.assertIsInstance(self.inner(b"http://[::1]:8333/bucket/key"), TCP6ClientEndpoint)
        self.assertIsInstance(self.inner(b"http://s3.example.com:8333/bucket/key"), HostnameEndpoint)

    def test_tls_wraps_the_same_kinds(self) -> None:
        wrapped = self.inner(b"https://127.0.0.1:8443/k")
        self.assertNotIsInstance(wrapped, TCP4ClientEndpoint)  # a TLS wrapper around it
        self.assertIsInstance(wrapped._wrappedEndpoint, TCP4ClientEndpoint)  # type: ignore[attr-defined]

    def test_made_once_per_server(self) -> None:
        first = self.endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8333/a"))
        self.assertIs(first, self.endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8333/b")))
        self.assertIsNot(first, self.endpoints.endpointForURI(URI.fromBytes(b"https://127.0.0.1:8333/a")))
