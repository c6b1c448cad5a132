"""Garbage collection end to end, on local disk and on a real SeaweedFS bucket: after one pass with
short delays the store holds exactly the reachable content, and every kept image pulls intact with
skopeo; ``zotpy gc`` runs the same pass from the command line."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests.integration.cluster import seaweed_storage_driver
from tests.integration.daemon import REPO_ROOT, ZotpyDaemon, require_binary, sleep, tail
from tests.seaweed import shared_server
from tests.support import serve
from tests.syncimages import multi_arch, push_to_store, sha256, signature_for, single
from tests.test_api import async_test
from zotpy.api.site import IDLE_TIMEOUT_SECONDS, registry_resource
from zotpy.lifecycle.gc import Collector, GCReport
from zotpy.lifecycle.settings import LifecycleSettings, RetentionPolicy
from zotpy.oci.digest import parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.storage.driver import IStorageDriver, PathNotFound
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.heartbeat import FRESH, HeartbeatService, live_beats
from zotpy.storage.local import LocalDriver
from zotpy.storage.rootlock import RootLock
from zotpy.storage.s3.bucket import MIN_PART
from zotpy.storage.s3.driver import S3Driver

REPO = "team/app"
#: Short delays: what is older than this when the pass runs is collectable.
DELAY = 2.0
SETTINGS = LifecycleSettings(
    gc_delay=DELAY, retention_delay=DELAY,
    policies=(RetentionPolicy(repositories=("team/**",), delete_referrers=True),),  # untagged: deleted by default
)


async def every_file(driver: IStorageDriver, directory: str) -> set[str]:
    """Every object under ``directory`` (relative paths), walking the driver's listing."""
    found: set[str] = set()
    try:
        children = await driver.list(directory)
    except PathNotFound:
        return found
    for child in children:
        if child.is_dir:
            found |= {f"{child.path.rsplit('/', 1)[-1]}/{name}" for name in await every_file(driver, child.path)}
        else:
            found.add(child.path.rsplit("/", 1)[-1])
    return found


async def has_upload(store: ImageStore, session: str) -> bool:
    try:
        await store.upload_size(REPO, session)
    except RegistryError:
        return False
    return True


class Scenario:
    """Pushes, overwrites, deletes and abandons; then one pass; then counts and pulls."""

    async def make_store(self) -> ImageStore:
        raise NotImplementedError

    async def leave_interrupted_write(self, store: ImageStore) -> None:
        """What a writer killed mid-blob leaves behind on this storage."""
        raise NotImplementedError

    async def check_interrupted_write_gone(self, store: ImageStore) -> None:
        raise NotImplementedError

    async def check_abandoned_session(self, store: ImageStore, session: str, report: GCReport) -> None:
        self.assertEqual(report.uploads.count, 1)
        self.assertFalse(await has_upload(store, session))

    @async_test
    async def test_one_pass_leaves_exactly_the_reachable_content(self) -> None:
        store = await self.make_store()
        kept = {"v1": single("a"), "v2": single("b2"), "multi": multi_arch("m")}
        for tag, image in kept.items():
            await push_to_store(store, REPO, image, tag)
        signature = signature_for(kept["v1"])
        await push_to_store(store, REPO, signature, "sig")
        overwritten = single("b1", layer_sizes=(700, 2000))
        await push_to_store(store, REPO, overwritten, "v2")
        await push_to_store(store, REPO, kept["v2"], "v2")  # b1 is now untagged
        deleted = single("c", layer_sizes=(900,))
        await push_to_store(store, REPO, deleted, "gone")
        await push_to_store(store, REPO, signature_for(deleted, "orphan-sig"), "orphan-sig")
        await store.delete_manifest(REPO, deleted.digest)  # its referrer now points at nothing
        orphan = b"a blob no manifest ever referenced"
        await store.put_blob(REPO, parse_digest(sha256(orphan)), io.BytesIO(orphan))
        session = await store.start_upload(REPO)
        await store.append_upload(REPO, session, io.BytesIO(b"abandoned half of a layer"), 0)
        await self.leave_interrupted_write(store)
        before = await every_file(store.driver, REPO)

        await sleep(DELAY + 1.5)
        report = await Collector(store, SETTINGS, reactor).collect(REPO)

        reachable = set()
        for image in [*kept.values(), signature]:
            reachable |= {image.digest, *image.blobs, *(child.digest for child in image.children)}
        expected = {"index.json", "oci-layout"} | {f"blobs/sha256/{d.split(':')[1]}" for d in reachable}
        after = await every_file(store.driver, REPO)
        self.assertEqual(after, expected)
        self.assertEqual(sorted(report.manifests), sorted([overwritten.digest, signature_for(deleted, "orphan-sig").digest]))
        await self.check_abandoned_session(store, session, report)
        await self.check_interrupted_write_gone(store)
        self.assertGreater(report.bytes_freed, 0)
        self.reclaimed = report
        self.assertEqual(sorted(await store.tags(REPO)), ["multi", "sig", "v1", "v2"])
        print(f"\n{type(self).__name__}: {len(before)} files before, {len(after)} after; {report.summary()}")
        await self.pull_with_skopeo(store, [*kept, "sig"])

    async def pull_with_skopeo(self, store: ImageStore, tags: list[str]) -> None:
        skopeo = require_binary("skopeo", "skopeo")
        base = await serve(self, registry_resource(store))  # type: ignore[arg-type]
        work = tempfile.mkdtemp(prefix="zotpy-gc-pull-")
        env = dict(os.environ, REGISTRY_AUTH_FILE=os.path.join(work, "auth.json"), HOME=work)
        for tag in tags:
            args = ["--insecure-policy", "copy", "--all", "--src-tls-verify=false", "--src-no-creds",
                    f"docker://{base.removeprefix('http://')}/{REPO}:{tag}", f"oci:{work}/{tag}:{tag}"]
            out, err, code = await getProcessOutputAndValue(skopeo, args, env=env, path=work)
            self.assertEqual(code, 0, f"skopeo pull of {tag} failed after GC:\n{tail(err.decode(errors='replace'))}")


