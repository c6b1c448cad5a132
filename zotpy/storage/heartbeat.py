"""Which daemons serve a storage nobody can lock: a marker object each rewrites every half minute.

On local disk :mod:`zotpy.storage.rootlock` tells an offline ``zotpy gc`` that a daemon serves the
root. A bucket has no lock, and the daemons serving it may run on other hosts; so each daemon on
S3 keeps ``.zotpy-serving/<name>`` beside the repositories, rewritten every :data:`INTERVAL`
seconds and deleted when it stops. The offline pass refuses while a marker is younger than
:data:`FRESH` (three missed beats: a daemon killed without stopping stops counting after that).
Ages come from the storage's own LastModified, compared with this host's clock: skew between the
two narrows or widens the window by as much. One small PUT per daemon every half minute.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from zotpy.storage.driver import IStorageDriver, PathNotFound, StorageError

log = Logger()

DIRECTORY = ".zotpy-serving"
INTERVAL = 30.0
FRESH = 3 * INTERVAL


@attrs.frozen
class Beat:
    """A marker found: whose, and how many seconds ago it was last written."""

    name: str
    age: float
    description: str


async def live_beats(driver: IStorageDriver, now: float) -> list[Beat]:
    """The markers written less than :data:`FRESH` seconds before ``now``."""
    try:
        markers = await driver.list(DIRECTORY)
    except PathNotFound:
        return []
    beats = []
    for marker in markers:
        if marker.is_dir or marker.modified is None or now - marker.modified >= FRESH:
            continue
        try:
            description = json.loads(await driver.get_content(marker.path)).get("serving", "")
        except (PathNotFound, ValueError, AttributeError):
            description = ""  # gone or rewritten meanwhile: its listing still says it is fresh
        beats.append(Beat(marker.path.rsplit("/", 1)[-1], max(0.0, now - marker.modified), str(description)))
    return beats


class HeartbeatService(TimerService):
    """Writes this daemon's marker at start and every :data:`INTERVAL` seconds; :meth:`end`
    deletes it (called at stop, before the storage closes)."""

    def __init__(self, driver: IStorageDriver, name: str, serving: str, clock: Any) -> None:
        super().__init__(INTERVAL, self._beat)
        self.clock = clock
        self.driver = driver
        self.path = f"{DIRECTORY}/{name}"
        self.body = json.dumps({"serving": serving, "pid": os.getpid()}).encode()

    def _beat(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._write())

    async def _write(self) -> None:
        try:
            await self.driver.put_content(self.path, self.body)
        except StorageError as error:  # the next beat tries again; the breaker says the storage is down
            log.warn("heartbeat {path} not written: {error}", path=self.path, error=str(error))

    async def end(self) -> None:
        try:
            await self.driver.delete(self.path)
        except StorageError:
            pass  # never written, or the storage is down: it goes stale by itself
