"""zotpy.observability.workermetrics: a scrape of one worker gathers every worker's series."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from zotpy.observability.workermetrics import OwnMetricsService, replica_registry


def _registry(requests: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("zot_http_requests_total", "requests", ["method"], registry=registry).labels("GET").inc(requests)
    return registry


def _counts(text: str) -> dict[str, float]:
    return {
        sample.labels["worker"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "zot_http_requests_total"
    }


class AllWorkersTests(TestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    async def test_every_worker_labelled(self) -> None:
        other = OwnMetricsService(_registry(5), self.directory, 1, reactor)
        other.startService()
        self.addCleanup(other.stopService)
        scrape = replica_registry(_registry(3), 0, 2, self.directory)
        text = (await deferToThread(generate_latest, scrape)).decode()  # blocking reads: off the reactor
        self.assertEqual(_counts(text), {"0": 3.0, "1": 5.0})
        self.assertEqual(text.count("# TYPE zot_http_requests_total counter"), 1, text)

    def test_a_worker_that_does_not_answer_is_left_out(self) -> None:
        scrape = replica_registry(_registry(3), 0, 3, self.directory)  # workers 1 and 2 have no socket
        self.assertEqual(_counts(generate_latest(scrape).decode()), {"0": 3.0})