class LocalDiskTests(Scenario, unittest.TestCase):
    timeout = 120

    async def make_store(self) -> ImageStore:
        self.root = tempfile.mkdtemp(prefix="zotpy-gc-local-")
        return ImageStore(LocalDriver(self.root, reactor, reactor.getThreadPool()))

    async def leave_interrupted_write(self, store: ImageStore) -> None:
        # What the local driver's atomic write leaves when the process dies mid-blob.
        self.leftover = os.path.join(self.root, REPO, "blobs", "sha256", ".tmp-killed-writer")
        with open(self.leftover, "wb") as stream:
            stream.write(os.urandom(4096))
        # A .tmp- file waits out the API's idle timeout too (a slow writer's): this one is older.
        old = time.time() - IDLE_TIMEOUT_SECONDS - 60
        os.utime(self.leftover, (old, old))

    async def check_interrupted_write_gone(self, store: ImageStore) -> None:
        self.assertFalse(os.path.exists(self.leftover))


class SeaweedTests(Scenario, unittest.TestCase):
    timeout = 120

    async def make_store(self) -> ImageStore:
        pool = reactor.getThreadPool()
        self.driver = S3Driver(shared_server().settings(), reactor, pool)
        self.addCleanup(self.driver.close)
        return ImageStore(self.driver)

    async def leave_interrupted_write(self, store: ImageStore) -> None:
        # An abandoned session past S3's smallest part: its first bytes are in a multipart upload.
        self.large_session = await store.start_upload(REPO)
        await store.append_upload(REPO, self.large_session, io.BytesIO(os.urandom(MIN_PART + 1024)), 0)
        self.assertIn(f"{REPO}/.uploads/{self.large_session}", {p for p, _, _ in await self.driver.multipart_uploads(REPO)})
        # A blob written in parts whose writer died: a multipart upload never completed.
        key = self.driver.prefix + f"{REPO}/blobs/sha256/{'e' * 64}"
        self.upload_id = await self.driver.bucket.create_upload(key)
        other = self.driver.prefix + f"{REPO}/sub/blobs/sha256/{'f' * 64}"  # a nested repository's
        self.other_id = await self.driver.bucket.create_upload(other)
        self.addCleanup(lambda: self.driver.bucket.abort(other, self.other_id))

    async def check_abandoned_session(self, store: ImageStore, session: str, report: GCReport) -> None:
        """Both sessions go: the small one (a plain object under ``.uploads/``, which SeaweedFS
        lists only when asked from inside the folder) and the large one with its multipart upload."""
        self.assertEqual(report.uploads.count, 2)
        for gone in (session, self.large_session):
            self.assertFalse(await has_upload(store, gone))
        pending = {path for path, _, _ in await self.driver.multipart_uploads(REPO)}
        self.assertNotIn(f"{REPO}/.uploads/{self.large_session}", pending)

    async def check_interrupted_write_gone(self, store: ImageStore) -> None:
        pending = {upload_id for _, upload_id, _ in await self.driver.multipart_uploads(REPO)}
        self.assertNotIn(self.upload_id, pending)
        self.assertIn(self.other_id, pending, "GC of team/app aborted team/app/sub's upload")


