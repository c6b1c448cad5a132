"""The boundaries are zope.interface interfaces, and what claims to implement one does, method by method."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

from zotpy.api.registry import IOnDemand
from zotpy.observability.metrics import ISyncCounters, MeteredDriver, SyncMetrics
from zotpy.storage.breaker import BreakerDriver
from prometheus_client import CollectorRegistry

from zotpy.observability.metrics import StorageMetrics
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

    def test_decorators_pass_every_verb_on(self) -> None:
        """The meter and the breaker spell out each verb of IStorageDriver (no ``__getattr__``
        passthrough that would let a new verb skip them): each reaches the driver they wrap with
        its arguments, and what the driver answers comes back."""
        for make in (
            lambda inner: MeteredDriver(inner, StorageMetrics(CollectorRegistry())),
            lambda inner: BreakerDriver(inner, Clock()),
        ):
            inner = _RecordingDriver()
            decorator = make(inner)
            self.assertNotIn("__getattr__", vars(type(decorator)), type(decorator).__name__)
            self.assertTrue(verifyObject(IStorageDriver, decorator))
            for name in IStorageDriver.names():
                arguments = tuple(f"{name}-{parameter}" for parameter in IStorageDriver[name].positional)
                answer = getattr(decorator, name)(*arguments)
                self.assertEqual(inner.calls[-1], (name, arguments), f"{type(decorator).__name__}.{name}")
                answered = self.successResultOf(answer)
                if name == "check":
                    continue  # the breaker's check answers None: what it learnt is its state
                answered = getattr(answered, "reader", answered)  # the breaker guards a reader's streaming
                self.assertIs(answered, inner.answers[name], f"{type(decorator).__name__}.{name}")

    def test_sync_boundaries(self) -> None:
        self.assertTrue(verifyClass(IOnDemand, service.SyncService))
        self.assertTrue(verifyClass(ISyncCounters, SyncMetrics))
        self.assertTrue(verifyClass(ISyncCounters, service._NoCounters))


@implementer(IStorageDriver)
class _RecordingDriver:
    """Answers every verb at once with a value naming it, and records the call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers: dict[str, _Answer] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in IStorageDriver:
            raise AttributeError(name)

        def verb(*arguments: Any) -> Deferred[Any]:
            self.calls.append((name, arguments))
            return succeed(self.answers.setdefault(name, _Answer()))

        return verb


class _Answer:
    size = 0  # what the breaker reads of a reader it guards
