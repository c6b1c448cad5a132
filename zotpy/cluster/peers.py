"""The HTTP client replicas use to reach each other: one persistent pool, TLS verified both ways.

Peers are verified against the system CAs plus ``cluster.tls.cacert`` with
service-identity (members given as IP addresses need IP SANs); a client
certificate from ``cluster.tls.cert``/``key`` is presented when configured (mTLS).
Connections are pooled and reused, unlike zot's one connection per request.
"""

from __future__ import annotations

from typing import Any

import attrs
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from zotpy.config import ClusterTLSConfig
from zotpy.transport.endpoints import CachedEndpoints
from zotpy.transport.pools import persistent_pool

# Below the peers' own idle timeout (zotpy's Site closes idle connections after 300 s),
# so this side never reuses a connection the peer is closing.
POOL_IDLE_SECONDS = 120
MAX_CONNECTIONS_PER_PEER = 32
CONNECT_TIMEOUT_SECONDS = 5.0


def _certificates(path: str) -> list[crypto.X509]:
    with open(path, "rb") as stream:
        data = stream.read()
    end = b"-----END CERTIFICATE-----"
    return [
        ssl.Certificate.loadPEM(block + end).original for block in data.split(end) if b"BEGIN CERTIFICATE" in block
    ]


@implementer(IOpenSSLTrustRoot)
@attrs.frozen
class SystemAndExtraTrust:
    """The platform's CAs plus the cluster's own CA certificates."""

    extra: tuple[crypto.X509, ...] = ()

    def _addCACertsToContext(self, context: Any) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        for certificate in self.extra:
            store.add_cert(certificate)


@implementer(IPolicyForHTTPS)
@attrs.frozen
class PeerTLSPolicy:
    trust: IOpenSSLTrustRoot
    client_certificate: ssl.PrivateCertificate | None = None

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self.trust, clientCertificate=self.client_certificate
        )


def tls_policy(tls: ClusterTLSConfig | None) -> PeerTLSPolicy:
    extra = tuple(_certificates(tls.cacert)) if tls is not None and tls.cacert else ()
    identity = None
    if tls is not None and tls.cert and tls.key:
        with open(tls.cert, "rb") as cert, open(tls.key, "rb") as key:
            identity = ssl.PrivateCertificate.loadPEM(cert.read() + b"\n" + key.read())
    return PeerTLSPolicy(SystemAndExtraTrust(extra), identity)


def peer_agent(reactor: Any, tls: ClusterTLSConfig | None) -> tuple[Agent, HTTPConnectionPool]:
    """The Agent that reaches peers, and its pool (closed on shutdown).

    Forwarding uses this Agent directly: treq's ``HTTPClient`` always wraps its agent
    in a gzip decoder (adding ``Accept-Encoding: gzip`` to every request and an empty
    ``Content-Encoding`` to every reply) and a cookie jar, which a transparent relay
    must not do. Wrap it in ``treq.client.HTTPClient`` for requests of zotpy's own
    (such as the catalog fan-out), where those layers do no harm.
    """
    pool = persistent_pool(reactor)
    pool.maxPersistentPerHost = MAX_CONNECTIONS_PER_PEER
    pool.cachedConnectionTimeout = POOL_IDLE_SECONDS
    pool.retryAutomatically = False  # a forwarded PATCH must never be replayed behind the client's back
    endpoints = CachedEndpoints(reactor, tls_policy(tls), CONNECT_TIMEOUT_SECONDS)
    return Agent.usingEndpointFactory(reactor, endpoints, pool=pool), pool
