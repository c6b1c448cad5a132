"""Dedupe across a restart of the real daemon: the blobs stored before it are linked after it."""

from __future__ import annotations

import os

from twisted.trial import unittest

from tests.driversuite import async_test
from tests.integration.daemon import ZotpyDaemon, http_request, sleep
from tests.integration.test_gc_crash import push_image


class RestartTests(unittest.TestCase):
    timeout = 60

    @async_test
    async def test_a_check_after_a_restart_links_a_blob_stored_before(self) -> None:
        daemon = ZotpyDaemon(self.mktemp(), {"storage": {"dedupe": True}})
        await daemon.start()
        self.addCleanup(daemon.stop)
        image = await push_image(daemon.base_url, "team/base", "v1", "layer")
        layer = max(image, key=lambda digest: len(image[digest]))
        await daemon.restart()
        for _ in range(100):
            if "dedupe: learnt" in daemon.log_text(since_last_spawn=True):
                break
            await sleep(0.1)
        else:
            self.fail(f"the restarted daemon never learnt the layout:\n{daemon.describe()}")
        reply = await http_request("HEAD", f"{daemon.base_url}/v2/team/new/blobs/{layer}")
        self.assertEqual(reply.code, 200, "the check did not find the blob stored before the restart")
        stored = [os.stat(os.path.join(daemon.repo_dir(repo), "blobs", "sha256", layer[7:])) for repo in ("team/base", "team/new")]
        self.assertEqual(stored[0].st_ino, stored[1].st_ino)
        self.assertEqual(stored[0].st_nlink, 2)
