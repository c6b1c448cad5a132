"""Dedupe's locator learns, when the daemon starts, what the layout already stores.

The locator (:mod:`zotpy.lifecycle.dedupe`) lives in memory. Without this, a restarted owner would
dedupe nothing stored before the restart until its garbage collection had listed each repository
(``gcInterval``, 1 h by default, or never with ``gc`` off). zot keeps the same map in a cache
database on disk; zotpy rebuilds it from the layout instead, so it can never disagree with what is
stored, costs nothing per push, and a replica that becomes owner after a resize needs no copy of
another replica's file. The walk is one listing per repository and algorithm, in the background:
the registry serves meanwhile (a blob the locator has not learnt yet is simply uploaded), and the
reactor gets a turn every :data:`~zotpy.lifecycle.gc.BATCH` blobs.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from zotpy.lifecycle.gc import BATCH
from zotpy.lifecycle.listing import blob_digest, stored_blobs
from zotpy.oci.errors import RegistryError
from zotpy.storage.driver import StorageError
from zotpy.storage.events import IBlobLocator
from zotpy.storage.imagestore import ImageStore

log = Logger()


async def learn_layout(locator: IBlobLocator, store: ImageStore, pause: Callable[[], Awaitable[None]]) -> tuple[int, int]:
    """Tell ``locator`` of every blob stored under every repository; (repositories, blobs) seen."""
    repositories = await store.repositories()
    learnt = 0
    for repo in repositories:
        for name in await stored_blobs(store.driver, repo):
            digest = blob_digest(name)
            if digest is None:
                continue
            locator.stored(repo, digest)
            learnt += 1
            if learnt % BATCH == 0:
                await pause()
        await pause()
    return len(repositories), learnt


class LocatorWarmup(Service):
    """Runs :func:`learn_layout` once, in the background, when the service starts."""

    def __init__(self, locator: IBlobLocator, store: ImageStore, clock: Any) -> None:
        self.locator = locator
        self.store = store
        self.clock = clock
        self.running: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self.running = Deferred.fromCoroutine(self._learn())
        self.running.addErrback(_log_failure)

    async def _learn(self) -> None:
        started = self.clock.seconds()
        try:
            repositories, blobs = await learn_layout(self.locator, self.store, lambda: deferLater(self.clock, 0, lambda: None))
        except (StorageError, RegistryError) as error:
            # A hint only: dedupe then learns from pushes, checks and GC listings as they come.
            log.warn("dedupe: could not learn the stored blobs: {error}", error=str(error))
            return
        log.info(
            "dedupe: learnt {blobs} stored blobs of {repositories} repositories in {seconds:.1f} s",
            blobs=blobs, repositories=repositories, seconds=self.clock.seconds() - started,
        )

    def stopService(self) -> Any:
        super().stopService()
        if self.running is not None:
            self.running.cancel()


def _log_failure(failure: Failure) -> None:
    if not failure.check(CancelledError):  # stopped before it finished: nothing lost, a hint
        log.failure("dedupe: learning the stored blobs failed", failure)