class CommandTests(unittest.TestCase):
    """``zotpy gc -c FILE [--dry-run] [REPO...]`` in a real process."""

    timeout = 120

    async def run_gc(self, *args: str) -> tuple[int, str]:
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "zotpy", "gc", *args], env=dict(os.environ, PYTHONPATH=REPO_ROOT), path=REPO_ROOT,
        )
        return code, out.decode() + err.decode()

    @async_test
    async def test_dry_run_then_pass(self) -> None:
        root = tempfile.mkdtemp(prefix="zotpy-gc-cli-")
        store = ImageStore(LocalDriver(root, reactor, reactor.getThreadPool()))
        await push_to_store(store, REPO, single("kept"), "v1")
        await push_to_store(store, "other", single("other"), "v1")
        for repo in (REPO, "other"):
            orphan = f"orphan of {repo}".encode()
            await store.put_blob(repo, parse_digest(sha256(orphan)), io.BytesIO(orphan))
        config = os.path.join(root, "..", os.path.basename(root) + ".json")
        with open(config, "w") as stream:
            json.dump({"storage": {"rootDirectory": root, "dedupe": False, "gcDelay": "1s"}}, stream)
        await sleep(1.5)
        blob = os.path.join(root, REPO, "blobs", "sha256", sha256(f"orphan of {REPO}".encode())[7:])

        code, output = await self.run_gc("-c", config, "--dry-run", REPO)
        self.assertEqual(code, 0, output)
        self.assertIn(f"{REPO}\tretention would remove 0 tags and 0 manifests; would remove 1 blobs", output)
        self.assertTrue(os.path.exists(blob))

        code, output = await self.run_gc("-c", config, REPO)
        self.assertEqual(code, 0, output)
        self.assertIn(f"{REPO}\tretention removed 0 tags and 0 manifests; removed 1 blobs", output)
        self.assertIn("total: 1 repositories collected, freed", output)
        self.assertFalse(os.path.exists(blob))
        other = os.path.join(root, "other", "blobs", "sha256", sha256(b"orphan of other")[7:])
        self.assertTrue(os.path.exists(other), "a repository not named was collected")

        code, output = await self.run_gc("-c", config + ".missing")
        self.assertEqual(code, 2, output)
        code, output = await self.run_gc("-c", config, "Not/Valid")
        self.assertEqual(code, 1, output)

    @async_test
    async def test_refused_while_a_daemon_serves_the_root_and_the_other_way_round(self) -> None:
        daemon = ZotpyDaemon(self.mktemp())
        await daemon.start()
        self.addCleanup(daemon.stop)
        code, output = await self.run_gc("-c", daemon.config_path)
        self.assertEqual(code, 1, output)
        self.assertIn(f"refused: a zotpy daemon (pid {daemon.pid}) is serving {daemon.root_dir}", output)
        code, output = await self.run_gc("-c", daemon.config_path, "--dry-run")
        self.assertEqual(code, 0, output)  # removes nothing: runs beside the daemon
        await daemon.stop()
        code, output = await self.run_gc("-c", daemon.config_path)
        self.assertEqual(code, 0, output)

        offline = RootLock(daemon.root_dir, exclusive=True)  # what a pass holds while it collects
        self.addCleanup(offline.release)
        daemon.spawn()
        await daemon.wait_exit()
        self.assertIn(f"an offline zotpy gc (pid {os.getpid()}) is collecting {daemon.root_dir}", daemon.log_text(True))
        offline.release()
        await daemon.start()

    @async_test
    async def test_refused_while_a_daemon_serves_the_bucket(self) -> None:
        storage = seaweed_storage_driver()
        daemon = ZotpyDaemon(self.mktemp(), {"storage": {"storageDriver": storage}})
        await daemon.start()
        self.addCleanup(daemon.stop)
        code, output = await self.run_gc("-c", daemon.config_path)
        self.assertEqual(code, 1, output)
        self.assertIn("refused: zotpy daemons serve this bucket (", output)
        self.assertIn(f"(pid {daemon.pid}), seen ", output)
        await daemon.stop()  # deletes its marker: no need to wait for it to go stale
        code, output = await self.run_gc("-c", daemon.config_path)
        self.assertEqual(code, 0, output)


class HeartbeatTests(unittest.TestCase):
    @async_test
    async def test_a_marker_counts_until_three_beats_were_missed(self) -> None:
        driver = LocalDriver(tempfile.mkdtemp(prefix="zotpy-heartbeat-"), reactor, reactor.getThreadPool())
        self.assertEqual(await live_beats(driver, time.time()), [])
        beat = HeartbeatService(driver, "host:5000", "host:5000 (pid 1)", reactor)
        await beat._write()
        written = (await driver.stat(beat.path)).modified or 0
        (found,) = await live_beats(driver, written + FRESH - 1)
        self.assertEqual((found.name, found.description), ("host:5000", "host:5000 (pid 1)"))
        self.assertEqual(await live_beats(driver, written + FRESH), [])  # killed: stale by now
        await beat.end()
        self.assertEqual(await live_beats(driver, written), [])

