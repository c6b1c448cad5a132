"""Persistent HTTP connection pools for zotpy's clients (S3, peers, upstream registries).

Twisted logs the start and the stop of every pooled connection's factory at info level. A spliced
blob body closes its S3 or peer connection afterwards (see :mod:`zotpy.transport.splice`), so that would be two
log lines per large blob GET: noise in an operator's log, and work for every connection.
"""

from __future__ import annotations

from typing import Any

from twisted.web.client import HTTPConnectionPool

from zotpy.transport.twisted_private import HTTP11ClientFactory, set_pool_factory


class _QuietConnectionFactory(HTTP11ClientFactory):
    noisy = False


def persistent_pool(reactor: Any) -> HTTPConnectionPool:
    pool = HTTPConnectionPool(reactor, persistent=True)
    set_pool_factory(pool, _QuietConnectionFactory)
    return pool
