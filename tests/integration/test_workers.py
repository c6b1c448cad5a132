"""A replica of two worker processes sharing its listening socket (``twistd zotpy --workers 2``):
both serve, concurrent pushes to one repository through both keep ``index.json`` whole, a scrape
of either shows both workers' counts, and a worker that dies is started again. (The spec matrix runs against one too: tests/spec/test_workers.py.)"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests.integration.cluster import RegistryClient, small_image
from tests.certs import CertificateAuthority
from tests.integration.daemon import ZotpyDaemon, require_binary, sleep

REPOSITORY = "team/shared"
#: Images pushed at once, each on connections of their own.
CONCURRENT = 24


def log_lines(daemon: ZotpyDaemon) -> list[dict[str, Any]]:
    lines = []
    for line in daemon.log_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # a traceback, say: shown by describe() when a test fails
    return lines


async def until_listening(daemon: ZotpyDaemon, worker: str, timeout: float = 20.0) -> None:
    """Until ``worker`` logged that it listens (``start`` waits for the first worker's answer only)."""
    for _ in range(int(timeout / 0.1)):
        if any(line.get("worker") == worker and "zotpy listening" in line.get("message", "") for line in log_lines(daemon)):
            return
        await sleep(0.1)
    raise AssertionError(f"worker {worker} never listened:\n{daemon.describe()}")


class WorkersTests(unittest.TestCase):
    timeout = 120

    async def daemon(self, config: dict[str, Any] | None = None) -> ZotpyDaemon:
        daemon = ZotpyDaemon(self.mktemp(), config, workers=2)
        await daemon.start()
        self.addCleanup(daemon.stop)
        await until_listening(daemon, "1")
        return daemon

    async def test_concurrent_pushes_through_both_workers_keep_every_tag(self) -> None:
        daemon = await self.daemon()
        client = RegistryClient(persistent=False)  # a connection per request: either worker takes it
        self.addCleanup(client.close)
        images = {f"t{i}": small_image(f"workers-{i}", (512, 700)) for i in range(CONCURRENT)}
        await defer.gatherResults(
            [defer.ensureDeferred(client.push_image(daemon.base_url, REPOSITORY, image, tag)) for tag, image in images.items()],
            consumeErrors=True,
        )
        self.assertEqual(sorted(await client.tags(daemon.base_url, REPOSITORY)), sorted(images))
        with open(os.path.join(daemon.repo_dir(REPOSITORY), "index.json")) as stream:
            index = json.load(stream)
        tagged = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
        self.assertEqual(tagged, {tag: image.digest for tag, image in images.items()})
        for tag, image in list(images.items())[:4]:
            await client.pull_image(daemon.base_url, REPOSITORY, tag, image)
        pushes = [
            line for line in log_lines(daemon)
            if line.get("method") == "PUT" and "/manifests/" in line.get("path", "") and line.get("statusCode") == 201
        ]
        self.assertEqual(len(pushes), CONCURRENT)
        self.assertEqual({line.get("worker") for line in pushes}, {"0", "1"}, "one worker took every manifest push")

    async def test_a_worker_that_dies_is_started_again(self) -> None:
        daemon = await self.daemon()
        started = [line for line in log_lines(daemon) if line.get("message", "").startswith("worker 1 started")]
        self.assertEqual(len(started), 1)
        os.kill(started[0]["pid"], signal.SIGKILL)
        for _ in range(100):
            again = [line for line in log_lines(daemon) if line.get("message", "").startswith("worker 1 started")]
            if len(again) == 2:
                break
            await sleep(0.1)
        else:
            self.fail(f"worker 1 was not started again:\n{daemon.describe()}")
        self.assertNotEqual(again[1]["pid"], started[0]["pid"])
        client = RegistryClient(persistent=False)
        self.addCleanup(client.close)
        result = await client.expect(200, "GET", f"{daemon.base_url}/v2/")
        self.assertEqual(result.code, 200)

    async def until_both_workers_serve(self, daemon: ZotpyDaemon, request: Any, most: int = 200) -> int:
        """Sends ``request()`` (a new connection each), 8 at a time, until both workers' logs show a
        GET /v2/ answered, and returns how many were sent. Which worker accepts a connection is the
        kernel's choice: on a quiet machine one worker can take dozens in a row, so a fixed count
        proves nothing either way; ``most`` bounds it, and then the failure is real."""
        sent = 0
        while sent < most:
            await defer.gatherResults([defer.ensureDeferred(request()) for _ in range(8)], consumeErrors=True)
            sent += 8
            served = {
                line.get("worker") for line in log_lines(daemon) if line.get("path") == "/v2/" and line.get("statusCode") == 200
            }
            if served == {"0", "1"}:
                return sent
        self.fail(f"after {sent} connections only worker(s) {sorted(served)} had answered")

    async def test_a_scrape_shows_every_workers_series(self) -> None:
        """Whichever worker answers /metrics, it holds both workers' series, labelled ``worker``;
        their sum counts every request the replica answered."""
        metrics = {"extensions": {"metrics": {"enable": True, "prometheus": {"path": "/metrics"}}}}
        daemon = await self.daemon(metrics)
        client = RegistryClient(persistent=False)
        self.addCleanup(client.close)
        sent = await self.until_both_workers_serve(daemon, lambda: client.expect(200, "GET", f"{daemon.base_url}/v2/"))
        for _ in range(6):  # either worker may take the scrape: each must show the whole replica
            text = (await client.expect(200, "GET", f"{daemon.base_url}/metrics")).body.decode()
            counts = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "zot_http_requests_total" and sample.labels.get("method") == "GET" \
                            and sample.labels.get("code") == "200":
                        counts[sample.labels["worker"]] = sample.value
            self.assertEqual(set(counts), {"0", "1"}, text[:2000])
            self.assertGreaterEqual(sum(counts.values()), sent)

    async def test_https_through_both_workers(self) -> None:
        """With ``http.tls`` each worker wraps the adopted socket in TLS, as a lone process does."""
        curl = require_binary("curl")
        authority = CertificateAuthority(os.path.abspath(self.mktemp()))
        server = authority.issue("server", ["127.0.0.1"])
        daemon = await self.daemon({"http": {"tls": {"cert": server.cert_path, "key": server.key_path}}})
        async def one_connection() -> None:
            out, err, code = await getProcessOutputAndValue(
                curl, ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", authority.pair.cert_path,
                       f"{daemon.base_url}/v2/"],
            )
            self.assertEqual((code, out), (0, b"200"), err)

        await self.until_both_workers_serve(daemon, one_connection)
