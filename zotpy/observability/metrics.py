"""Prometheus metrics: zot's names where zot has them, zotpy's own beside them, one registry per service.

Every metric lives in the :class:`Metrics` object's own ``CollectorRegistry`` (never
``prometheus_client``'s global one), so a test can build several services in one process and
read each one's counts. The families:

zot's (same names, labels and types as zot's ``pkg/extensions/monitoring``):

- ``zot_up`` (gauge, 1 while serving)
- ``zot_info{commit,binaryType,goVersion,version}`` (gauge, 0 as in zot): ``binaryType`` ``zotpy``,
  ``version`` zotpy's, ``goVersion`` the Python version (``python3.11.7``), ``commit`` empty
- ``zot_http_requests_total{method,code}``: every reply this replica sent, forwarded or not
- ``zot_http_method_latency_seconds{method}`` (histogram, zot's buckets)
- ``zot_http_repo_latency_seconds{repo}`` (summary)
- ``zot_repo_downloads_total{repo}``: manifest GETs answered 200
- ``zot_repo_uploads_total{repo}``: manifest PUTs answered 201

zotpy's:

- ``zot_cluster_forwarded_requests_total{member,outcome}``: requests relayed to their owner;
  ``outcome`` is ``relayed`` (the owner answered; its status is in the access log), ``unreachable``
  (no answer: the client got 503) or ``interrupted`` (the owner's reply broke off mid-body)
- ``zot_cluster_forward_latency_seconds{member}`` (histogram): from forwarding to the end of the relay
- ``zot_cluster_peer_errors_total{member,operation}``: failed calls to a peer (``forward``, ``catalog``)
- ``zot_storage_operation_latency_seconds{operation}`` (histogram) and
  ``zot_storage_errors_total{operation}``: the storage driver's verbs (a missing path is not an error)
- ``zot_sync_repositories_total{registry}``, ``zot_sync_images_total{registry}``,
  ``zot_sync_failures_total{registry}``: the sync extension's work, by upstream registry
- ``zot_reactor_lag_seconds`` (histogram): how late the reactor ran a periodic tick
- ``zot_gc_runs_total{error}``, ``zot_gc_deleted_total{type}``, ``zot_gc_duration_seconds`` (zot's
  GC metrics), ``zot_gc_freed_bytes_total``, ``zot_repo_storage_bytes{repo}`` and ``zot_repo_count``:
  garbage collection of the repositories this replica owns

Repository labels follow zot (one series per repository) and so grow with the number of
repositories; to keep scanners probing random names from creating series, a request only puts its
repository in a label when it was answered successfully (2xx/3xx), otherwise it counts under
``N/A`` as zot's non-repository requests do.
"""

from __future__ import annotations

import platform
import time
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from zotpy import __version__
from zotpy.storage.driver import IStorageDriver, PathNotFound

#: zot's buckets for ``zot_http_method_latency_seconds`` (``GetDefaultBuckets``).
HTTP_BUCKETS = (0.05, 0.5, 1, 5, 30, 60, 600)
#: zot's storage latency buckets (``GetStorageLatencyBuckets``).
STORAGE_BUCKETS = (0.001, 0.01, 0.1, 1, 5, 10, 15, 30, 60)
FORWARD_BUCKETS = (0.005, 0.05, 0.5, 1, 5, 30, 60, 600)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)

#: The ``repo`` label of requests that name no repository (zot's value).
NO_REPOSITORY = "N/A"


class ISyncCounters(Interface):
    """Where sync counts its work (``zot_sync_*`` metrics); labelled by upstream registry."""

    def repository_synced(registry: str) -> None:
        """A repository's sync from ``registry`` completed."""

    def image_synced(registry: str) -> None:
        """An image (manifest) was copied from ``registry``."""

    def failed(registry: str) -> None:
        """A sync attempt (a repository, or an on-demand image) from ``registry`` failed."""


