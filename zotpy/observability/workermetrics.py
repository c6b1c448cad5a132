"""One ``/metrics`` for a replica of several worker processes (``twistd zotpy --workers N``).

Each worker counts what it served in its own registry. So that a scrape, answered by whichever
worker accepted it, shows the whole replica, every worker also serves its own registry on a Unix
socket in the workers' private directory (made by worker 0, mode 0700: nothing else on the host
reaches it), and the scraped worker gathers all of them: every series appears once per worker, with
a ``worker`` label (``sum without (worker)`` gives the replica's figure). A worker that does not
answer within :data:`FETCH_TIMEOUT` is left out of that scrape and named in the log; the scrape
itself still answers.

The gathering runs where the registry is encoded: in the storage thread pool, off the reactor (see
:class:`zotpy.observability.health.OperationsResource`), so its blocking reads of the sockets cost
no request its latency.
"""

from __future__ import annotations

import http.client
import os
import socket
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

log = Logger()

#: Seconds a worker has to hand over its metrics before a scrape goes on without them.
FETCH_TIMEOUT = 2.0
LABEL = "worker"


def socket_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"metrics-{index}.sock")


class _OwnMetrics(Resource):
    """This worker's registry as Prometheus text, encoded in the thread pool."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, reactor: Any, pool: ThreadPool | None) -> None:
        super().__init__()
        self.registry, self.reactor, self.pool = registry, reactor, pool

    def render_GET(self, request: Any) -> Any:
        if self.pool is None:
            return self._answer(generate_latest(self.registry), request)
        encoding: Deferred[bytes] = deferToThreadPool(self.reactor, self.pool, generate_latest, self.registry)
        encoding.addCallback(self._answer, request)
        encoding.addCallbacks(_finish, lambda failure: _fail(failure, request), (request,))
        return NOT_DONE_YET

    @staticmethod
    def _answer(body: bytes, request: Any) -> bytes:
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        return body


def _finish(body: bytes, request: Any) -> None:
    if not request.finished:
        request.write(body)
        request.finish()


def _fail(failure: Any, request: Any) -> None:
    log.failure("encoding this worker's metrics failed", failure)
    if not request.finished:
        request.setResponseCode(500)
        request.finish()


class OwnMetricsService(Service):
    """Serves this worker's registry on its Unix socket while the service runs."""

    def __init__(
        self, registry: CollectorRegistry, directory: str, index: int, reactor: Any, pool: ThreadPool | None = None
    ) -> None:
        self.path = socket_path(directory, index)
        self.site = Site(_OwnMetrics(registry, reactor, pool))
        self.site.log = lambda request: None  # the other workers' fetches are not requests of the registry
        self.reactor = reactor
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        if os.path.exists(self.path):
            os.unlink(self.path)  # left by this worker's previous life (it died, and was started again)
        self.port = self.reactor.listenUNIX(self.path, self.site, mode=0o600)

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("worker", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class AllWorkers:
    """A collector of every worker's series, labelled with the worker's index (module docstring)."""

    def __init__(self, own: CollectorRegistry, index: int, count: int, directory: str, timeout: float = FETCH_TIMEOUT):
        self.own, self.index, self.count, self.directory, self.timeout = own, index, count, directory, timeout

    def _text(self, worker: int) -> str | None:
        if worker == self.index:
            return generate_latest(self.own).decode("utf-8")
        connection = _UnixHTTPConnection(socket_path(self.directory, worker), self.timeout)
        try:
            connection.request("GET", "/metrics")
            reply = connection.getresponse()
            body = reply.read()
            if reply.status != 200:
                raise OSError(f"status {reply.status}")
            return body.decode("utf-8")
        except (OSError, http.client.HTTPException) as error:
            log.warn("metrics of worker {worker} left out of this scrape: {error}", worker=worker, error=str(error))
            return None
        finally:
            connection.close()

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for worker in range(self.count):
            text = self._text(worker)
            if text is None:
                continue
            for family in text_string_to_metric_families(text):
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for sample in family.samples:
                    labels = {**sample.labels, LABEL: str(worker)}
                    merged.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
        yield from families.values()


def replica_registry(own: CollectorRegistry, index: int, count: int, directory: str) -> CollectorRegistry:
    """What a scrape of any worker encodes: every worker's series (:class:`AllWorkers`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AllWorkers(own, index, count, directory))  # type: ignore[arg-type]
    return registry
