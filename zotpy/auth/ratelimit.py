"""zot's ``http.ratelimit``: requests per second per client IP, overall and per method.

A token bucket per (client IP, limit): it holds up to one second's worth of requests and refills
at the configured rate, so a client may burst ``rate`` requests and then goes at ``rate`` per second.
A request over the limit gets 429 ``TOOMANYREQUESTS`` with ``Retry-After`` (whole seconds until a
token is back) before anything else is done for it: no bcrypt, no forwarding, no storage.

The client is the TCP peer. ``X-Forwarded-For`` is not trusted (any client can write it). Requests
a cluster member forwarded (hop header, from a member's address) were counted by the member that
received them and are not counted again by the owner, else every client behind one replica would
share that replica's bucket on the owner.

Buckets are kept for a bounded number of clients (least recently seen dropped first), so a flood
from many addresses cannot grow memory without bound.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Collection

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from zotpy.api.responses import reply_error
from zotpy.auth.settings import RateLimitSettings
from zotpy.cluster.proxy import HOP_HEADER
from zotpy.oci.errors import RegistryError

MAX_CLIENTS = 65536


@attrs.define
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, clock: IReactorTime, capacity: int = MAX_CLIENTS) -> None:
        self.settings = settings
        self.clock = clock
        self.capacity = capacity
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def wait(self, client: str, method: str) -> float:
        """0 when the request may go (its tokens taken), else the seconds until it could."""
        limits = []
        if method in self.settings.methods:
            limits.append((method, self.settings.methods[method]))
        if self.settings.rate is not None:
            limits.append(("", self.settings.rate))
        now = self.clock.seconds()
        buckets = [(self._bucket(client, name, rate, now), rate) for name, rate in limits]
        waits = [(1.0 - bucket.tokens) / rate for bucket, rate in buckets if bucket.tokens < 1.0]
        if waits:
            return max(waits)
        for bucket, _ in buckets:
            bucket.tokens -= 1.0
        return 0.0

    def _bucket(self, client: str, name: str, rate: float, now: float) -> _Bucket:
        key = (client, name)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=max(rate, 1.0), updated=now)
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(max(rate, 1.0), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        return bucket


@implementer(IResource)
class RateLimitResource:
    isLeaf = True

    def __init__(self, wrapped: IResource, limiter: RateLimiter, members: Collection[str] = ()) -> None:
        self.wrapped = wrapped
        self.limiter = limiter
        self.member_hosts = frozenset(member.rpartition(":")[0].strip("[]") for member in members)

    def render(self, request: IRequest) -> Any:
        client = getattr(request.getClientAddress(), "host", "") or "unknown"
        if not (request.requestHeaders.hasHeader(HOP_HEADER) and client in self.member_hosts):
            wait = self.limiter.wait(client, request.method.decode("ascii", "replace").upper())
            if wait > 0:
                return reply_error(
                    request, RegistryError("TOOMANYREQUESTS", headers={"Retry-After": str(max(1, math.ceil(wait)))})
                )
        return self.wrapped.render(request)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("RateLimitResource is a leaf")