@implementer(ISyncCounters)
class SyncMetrics:
    """The sync extension's counters, labelled by upstream registry (as configured in ``urls``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.repositories = Counter(
            "zot_sync_repositories_total", "Repositories whose sync from an upstream registry completed",
            ["registry"], registry=registry,
        )
        self.images = Counter(
            "zot_sync_images_total", "Images (manifests) copied from an upstream registry",
            ["registry"], registry=registry,
        )
        self.failures = Counter(
            "zot_sync_failures_total", "Sync attempts (a repository, or an on-demand image) that failed",
            ["registry"], registry=registry,
        )

    def repository_synced(self, registry: str) -> None:
        self.repositories.labels(registry).inc()

    def image_synced(self, registry: str) -> None:
        self.images.labels(registry).inc()

    def failed(self, registry: str) -> None:
        self.failures.labels(registry).inc()


class ClusterMetrics:
    """Forwarding to owners and other calls to peers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.forwarded = Counter(
            "zot_cluster_forwarded_requests_total", "Requests forwarded to the member owning their repository",
            ["member", "outcome"], registry=registry,
        )
        self.forward_latency = Histogram(
            "zot_cluster_forward_latency_seconds", "Time from forwarding a request to the end of the relayed reply",
            ["member"], buckets=FORWARD_BUCKETS, registry=registry,
        )
        self.peer_errors = Counter(
            "zot_cluster_peer_errors_total", "Calls to another member that failed (no answer, broken reply)",
            ["member", "operation"], registry=registry,
        )

        self.moves = Counter(
            "zot_cluster_rebalance_repositories_total",
            "Repositories this member took over after a resize, copied from their previous owner, by outcome "
            "(copied, failed)", ["member", "outcome"], registry=registry,
        )
        self.moves_pending = Gauge(
            "zot_cluster_rebalance_pending_repositories",
            "Repositories this member owns since the last resize that the rebalancer has still to copy",
            registry=registry,
        )
        self.moved_bytes = Counter(
            "zot_cluster_rebalance_bytes_total", "Blob bytes copied from a previous owner (member)",
            ["member"], registry=registry,
        )

    def peer_error(self, member: str, operation: str) -> None:
        self.peer_errors.labels(member, operation).inc()

    def moved(self, member: str, outcome: str, size: int = 0) -> None:
        self.moves.labels(member, outcome).inc()
        if size:
            self.moved_bytes.labels(member).inc(size)


class StorageMetrics:
    """The storage driver's verbs: latency and failures."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "zot_storage_operation_latency_seconds", "Latency of storage driver operations",
            ["operation"], buckets=STORAGE_BUCKETS, registry=registry,
        )
        self.errors = Counter(
            "zot_storage_errors_total", "Storage driver operations that failed (a missing path is not a failure)",
            ["operation"], registry=registry,
        )


class GCMetrics:
    """Garbage collection, with zot's names (``zot.gc.runs``, ``zot.gc.deleted``,
    ``zot.gc.duration.seconds`` in zot's Prometheus form), and the owned repositories' sizes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "zot_gc_runs_total", "Repository garbage collections, by whether they failed", ["error"], registry=registry
        )
        self.deleted = Counter(
            "zot_gc_deleted_total", "Objects garbage collection removed, by kind (manifest, blob, upload, temporary)",
            ["type"], registry=registry,
        )
        self.freed = Counter("zot_gc_freed_bytes_total", "Bytes garbage collection removed", registry=registry)
        self.duration = Summary(
            "zot_gc_duration_seconds", "Time one repository's garbage collection took", registry=registry
        )
        self.repo_bytes = Gauge(
            "zot_repo_storage_bytes", "Bytes of blobs stored in a repository this replica owns, after its last GC",
            ["repo"], registry=registry,
        )
        self.repositories = Gauge(
            "zot_repo_count", "Repositories this replica owns, as counted by its last GC pass", registry=registry
        )


