"""A real daemon killed with SIGKILL in the middle of a garbage collection pass and of a push
(local disk), and in the middle of pushes on SeaweedFS.

The daemon collects every second. It is killed (``kill -9``) first while a client is halfway
through a blob and an abandoned upload session holds bytes; then, restarted on a repository that
also holds thousands of unreferenced blobs older than ``gcDelay``, once its pass has removed some
of them and not all. After each kill: every blob the two kept images reference is there and hashes
to its name, every ``index.json`` parses and lists only manifests that exist. After the last
restart the next passes collect what the dead processes left (the rest of the garbage, the
interrupted write, the session) and both images pull whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

from twisted.internet import reactor
from twisted.trial import unittest

from tests.driversuite import async_test
from tests.integration.cluster import seaweed_storage_driver
from tests.integration.daemon import ZotpyDaemon, http_request, sleep
from tests.integration.test_crash import being_written, check_layout, push_half
from tests.seaweed import shared_server
from zotpy.lifecycle.listing import stored_blobs
from zotpy.storage.driver import PathNotFound
from zotpy.storage.s3.bucket import MIN_PART
from zotpy.storage.s3.driver import S3Driver

REPO = "crash/gc"
#: Unreferenced blobs planted in REPO: enough that the pass is still deleting when the test looks.
GARBAGE = 5000
#: Local disk: what the test plants, and what the kill leaves, it ages past gcDelay itself.
CONFIG = {"storage": {"gc": True, "gcDelay": "1h", "gcInterval": "1s"}}
#: SeaweedFS sets its own ages: the delay is short.
S3_CONFIG = {"storage": {"gc": True, "gcDelay": "3s", "gcInterval": "1s"}}


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


def age(path: str) -> None:
    """As if the file had been left there two hours ago (older than the test's gcDelay)."""
    old = time.time() - 7200
    os.utime(path, (old, old))


def plant_garbage(blobs_dir: str, count: int) -> set[str]:
    """Unreferenced blobs written straight into the layout, older than gcDelay."""
    names = set()
    for serial in range(count):
        data = f"garbage {serial}".encode()
        name = hashlib.sha256(data).hexdigest()
        path = os.path.join(blobs_dir, name)
        with open(path, "wb") as stream:
            stream.write(data)
        age(path)
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
        await self.kill(daemon)  # mid-push
        self.assertTrue(leftovers(daemon.root_dir), "no interrupted write or session survived the kill")
        self.check_intact(daemon, kept)

        # Planted while no daemon runs, so the next start's first pass finds all of it at once.
        blobs_dir = os.path.join(daemon.repo_dir(REPO), "blobs", "sha256")
        garbage = plant_garbage(blobs_dir, GARBAGE)

        def garbage_left() -> int:
            return len(garbage.intersection(os.listdir(blobs_dir)))

        await daemon.start()
        deadline = time.monotonic() + 30
        while garbage_left() == GARBAGE:
            self.assertLess(time.monotonic(), deadline, f"no GC pass began:\n{daemon.describe()}")
            await sleep(0.002)
        await self.kill(daemon)  # mid-GC
        left = garbage_left()
        self.assertGreater(left, 0, "the pass ended before the kill: the test proved nothing")
        self.check_intact(daemon, kept)

        for leftover in leftovers(daemon.root_dir):
            age(leftover)  # rather than wait an hour
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

    async def kill(self, daemon: ZotpyDaemon) -> None:
        pid = daemon.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await daemon.wait_exit()

    def check_intact(self, daemon: ZotpyDaemon, kept: dict[str, dict[str, bytes]]) -> None:
        check_layout(daemon.root_dir)  # every blob hashes to its name, every index.json parses and is whole
        blobs_dir = os.path.join(daemon.repo_dir(REPO), "blobs", "sha256")
        for image in kept.values():
            for digest in image:
                self.assertTrue(os.path.exists(os.path.join(blobs_dir, digest[7:])), f"{digest} lost to the kill")


class KilledMidPushOnS3Tests(unittest.TestCase):
    """The same on SeaweedFS, where a killed writer leaves other things: an upload session whose
    first bytes sit in a multipart upload, and a blob PUT cut short (which S3 never creates)."""

    timeout = 120

    @async_test
    async def test_sigkill_mid_push_then_the_next_passes_collect_what_it_left(self) -> None:
        storage = seaweed_storage_driver()
        daemon = ZotpyDaemon(self.mktemp(), {"storage": {**S3_CONFIG["storage"], "storageDriver": storage}})
        await daemon.start()
        self.addCleanup(daemon.stop)
        driver = S3Driver(shared_server().settings(storage["rootdirectory"]), reactor, reactor.getThreadPool())
        self.addCleanup(driver.close)
        base = daemon.base_url
        kept = {"v1": await push_image(base, REPO, "v1", "one"), "v2": await push_image(base, REPO, "v2", "two")}
        session = await http_request("POST", f"{base}/v2/{REPO}/blobs/uploads/")
        chunk = os.urandom(MIN_PART + 4096)  # a part of its own: the session's bytes go to a multipart upload
        reply = await http_request("PATCH", base + session.header("Location"), data=chunk,
                                   headers={"Content-Range": f"0-{len(chunk) - 1}"})
        self.assertEqual(reply.code, 202, reply)
        halfway = await push_half(base, REPO)
        self.addCleanup(halfway.transport.abortConnection)
        await sleep(0.5)  # the cut blob's PUT is on its way to S3
        pid = daemon.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await daemon.wait_exit()

        sessions = [info.path for info in await driver.list(f"{REPO}/.uploads")]
        self.assertEqual(len(sessions), 1, sessions)
        self.assertIn(sessions[0], {path for path, _, _ in await driver.multipart_uploads(REPO)})
        reachable = {digest for image in kept.values() for digest in image}
        stored = set(await stored_blobs(driver, REPO))
        self.assertEqual(stored, reachable, "the kill left a partial blob, or lost a kept one")
        for digest in reachable:
            self.assertEqual(await driver.hash(f"{REPO}/blobs/sha256/{digest[7:]}", "sha256"), digest[7:])

        await daemon.start()
        deadline = time.monotonic() + 30
        while await driver.multipart_uploads(REPO) or await self.sessions_left(driver):
            if time.monotonic() > deadline:
                self.fail(f"the session or its multipart upload outlived the restart:\n{daemon.describe()}")
            await sleep(0.3)
        self.assertEqual(set(await stored_blobs(driver, REPO)), reachable)
        for tag, image in kept.items():
            for digest in image:
                reply = await http_request("GET", f"{base}/v2/{REPO}/blobs/{digest}")
                self.assertEqual((reply.code, sha256(reply.body)), (200, digest), (tag, digest))

    async def sessions_left(self, driver: S3Driver) -> bool:
        try:
            return bool(await driver.list(f"{REPO}/.uploads"))
        except PathNotFound:
            return False
