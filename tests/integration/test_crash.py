"""A crash at any moment leaves no partial blob and no broken index.json behind.

The real daemon is killed with SIGKILL at random moments while clients push
images (monolithic and chunked uploads, manifests, tag moves), then restarted
on the same storage. After every crash the storage must satisfy zot's layout
invariants: each file under ``blobs/`` hashes to its name, each ``index.json``
parses, each manifest it lists exists, and the registry serves again. Besides
the random moments, one push per crash is stopped halfway through its body, so
that at least that write is cut by the kill (a body is streamed to storage as
it arrives: the half is being written when the daemon dies).
"""

from __future__ import annotations

import hashlib
import json
import os
import random

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from tests.driversuite import async_test
from tests.integration.daemon import ZotpyDaemon, http_request, sleep

ROUNDS = 6
LAYER = 3 * 1024 * 1024


def interrupted_writes(root: str) -> int:
    """Upload sessions holding bytes and unfinished atomic writes: evidence a kill landed mid-write."""
    count = 0
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if name.startswith(".tmp-") or (directory.endswith(".uploads") and os.path.getsize(path)):
                count += 1
    return count


def check_layout(root: str) -> tuple[int, int]:
    """Assert zot's invariants over every repository; return (blobs, manifests) seen."""
    blobs = manifests = 0
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d != ".uploads"]
        if os.path.basename(os.path.dirname(directory)) == "blobs":
            algorithm = os.path.basename(directory)
            for name in files:
                if name.startswith(".tmp-"):
                    continue  # an unfinished atomic write: never a visible blob
                with open(os.path.join(directory, name), "rb") as stream:
                    actual = hashlib.new(algorithm, stream.read()).hexdigest()
                assert actual == name, f"{directory}/{name} holds other bytes ({algorithm}:{actual})"
                blobs += 1
        if "index.json" in files:
            with open(os.path.join(directory, "index.json"), "rb") as stream:
                index = json.load(stream)  # a partial write would not parse
            for entry in index.get("manifests") or []:
                algorithm, encoded = entry["digest"].split(":")
                path = os.path.join(directory, "blobs", algorithm, encoded)
                assert os.path.exists(path), f"index.json of {directory} lists missing manifest {entry['digest']}"
                manifests += 1
    return blobs, manifests


async def push_forever(base: str, worker: int) -> None:
    """Push images until the daemon dies under us."""
    serial = 0
    while True:
        serial += 1
        layer = os.urandom(LAYER if serial % 2 else 4096)
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": [worker, serial]}).encode()
        repo = f"crash/w{worker}"
        for blob in (layer, config):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            if serial % 3:
                await http_request("POST", f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", data=blob)
            else:
                start = await http_request("POST", f"{base}/v2/{repo}/blobs/uploads/")
                location = start.header("Location")
                half = len(blob) // 2
                await http_request("PATCH", base + location, data=blob[:half],
                                   headers={"Content-Range": f"0-{half - 1}"})
                await http_request("PUT", f"{base}{location}?digest={digest}", data=blob[half:])
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}],
        }).encode()
        await http_request("PUT", f"{base}/v2/{repo}/manifests/latest", data=manifest,
                           headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


async def push_half(base: str, repo: str) -> Protocol:
    """Start pushing a layer whole and stop halfway through its body."""
    host, port = base.removeprefix("http://").split(":")
    layer = os.urandom(LAYER)
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    head = f"POST /v2/{repo}/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {LAYER}\r\n\r\n"
    client = Protocol()
    await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), client)
    client.transport.write(head.encode() + layer[: LAYER // 2])
    return client


async def being_written(directory: str) -> None:
    """Wait until an unfinished write shows in ``directory`` (at most 10 s)."""
    for _ in range(1000):
        if os.path.isdir(directory) and any(name.startswith(".tmp-") for name in os.listdir(directory)):
            return
        await sleep(0.01)
    raise AssertionError(f"no write began in {directory}")


class CrashTests(unittest.TestCase):
    timeout = 180

    @async_test
    async def test_sigkill_at_random_moments_leaves_a_consistent_store(self) -> None:
        workdir = self.mktemp()
        randomness = random.Random(int(os.environ.get("ZOTPY_CRASH_SEED", "2434")))
        total_blobs = 0
        for crash in range(ROUNDS):
            daemon = ZotpyDaemon(workdir)
            await daemon.start()
            pushers = [defer.ensureDeferred(push_forever(daemon.base_url, worker)) for worker in range(3)]
            for pusher in pushers:
                pusher.addErrback(lambda failure: None)  # connections die with the daemon
            halfway = await push_half(daemon.base_url, "crash/halfway")
            await sleep(randomness.uniform(0.2, 1.5))
            await being_written(os.path.join(daemon.root_dir, "crash", "halfway", "blobs", "sha256"))
            daemon._kill()
            await daemon.stop()
            await defer.DeferredList(pushers)
            halfway.transport.abortConnection()
            try:
                blobs, manifests = check_layout(daemon.root_dir)
            except AssertionError as error:
                self.fail(f"after crash {crash + 1}: {error}")
            total_blobs = blobs
            interrupted = interrupted_writes(daemon.root_dir)
        # One last start: the registry serves what survived and takes new pushes.
        daemon = ZotpyDaemon(workdir)
        await daemon.start()
        self.addCleanup(daemon.stop)
        self.assertGreater(total_blobs, 0, "the pushers never got a blob stored: the test proved nothing")
        self.assertGreater(interrupted, 0, "no kill landed mid-write: the test proved nothing")
        catalog = await http_request("GET", f"{daemon.base_url}/v2/_catalog")
        for repo in catalog.json()["repositories"]:
            tags = await http_request("GET", f"{daemon.base_url}/v2/{repo}/tags/list")
            self.assertEqual(tags.code, 200, repo)
            for tag in tags.json()["tags"]:
                manifest = await http_request("GET", f"{daemon.base_url}/v2/{repo}/manifests/{tag}")
                self.assertEqual(manifest.code, 200, (repo, tag))
        await push_after_crashes(daemon.base_url)


async def push_after_crashes(base: str) -> None:
    blob = b"after the crashes"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    reply = await http_request("POST", f"{base}/v2/crash/after/blobs/uploads/?digest={digest}", data=blob)
    assert reply.code == 201, reply
