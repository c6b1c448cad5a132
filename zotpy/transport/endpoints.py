"""Client endpoints made once per server, for the Agents zotpy sends its own requests with (to S3,
to peers).

Twisted's Agent makes a ``HostnameEndpoint`` for every request, and a ``HostnameEndpoint`` resolves
its host in the thread pool and defines helper classes on every ``connect``. A connection that is
reused costs that once; but a spliced body (:mod:`zotpy.transport.splice`) closes its connection, so every
large blob GET from S3 connects anew: profiled under load, connecting took ~8% of the reactor
thread. Here each (scheme, host, port) gets one endpoint, made once, and a host given as an IP
address (SeaweedFS, MinIO, cluster members) a plain TCP endpoint: nothing to resolve.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint, ITCPTransport
from twisted.web.client import URI
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer


@implementer(IAgentEndpointFactory)
@attrs.define(eq=False)
class CachedEndpoints:
    """One endpoint per server, whose connections send at once: requests and replies between
    zotpy and its servers are latency-bound, so Nagle's delay is switched off."""

    reactor: Any
    policy: IPolicyForHTTPS
    timeout: float
    _made: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = attrs.field(factory=dict, init=False)

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._made.get(key)
        if endpoint is None:
            endpoint = self._made[key] = _NoDelay(self._make(uri))
        return endpoint

    def _make(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        endpoint: IStreamClientEndpoint
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self.reactor, host, uri.port, timeout=self.timeout)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self.reactor, host, uri.port, timeout=self.timeout)
        else:
            endpoint = HostnameEndpoint(self.reactor, uri.host, uri.port, timeout=self.timeout)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self.policy.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


@implementer(IStreamClientEndpoint)
@attrs.define
class _NoDelay:
    inner: IStreamClientEndpoint

    def connect(self, factory: Any) -> Any:
        def no_delay(protocol: Any) -> Any:
            transport = protocol.transport
            while transport is not None and not ITCPTransport.providedBy(transport):
                transport = getattr(transport, "transport", None)  # under TLS
            if transport is not None:
                transport.setTcpNoDelay(True)
            return protocol

        return self.inner.connect(factory).addCallback(no_delay)
