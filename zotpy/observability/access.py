"""One access-log line and the HTTP metrics for every finished request.

Replaces twisted.web's combined log line. The line's fields follow zot's access log where zot has
one (``clientIP``, ``method``, ``path``, ``statusCode``, ``bodySize``, ``latency``), with
``latency`` in seconds (a number, not Go's duration text), plus ``userAgent`` and, in a cluster,
``forwarded`` / ``forwardedTo`` (the owner the request was relayed to) and ``clusterHop`` (this
request arrived forwarded by another member), and ``username``, zot's field, when the access layer
admitted the request as a named user (:mod:`zotpy.auth`: the user whose credentials were verified,
never a name merely claimed by a refused header). Request headers are not logged, so neither is
``Authorization``; query parameters whose names look like secrets have their values replaced.
Probes and metric scrapes are logged at debug, everything else at info.

Metrics per request (see :mod:`zotpy.observability.metrics`): ``zot_http_requests_total`` and
``zot_http_method_latency_seconds`` count every reply this replica sent. The per-repository ones
(latency, downloads, uploads) are recorded only by the replica that served the request from its
own storage, never by one that relayed it, so that summing them over a cluster counts each
request once, as zot does (its handlers run on the owner only).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Collection
from urllib.parse import parse_qsl, quote

from twisted.logger import Logger, LogLevel
from twisted.web.server import Request

from zotpy.api.routes import MANIFEST, match_request
from zotpy.cluster.proxy import HOP_HEADER
from zotpy.observability.metrics import NO_REPOSITORY, Metrics

log = Logger(namespace="zotpy.http")

_SECRET_NAME = re.compile(r"token|passw|secret|signature|credential|auth|key|sig", re.IGNORECASE)
REDACTED = "REDACTED"


def redact_uri(uri: bytes) -> str:
    """The request's path and query, values of secret-looking query parameters replaced."""
    text = uri.decode("utf-8", "replace")
    path, mark, query = text.partition("?")
    if not mark:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    shown = "&".join(
        f"{quote(name, safe='')}={REDACTED if _SECRET_NAME.search(name) else quote(value, safe=':/@')}"
        for name, value in pairs
    )
    return f"{path}?{shown}"


class AccessLog:
    """Called by the Site for every finished request (``registry_site(..., access_log=...)``)."""

    def __init__(
        self,
        metrics: Metrics,
        quiet_paths: Collection[bytes] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.quiet_paths = frozenset(quiet_paths)
        self.clock = clock
        #: Each (method, status)'s request counter and method latency: prometheus_client's
        #: ``labels()`` takes a lock and builds the key every time, on every request otherwise.
        self._by_method: dict[tuple[str, int], tuple[Any, Any]] = {}

    def __call__(self, request: Request) -> None:
        received = getattr(request, "received_at", None)
        latency = self.clock() - received if received is not None else 0.0
        method = request.method.decode("ascii", "replace")
        status = request.code
        forwarded_to: str | None = getattr(request, "forwarded_to", None)
        self._count(request, method, status, latency, forwarded_to)
        fields = {
            "clientIP": _client(request),
            "method": method,
            "path": redact_uri(request.uri),
            "statusCode": status,
            "bodySize": request.sentLength,
            "latency": round(latency, 6),
            "userAgent": (request.getHeader("user-agent") or ""),
            "forwarded": forwarded_to is not None,
        }
        if forwarded_to is not None:
            fields["forwardedTo"] = forwarded_to
            failure = getattr(request, "forward_failure", None)
            if failure:
                fields["forwardFailure"] = failure
        if request.requestHeaders.hasHeader(HOP_HEADER):
            fields["clusterHop"] = True
        user = getattr(request, "zotpy_user", None)
        if user:
            fields["username"] = user
        level = LogLevel.debug if request.path in self.quiet_paths else LogLevel.info
        log.emit(level, "HTTP API", **fields)

    def _count(self, request: Request, method: str, status: int, latency: float, forwarded_to: str | None) -> None:
        metrics = self.metrics
        series = self._by_method.get((method, status))
        if series is None:
            series = (metrics.http_requests.labels(method, str(status)), metrics.http_method_latency.labels(method))
            if len(self._by_method) < 1024:  # methods are as the client sent them: bounded all the same
                self._by_method[(method, status)] = series
        series[0].inc()
        series[1].observe(latency)
        if forwarded_to is not None:
            return  # the owner records the repository's metrics
        route = match_request(request)
        repository = route.repository if route is not None and route.forwarded else None
        if route is None or repository is None or not 200 <= status < 400:
            metrics.http_repo_latency.labels(NO_REPOSITORY).observe(latency)
            return
        metrics.http_repo_latency.labels(repository).observe(latency)
        if route.route is MANIFEST:
            if request.method == b"GET" and status == 200:
                metrics.repo_downloads.labels(repository).inc()
            elif request.method == b"PUT" and status == 201:
                metrics.repo_uploads.labels(repository).inc()


def _client(request: Request) -> str:
    address = request.getClientAddress()
    return getattr(address, "host", None) or str(address)
