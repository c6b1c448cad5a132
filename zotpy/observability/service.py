"""``Operations``: the operability parts of one registry service, built once and wired by ``zotpy.tap``.

``build_service`` creates one :class:`Operations` per registry and uses it to meter the storage
driver and the forwarder, to put the probes and ``/metrics`` in front of the routes, and to log
each request; it is a child service (placed after the listener) that runs the health state and
the reactor lag monitor. Other parts of zotpy reach it through ``build_service``:

- ``operations.metrics.sync`` holds the sync counters;
- ``operations.reloader.register(("extensions.sync",), hook)`` applies new sync rules on SIGHUP
  (the access layer registers ``http.auth`` and ``http.accessControl`` the same way, and its audit
  log with ``register_reopen``).

:func:`for_twistd` adds what only the real daemon has: the JSON log observer handed to twistd and
the SIGHUP handler.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping

from twisted.application.service import IService, MultiService
from twisted.internet import reactor as global_reactor
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource

from zotpy.config import Config
from zotpy.observability.access import AccessLog
from zotpy.observability.health import PROBE_PATHS, CachedCheck, Health, OperationsResource
from zotpy.observability.logs import TwistdLogging, cluster_fields, make_observer
from zotpy.observability.metrics import Metrics, MeteredDriver, MeteredForwarder, ReactorLagMonitor
from zotpy.observability.reload import Reloader, SighupService, level_hook
from zotpy.observability.workermetrics import OwnMetricsService, replica_registry
from zotpy.storage.driver import IStorageDriver


def metrics_path(config: Config) -> str | None:
    """Where ``/metrics`` is served, or None when ``extensions.metrics`` is absent or disabled."""
    metrics = getattr(config, "metrics", None)
    return metrics.path if metrics is not None else None


class Operations(MultiService):
    """Metrics, health, per-request logging and reload hooks of one registry service."""

    def __init__(self, config: Config, reactor: Any = global_reactor, storage_check_ttl: float = 2.0) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.metrics = Metrics()
        self.reloader = Reloader(config)
        self.log_fields: dict[str, str] = {}
        self.metrics_path = metrics_path(config)
        self.storage_check_ttl = storage_check_ttl
        self.health: Health | None = None
        quiet = set(PROBE_PATHS) | ({self.metrics_path.encode()} if self.metrics_path else set())
        self.access_log = AccessLog(self.metrics, quiet)
        ReactorLagMonitor(self.metrics.reactor_lag, reactor).setServiceParent(self)
        self._workers: tuple[int, int, str] | None = None

    def meter(self, driver: IStorageDriver) -> MeteredDriver:
        return MeteredDriver(driver, self.metrics.storage)

    def meter_forwarder(self, forwarder: Any) -> MeteredForwarder:
        return MeteredForwarder(forwarder, self.metrics.cluster)

    def watch_storage(self, check: Callable[[], Awaitable[Any]]) -> None:
        """Readiness follows ``check`` (the image store's)."""
        self.health = Health(CachedCheck(check, self.reactor, ttl=self.storage_check_ttl))
        self.health.setServiceParent(self)

    def cluster_member(self, index: int, member: str) -> None:
        """Every log line names this member from now on."""
        self.log_fields.update(cluster_fields(index, member))

    def across_workers(self, index: int, count: int, directory: str) -> None:
        """This process is worker ``index`` of ``count`` (``--workers``): log lines name it, and a
        scrape shows every worker's series (:mod:`zotpy.observability.workermetrics`)."""
        self._workers = (index, count, directory)
        self.log_fields["worker"] = str(index)

    def mount(self, resource: IResource, pool: ThreadPool | None = None) -> IResource:
        """``resource`` behind the probes and the metrics endpoint."""
        assert self.health is not None, "watch_storage() first"
        registry = self.metrics.registry
        if self._workers is not None and self.metrics_path is not None:
            index, count, directory = self._workers
            OwnMetricsService(registry, directory, index, self.reactor, pool).setServiceParent(self)
            registry = replica_registry(registry, index, count, directory)
        return OperationsResource(resource, self.health, registry, self.metrics_path, self.reactor, pool)


def for_twistd(
    service: MultiService, operations: Operations, config: Config, twistd_options: Mapping[str, Any] | None,
    also_on_hup: Callable[[], Any] | None = None,
) -> IService:
    """The service twistd runs: JSON logs where the operator asked, SIGHUP reloading the config
    (and then ``also_on_hup``: worker 0 passes the signal on to the other workers)."""
    observer = make_observer(config.log.level, config.log.output, twistd_options, operations.log_fields)
    if observer is not None:
        operations.reloader.register(("log.level",), level_hook(observer))
        operations.reloader.register_reopen(observer.output.reopen)

    def on_hup() -> None:
        operations.reloader.reopen()
        operations.reloader.reload()
        if also_on_hup is not None:
            also_on_hup()

    SighupService(operations.reactor, on_hup).setServiceParent(service)
    return TwistdLogging(service, observer)
