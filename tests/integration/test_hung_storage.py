"""A hung storage backend fails fast: SeaweedFS frozen with SIGSTOP under a pull and push load.

The registry service runs in this process on a SeaweedFS of its own. Pullers and pushers keep
going while the S3 server is frozen and after it is thawed; the test checks what a client and a
load balancer need: every request is answered within 10 s, the answers while it is frozen are
503 ``UNAVAILABLE`` with ``Retry-After``, service is whole again within seconds of SIGCONT, and
every push that was acknowledged (its manifest PUT answered 201) can be pulled afterwards.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any
from urllib.parse import urljoin

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.integration.cluster import MEDIA_TYPE_MANIFEST, RegistryClient, small_image, with_query
from tests.integration.ocilayout import sha256_digest
from tests.integration.daemon import sleep
from tests.seaweed import SeaweedServer
from zotpy.config import parse_config
from zotpy.observability.service import Operations
from zotpy.tap import ListenerService, build_service

ANSWER_WITHIN = 10.0  # seconds: every request, frozen storage or not
FROZEN_FOR = 15.0
RECOVERED_WITHIN = 5.0  # seconds after SIGCONT from which every request must succeed


@attrs.define
class Answer:
    what: str
    started: float
    ended: float
    code: int  # 0: no answer (the client gave up or the connection failed)
    retry_after: str | None = None
    error: str = ""
    location: str = ""


class HungStorageTests(unittest.TestCase):
    timeout = 180

    async def start_registry(self, server: SeaweedServer) -> str:
        driver = server.storage_driver()
        config = parse_config(
            {
                "storage": {"rootDirectory": self.mktemp(), "dedupe": False, "gc": False, "storageDriver": driver},
                "http": {"address": "127.0.0.1", "port": 0},
            }
        )
        service = build_service(config, operations=Operations(config, reactor))
        service.startService()
        self.addCleanup(service.stopService)
        listener = next(child for child in service if isinstance(child, ListenerService))
        return f"http://127.0.0.1:{listener.port.getHost().port}"

    async def test_frozen_s3_under_load(self) -> None:
        server = SeaweedServer()
        self.addCleanup(server.stop, 0)
        await deferToThread(server.start)
        assert server.process is not None
        base = await self.start_registry(server)
        client = RegistryClient(timeout=ANSWER_WITHIN + 5)
        self.addCleanup(client.close)
        pulled = small_image("hung/pulled")
        await client.push_image(base, "hung/pulled", pulled, "v1")

        answers: list[Answer] = []
        acknowledged: list[tuple[str, str, str]] = []  # (repository, tag, digest)
        running = True

        async def ask(what: str, method: str, url: str, **kwargs: Any) -> Answer:
            started = time.monotonic()
            try:
                result = await client.request(method, url, **kwargs)
            except Exception as failure:
                answer = Answer(what, started, time.monotonic(), 0, error=repr(failure))
            else:
                answer = Answer(what, started, time.monotonic(), result.code, result.header("Retry-After"))
                answer.location = urljoin(base + "/", result.header("Location") or "")
                if result.code >= 400:
                    answer.error = result.body[:300].decode("utf-8", "replace")
            answers.append(answer)
            return answer

        async def puller() -> None:
            layer = next(iter(pulled.blobs))
            while running:
                manifest = await ask(
                    "manifest GET", "GET", f"{base}/v2/hung/pulled/manifests/v1", headers={"Accept": MEDIA_TYPE_MANIFEST}
                )
                blob = await ask("blob GET", "GET", f"{base}/v2/hung/pulled/blobs/{layer}")
                if manifest.code != 200 or blob.code != 200:
                    await sleep(0.2)  # as a client told Retry-After would, only sooner

        async def push(repository: str, tag: str, image: Any) -> bool:
            """POST + PUT each blob, then the manifest; True if the manifest PUT was acknowledged."""
            for digest, data in image.blobs.items():
                started = await ask("upload POST", "POST", f"{base}/v2/{repository}/blobs/uploads/")
                if started.code != 202:
                    return False
                put = await ask(
                    "blob PUT", "PUT", with_query(started.location, digest=digest),
                    headers={"Content-Type": "application/octet-stream"}, data=data,
                )
                if put.code != 201:
                    return False
            manifest = await ask(
                "manifest PUT", "PUT", f"{base}/v2/{repository}/manifests/{tag}",
                headers={"Content-Type": MEDIA_TYPE_MANIFEST}, data=image.manifest,
            )
            return manifest.code == 201

        async def pusher(number: int) -> None:
            image_number = 0
            while running:
                image_number += 1
                repository, tag = f"hung/pushed{number}", f"t{image_number}"
                image = small_image(f"{repository}:{tag}", layer_sizes=(2048, 300_000))
                if await push(repository, tag, image):
                    acknowledged.append((repository, tag, image.digest))
                else:
                    await sleep(0.2)

        load = gatherResults(
            [Deferred.fromCoroutine(puller()) for _ in range(3)]
            + [Deferred.fromCoroutine(pusher(number)) for number in range(2)]
        )
        await sleep(3)
        os.kill(server.process.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            await sleep(FROZEN_FOR)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        await sleep(RECOVERED_WITHIN + 5)
        running = False
        await load

        slow = [answer for answer in answers if answer.ended - answer.started > ANSWER_WITHIN or answer.code == 0]
        self.assertEqual(slow, [], f"{len(slow)} requests took longer than {ANSWER_WITHIN} s or got no answer")
        frozen = [answer for answer in answers if frozen_at + ANSWER_WITHIN <= answer.started and answer.ended <= thawed_at]
        self.assertTrue(frozen, "no request was made while the storage was frozen")
        self.assertEqual({answer.code for answer in frozen}, {503}, [attrs.asdict(a) for a in frozen if a.code != 503][:5])
        self.assertTrue(all(answer.retry_after for answer in frozen), "a 503 without Retry-After")
        self.assertTrue(all("UNAVAILABLE" in answer.error for answer in frozen))
        recovered = [answer for answer in answers if answer.started >= thawed_at + RECOVERED_WITHIN]
        self.assertGreater(len(recovered), 10, "too few requests after the storage came back")
        failed = [attrs.asdict(answer) for answer in recovered if answer.code not in (200, 201, 202)]
        self.assertEqual(failed, [], "service did not resume after SIGCONT")
        self.assertTrue(acknowledged, "no push was acknowledged")
        for repository, tag, digest in acknowledged:
            result = await client.request(
                "GET", f"{base}/v2/{repository}/manifests/{tag}", headers={"Accept": MEDIA_TYPE_MANIFEST}
            )
            self.assertEqual((result.code, sha256_digest(result.body)), (200, digest), f"{repository}:{tag} lost")
