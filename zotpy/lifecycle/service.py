"""Periodic garbage collection of the repositories this replica owns.

Every ``gcInterval`` (inside ``gcTimeWindow`` when one is set) the service lists the repositories,
keeps those ``owns`` says are this replica's, and collects them one after the other: a cluster on
shared storage thus never has two replicas collecting one repository, and no replica collects a
repository whose pushes another replica serialises. One log line per repository that lost
something says what went and how many bytes.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from zotpy.lifecycle.gc import Collector, GCReport
from zotpy.observability.metrics import GCMetrics
from zotpy.oci.errors import RegistryError
from zotpy.storage.driver import StorageError

log = Logger()


async def collect_owned(
    collector: Collector,
    repositories: list[str],
    owns: Callable[[str], bool],
    metrics: GCMetrics | None = None,
) -> list[GCReport]:
    """One pass over ``repositories`` this replica owns; a repository that fails is logged and
    counted, and the pass goes on with the next."""
    reports = []
    owned = [repo for repo in repositories if owns(repo)]
    for repo in owned:
        started = time.monotonic()
        try:
            report = await collector.collect(repo)
        except (StorageError, RegistryError) as error:
            log.error("gc {repository}: failed: {error}", repository=repo, error=str(error))
            if metrics is not None:
                metrics.runs.labels("true").inc()
            continue
        reports.append(report)
        if report.removed_anything:
            log.info(
                "gc {repository}: {summary}", repository=repo, summary=report.summary(),
                manifests=report.manifests, bytes_freed=report.bytes_freed, dry_run=report.dry_run,
            )
        if metrics is not None:
            metrics.runs.labels("false").inc()
            metrics.duration.observe(time.monotonic() - started)
            if not report.dry_run:
                metrics.deleted.labels("manifest").inc(len(report.manifests))
                metrics.deleted.labels("blob").inc(report.blobs.count)
                metrics.deleted.labels("upload").inc(report.uploads.count)
                metrics.deleted.labels("temporary").inc(report.temporary.count)
                metrics.deleted.labels("multipart").inc(report.multipart)
                metrics.freed.inc(report.bytes_freed)
            metrics.repo_bytes.labels(repo).set(report.stored_bytes)
    if metrics is not None:
        metrics.repositories.set(len(owned))
    return reports


class GCService(Service):
    """Runs :func:`collect_owned` every ``interval`` seconds (the first pass one interval after
    the start, as zot does), skipping ticks outside the time window and while a pass still runs."""

    def __init__(
        self,
        collector: Collector,
        list_repositories: Callable[[], Any],
        owns: Callable[[str], bool],
        clock: Any,
        metrics: GCMetrics | None = None,
        drop_moved: Callable[[list[str]], Awaitable[Any]] | None = None,
    ) -> None:
        self.collector = collector
        #: after each pass, given every repository listed (``cluster.rebalance.dropMoved``,
        #: :class:`zotpy.lifecycle.moved.MovedDropper`): drops those another member now holds
        self.drop_moved = drop_moved
        self.list_repositories = list_repositories
        self.owns = owns
        self.metrics = metrics
        self.loop = LoopingCall(self._tick)
        self.loop.clock = clock
        self.clock = clock
        self.running_pass: Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        interval = self.collector.settings.gc_interval
        if interval > 0:
            self.loop.start(interval, now=False).addErrback(lambda failure: log.failure("gc loop stopped", failure))

    def _tick(self) -> None:
        window = self.collector.settings.time_window
        if self.running_pass is not None or (window is not None and not window.contains(self.clock.seconds())):
            return
        self.running_pass = Deferred.fromCoroutine(self.run_pass())
        self.running_pass.addErrback(_log_failure)
        self.running_pass.addBoth(self._done)

    def _done(self, result: Any) -> None:
        self.running_pass = None

    async def run_pass(self) -> list[GCReport]:
        repositories = await self.list_repositories()
        reports = await collect_owned(self.collector, repositories, self.owns, self.metrics)
        if self.drop_moved is not None and not self.collector.dry_run:
            await self.drop_moved(repositories)
        return reports

    def stopService(self) -> Any:
        super().stopService()
        if self.loop.running:
            self.loop.stop()
        if self.running_pass is not None:
            self.running_pass.cancel()


def _log_failure(failure: Failure) -> None:
    if not failure.check(CancelledError):  # stopped mid-pass: the next start collects again
        log.failure("gc pass failed", failure)
