"""The HTTP client replicas use to reach each other: one persistent pool, TLS verified both ways.

Peers are verified against the system CAs plus ``cluster.tls.cacert`` with
service-identity (members given as IP addresses need IP SANs); a client
certificate from ``cluster.tls.cert``/``key`` is presented when configured (mTLS).
Connections are pooled and reused, unlike zot's one connection per request.
"""

from __future__ import annotations

from typing import Any

from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS

from zotpy.config import ClusterTLSConfig
from zotpy.transport.endpoints import CachedEndpoints
from zotpy.transport.pools import persistent_pool
from zotpy.transport.tls import client_policy

# Below the peers' own idle timeout (zotpy's Site closes idle connections after 300 s),
# so this side never reuses a connection the peer is closing.
POOL_IDLE_SECONDS = 120
MAX_CONNECTIONS_PER_PEER = 32
CONNECT_TIMEOUT_SECONDS = 5.0


def tls_policy(tls: ClusterTLSConfig | None) -> IPolicyForHTTPS:
    """The system's CAs plus ``cluster.tls.cacert``; ``cert``/``key`` presented when both are set."""
    return client_policy(
        extra_ca_paths=[tls.cacert] if tls is not None and tls.cacert else [],
        client_cert=(tls.cert, tls.key) if tls is not None and tls.cert and tls.key else None,
    )


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
