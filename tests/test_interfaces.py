"""The boundaries are zope.interface interfaces, and what claims to implement one does, method by method."""

from __future__ import annotations

from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyClass

from zotpy.api.registry import IOnDemand
from zotpy.observability.metrics import ISyncCounters, MeteredDriver, SyncMetrics
from zotpy.storage.breaker import BreakerDriver
from zotpy.storage.driver import IStorageDriver
from zotpy.storage.local import LocalDriver
from zotpy.storage.s3.driver import S3Driver
from zotpy.sync import service


class InterfaceTests(TestCase):
    def test_storage_drivers_and_their_wrappers(self) -> None:
        for driver in (LocalDriver, S3Driver, MeteredDriver, BreakerDriver):
            self.assertTrue(verifyClass(IStorageDriver, driver), driver)
            for name in ("check", "close"):  # on the interface: no probing with getattr
                self.assertTrue(callable(getattr(driver, name, None)), f"{driver.__name__}.{name}")

    def test_sync_boundaries(self) -> None:
        self.assertTrue(verifyClass(IOnDemand, service.SyncService))
        self.assertTrue(verifyClass(ISyncCounters, SyncMetrics))
        self.assertTrue(verifyClass(ISyncCounters, service._NoCounters))