class Metrics:
    """Every metric of one registry service, in its own ``CollectorRegistry``."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.up = Gauge("zot_up", "1 while zotpy serves", registry=registry)
        self.up.set(1)
        # zot's labels, so its dashboards find the version; a Python build has no Go version or
        # commit, so goVersion holds the Python version and commit stays empty.
        info = Gauge(
            "zot_info", "Server general information", ["commit", "binaryType", "goVersion", "version"],
            registry=registry,
        )
        info.labels("", "zotpy", f"python{platform.python_version()}", __version__).set(0)
        self.http_requests = Counter(
            "zot_http_requests_total", "Total number of http request in zot", ["method", "code"], registry=registry
        )
        self.http_method_latency = Histogram(
            "zot_http_method_latency_seconds", "Latency of serving HTTP requests",
            ["method"], buckets=HTTP_BUCKETS, registry=registry,
        )
        self.http_repo_latency = Summary(
            "zot_http_repo_latency_seconds", "Latency of serving HTTP requests", ["repo"], registry=registry
        )
        self.repo_downloads = Counter(
            "zot_repo_downloads_total", "Total number times an image was downloaded", ["repo"], registry=registry
        )
        self.repo_uploads = Counter(
            "zot_repo_uploads_total", "Total number times an image was uploaded", ["repo"], registry=registry
        )
        self.reactor_lag = Histogram(
            "zot_reactor_lag_seconds", "How late the reactor ran a periodic tick (time the event loop was blocked)",
            buckets=LAG_BUCKETS, registry=registry,
        )
        self.cluster = ClusterMetrics(registry)
        self.storage = StorageMetrics(registry)
        self.sync = SyncMetrics(registry)
        self.gc = GCMetrics(registry)


# --------------------------------------------------------------------------------------------------
# Metering decorators
# --------------------------------------------------------------------------------------------------


@implementer(IStorageDriver)
class MeteredDriver:
    """An :class:`IStorageDriver` that times every verb of the driver it wraps.

    ``reader`` is timed until the object is open, not while it streams (how long a blob takes to
    reach a client depends on the client). ``check`` and ``close`` are passed on untimed. Every verb
    of the interface is spelled out (no ``__getattr__``): a verb added to the interface and not here
    fails tests/test_interfaces.py instead of slipping past the meter.
    """

    def __init__(self, driver: IStorageDriver, metrics: StorageMetrics, clock: Callable[[], float] = time.monotonic):
        self.driver = driver
        self._metrics = metrics
        self._clock = clock

    def __repr__(self) -> str:
        return f"MeteredDriver({self.driver!r})"

    def _timed(self, operation: str, call: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        started = self._clock()
        latency = self._metrics.latency.labels(operation)

        def succeeded(result: Any) -> Any:
            latency.observe(self._clock() - started)
            return result

        def failed(failure: Failure) -> Failure:
            latency.observe(self._clock() - started)
            if not failure.check(PathNotFound):
                self._metrics.errors.labels(operation).inc()
            return failure

        try:
            deferred = call()
        except BaseException:
            failed(Failure())
            raise
        return deferred.addCallbacks(succeeded, failed)

    def get_content(self, path: str) -> Deferred[bytes]:
        return self._timed("get_content", lambda: self.driver.get_content(path))

    def put_content(self, path: str, data: bytes) -> Deferred[None]:
        return self._timed("put_content", lambda: self.driver.put_content(path, data))

    def stat(self, path: str) -> Deferred[Any]:
        return self._timed("stat", lambda: self.driver.stat(path))

    def size(self, path: str) -> Deferred[int]:
        return self._timed("size", lambda: self.driver.size(path))

    def list(self, path: str) -> Deferred[Any]:
        return self._timed("list", lambda: self.driver.list(path))

    def append(self, path: str, source: Any, hasher: Any = None) -> Deferred[int]:
        return self._timed("append", lambda: self.driver.append(path, source, hasher))

    def write(self, path: str, source: Any, hasher: Any, expected: str) -> Deferred[int]:
        return self._timed("write", lambda: self.driver.write(path, source, hasher, expected))

    def reader(self, path: str, offset: int = 0, length: int | None = None) -> Deferred[Any]:
        return self._timed("reader", lambda: self.driver.reader(path, offset, length))

    def move(self, source: str, destination: str) -> Deferred[None]:
        return self._timed("move", lambda: self.driver.move(source, destination))

    def copy(self, source: str, destination: str) -> Deferred[None]:
        return self._timed("copy", lambda: self.driver.copy(source, destination))

    def delete(self, path: str) -> Deferred[None]:
        return self._timed("delete", lambda: self.driver.delete(path))

    def hash(self, path: str, algorithm: str) -> Deferred[str]:
        return self._timed("hash", lambda: self.driver.hash(path, algorithm))

    def delete_many(self, paths: list[str]) -> Deferred[None]:
        return self._timed("delete_many", lambda: self.driver.delete_many(paths))

    def multipart_uploads(self, path: str) -> Deferred[list[tuple[str, str, float | None]]]:
        return self._timed("multipart_uploads", lambda: self.driver.multipart_uploads(path))

    def abort_multipart(self, path: str, upload_id: str) -> Deferred[None]:
        return self._timed("abort_multipart", lambda: self.driver.abort_multipart(path, upload_id))

    def redirect_url(self, path: str) -> Deferred[str | None]:
        return self._timed("redirect_url", lambda: self.driver.redirect_url(path))

    def check(self) -> Deferred[None]:
        return self.driver.check()

    def close(self) -> Deferred[None]:
        return self.driver.close()


class MeteredForwarder:
    """Wraps :class:`zotpy.cluster.proxy.Forwarder`: counts and times each forwarded request.

    Marks the request with ``forwarded_to`` (the member) for the access log; the forwarder marks
    ``forward_failure`` (``unreachable``, ``interrupted``) when the owner failed.
    """

    def __init__(self, forwarder: Any, metrics: ClusterMetrics, clock: Callable[[], float] = time.monotonic):
        self.forwarder = forwarder
        self._metrics = metrics
        self._clock = clock

    def forward(self, request: Any, member: str) -> Deferred[None]:
        request.forwarded_to = member
        started = self._clock()

        def count(result: Any) -> Any:
            outcome = getattr(request, "forward_failure", None) or "relayed"
            self._metrics.forwarded.labels(member, outcome).inc()
            self._metrics.forward_latency.labels(member).observe(self._clock() - started)
            if outcome != "relayed":
                self._metrics.peer_error(member, "forward")
            return result

        return self.forwarder.forward(request, member).addBoth(count)


class ReactorLagMonitor(Service):
    """Schedules a tick every ``interval`` seconds and records how late each one runs.

    A tick late by 0.3 s means the reactor thread was busy (or blocked) for that long: every
    request waiting on the reactor waited as well.
    """

    def __init__(self, histogram: Histogram, clock: IReactorTime, interval: float = 0.5) -> None:
        self.histogram = histogram
        self.clock = clock
        self.interval = interval
        self._call: IDelayedCall | None = None
        self._due = 0.0

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self.histogram.observe(max(0.0, self.clock.seconds() - self._due))
        self._schedule()
