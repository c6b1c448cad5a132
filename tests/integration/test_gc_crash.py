"""A real daemon killed with SIGKILL in the middle of a garbage collection pass and of a push.

The daemon collects every second (``gcDelay`` 3 s). Its repository holds two tagged images and
thousands of unreferenced blobs older than the delay; another client is halfway through a blob and
an abandoned upload session holds bytes. The process is killed (``kill -9``) once the pass has
removed some of the garbage and not all of it. Then, before any restart: every blob the kept images
reference is there and hashes to its name, every ``index.json`` parses and lists only manifests
that exist. After the restart the next passes collect what the dead process left (the rest of the
garbage, the interrupted write, the session) and both images pull whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

from twisted.trial import unittest

from tests.driversuite import async_test
from tests.integration.daemon import ZotpyDaemon, http_request, sleep
from tests.integration.test_crash import being_written, check_layout, push_half

REPO = "crash/gc"
#: Unreferenced blobs planted in REPO: enough that the pass is still deleting when the test looks.
GARBAGE = 4000
CONFIG = {"storage": {"gc": True, "gcDelay": "3s", "gcInterval": "1s"}}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_image(base: str, repo: str, tag: str, seed: str) -> dict[str, bytes]:
    """Push a one-layer image; every blob it references (manifest included) by digest."""
    layer = hashlib.sha256(seed.encode()).digest() * 2048
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    for blob in (layer, config):
        reply = await http_request("POST", f"{base}/v2/{repo}/blobs/uploads/?digest={sha256(blob)}", data=blob)
        assert reply.code == 201, reply
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": len(layer)}],
    }).encode()
    reply = await http_request("PUT", f"{base}/v2/{repo}/manifests/{tag}", data=manifest,
                               headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert reply.code == 201, reply
    return {sha256(blob): blob for blob in (layer, config, manifest)}


def plant_garbage(blobs_dir: str, count: int) -> set[str]:
    """Unreferenced blobs written straight into the layout, aged an hour (older than gcDelay)."""
    names = set()
    old = time.time() - 3600
    for serial in range(count):
        data = f"garbage {serial}".encode()
        name = hashlib.sha256(data).hexdigest()
        path = os.path.join(blobs_dir, name)
        with open(path, "wb") as stream:
            stream.write(data)
        os.utime(path, (old, old))
        names.add(name)
    return names


def leftovers(root: str) -> list[str]:
    """Interrupted writes and upload sessions anywhere under ``root``."""
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            if name.startswith(".tmp-") or os.path.basename(directory) == ".uploads":
                found.append(os.path.join(directory, name))
    return found


class KilledMidGCTests(unittest.TestCase):
    timeout = 120

    @async_test
    async def test_sigkill_mid_pass_loses_nothing_and_the_next_pass_finishes(self) -> None:
        daemon = ZotpyDaemon(self.mktemp(), CONFIG)
        await daemon.start()
        self.addCleanup(daemon.stop)
        base = daemon.base_url
        kept = {"v1": await push_image(base, REPO, "v1", "one"), "v2": await push_image(base, REPO, "v2", "two")}
        session = await http_request("POST", f"{base}/v2/{REPO}/blobs/uploads/")
        await http_request("PATCH", base + session.header("Location"), data=b"abandoned" * 1000,
                           headers={"Content-Range": "0-8999"})
        halfway = await push_half(base, "crash/halfway")
        self.addCleanup(halfway.transport.abortConnection)
        await being_written(os.path.join(daemon.repo_dir("crash/halfway"), "blobs", "sha256"))
        blobs_dir = os.path.join(daemon.repo_dir(REPO), "blobs", "sha256")
        garbage = plant_garbage(blobs_dir, GARBAGE)

        def garbage_left() -> int:
            return len(garbage.intersection(os.listdir(blobs_dir)))

        deadline = time.monotonic() + 30
        while garbage_left() == GARBAGE:
            self.assertLess(time.monotonic(), deadline, f"no GC pass began:\n{daemon.describe()}")
            await sleep(0.002)
        pid = daemon.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await daemon.wait_exit()
        left = garbage_left()
        self.assertGreater(left, 0, "the pass ended before the kill: the test proved nothing")
        self.assertTrue(leftovers(daemon.root_dir), "no interrupted write or session survived the kill")
        check_layout(daemon.root_dir)  # every blob hashes to its name, every index.json parses and is whole
        for image in kept.values():
            for digest in image:
                self.assertTrue(os.path.exists(os.path.join(blobs_dir, digest[7:])), f"{digest} lost to the kill")

        await daemon.start()
        deadline = time.monotonic() + 30
        while garbage_left() or leftovers(daemon.root_dir):
            if time.monotonic() > deadline:
                self.fail(f"{garbage_left()} garbage blobs and {leftovers(daemon.root_dir)} left after restart")
            await sleep(0.2)
        print(f"\nkilled with {left} of {GARBAGE} garbage blobs left; the restarted daemon collected the rest")
        for tag, image in kept.items():
            for digest, content in image.items():
                reply = await http_request("GET", f"{base}/v2/{REPO}/blobs/{digest}")
                self.assertEqual((reply.code, sha256(reply.body)), (200, digest), (tag, digest))
            manifest = await http_request("GET", f"{base}/v2/{REPO}/manifests/{tag}",
                                          headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            self.assertEqual(manifest.code, 200, tag)
            self.assertIn(sha256(manifest.body), image)
        remaining = {name for name in os.listdir(blobs_dir)}
        self.assertEqual(remaining, {digest[7:] for image in kept.values() for digest in image})
