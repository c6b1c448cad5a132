"""Persistent HTTP connection pools for zotpy's clients (S3, peers, upstream registries).

Twisted logs the start and the stop of every pooled connection's factory at info level. A spliced
blob body closes its S3 or peer connection afterwards (see :mod:`zotpy.transport.splice`), so that would be two
log lines per large blob GET: noise in an operator's log, and work for every connection.
"""

from __future__ import annotations

from typing import Any

from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory


class _QuietConnectionFactory(_HTTP11ClientFactory):
    noisy = False


def persistent_pool(reactor: Any) -> HTTPConnectionPool:
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool._factory = _QuietConnectionFactory
    return pool
