"""The web UI in a real browser: Debian's chromium driven by Playwright (nothing is downloaded),
against a registry with access control holding tests/searchimages.py's images. Screenshots of each
page are saved in the test's temporary directory."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor, task, threads
from twisted.trial import unittest

from tests import searchimages as fixture
from tests.support import http_client, serve
from tests.test_api import async_test
from tests.test_auth import basic, htpasswd_file
from tests.test_search import StorePusher
from zotpy.api.site import registry_resource
from zotpy.auth.factory import protected
from zotpy.config import parse_config
from zotpy.meta.details import DetailsReader
from zotpy.meta.keeper import MetaKeeper
from zotpy.search.engine import SearchEngine
from zotpy.search.resource import SearchResource
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver
from zotpy.ui.resource import UIResource

CHROMIUM = "/usr/bin/chromium"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
WAIT_MS = 20_000


def drive(base: str, shots: str) -> dict[str, Any]:
    """The user's path through the UI (runs in a thread: Playwright's sync API blocks)."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(
                http_credentials={"username": "alice", "password": USERS["alice"]}, viewport={"width": 1100, "height": 760}
            )
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base + "/")
            page.wait_for_selector("#repos")
            seen["repos"] = page.locator("#repos a.repo-link").all_text_contents()
            page.screenshot(path=os.path.join(shots, "home.png"))

            page.fill("#search", "app")
            page.press("#search", "Enter")
            page.wait_for_selector("h1:has-text('matching')")
            seen["found"] = page.locator("#repos a.repo-link").all_text_contents()
            page.click("#repos a.repo-link:text-is('team/app')")
            page.wait_for_selector("#tags")
            seen["repo"] = page.text_content("#repo-name")
            seen["tags"] = page.locator("#tags a.image-link").all_text_contents()
            seen["pull"] = page.text_content("#pull-command")
            seen["facts"] = page.locator("dl.facts dt").all_text_contents()
            page.screenshot(path=os.path.join(shots, "repository.png"))

            page.click("#tags a.image-link:text-is('v1')")
            page.wait_for_selector("#layers-0")
            seen["image"] = page.text_content("#image-name")
            seen["layers"] = page.locator("#layers-0 tbody tr td:nth-child(2)").all_text_contents()
            seen["history"] = page.locator("#history-0 tbody tr").count()
            seen["referrers"] = sorted(page.locator("#referrers-0 tbody tr td:first-child").all_text_contents())
            page.screenshot(path=os.path.join(shots, "image.png"), full_page=True)

            page.goto(base + "/#/image/multi/latest")
            page.wait_for_selector("#layers-1")
            seen["multi"] = page.locator("h2.manifest").all_text_contents()
            seen["errors"] = errors
            context.close()

            other = browser.new_context(http_credentials={"username": "bob", "password": USERS["bob"]})
            page = other.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(base + "/")
            page.wait_for_selector("#repos")
            seen["bob"] = page.locator("#repos a.repo-link").all_text_contents()
            page.goto(base + "/#/repo/team%2Fapp")
            page.wait_for_selector("#error")
            seen["bob_error"] = page.text_content("#error")
            other.close()
        finally:
            browser.close()
    return seen


class BrowserTests(unittest.TestCase):
    timeout = 180

    @async_test
    async def test_browse_search_repository_image(self) -> None:
        if not os.path.exists(CHROMIUM):
            self.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/debian-packages lists it)")
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        clock = task.Clock()
        clock.advance(1_700_000_000)
        driver = LocalDriver(root, reactor, reactor.getThreadPool())
        keeper = MetaKeeper(driver, clock)
        store = ImageStore(driver, events=keeper)

        async def tick() -> None:
            clock.advance(3600)

        images = await fixture.push_all(StorePusher(store), tick)
        config = parse_config({
            "storage": {"rootDirectory": root},
            "http": {
                "auth": {"htpasswd": {"path": htpasswd_file(root, USERS)}},
                "accessControl": {"repositories": {
                    "**": {"policies": [{"users": ["alice"], "actions": ["read"]}]},
                    "library/**": {"defaultPolicy": ["read"]},
                }},
            },
            "extensions": {"search": {"enable": True}, "ui": {"enable": True}},
        })
        engine = SearchEngine(store.repositories, keeper.get, DetailsReader(driver))
        stops: list[Any] = []
        site = protected(
            config, UIResource(SearchResource(registry_resource(store), engine)), reactor, reactor.getThreadPool(),
            on_stop=stops.append,
        )
        for stop in stops:
            self.addCleanup(stop)
        base = await serve(self, site)

        # Without credentials: the access layer's challenge, which makes a browser ask for them.
        http = http_client(self)
        response = await http.get(base + "/")
        await response.content()
        self.assertEqual(response.code, 401)
        self.assertIn("Basic", response.headers.getRawHeaders("WWW-Authenticate")[0])
        response = await http.get(base + "/", headers={"Authorization": [basic("alice", USERS["alice"])]})
        self.assertEqual(response.code, 200)
        self.assertIn(b'<script src="/ui/app.js">', await response.content())
        self.assertIn("script-src 'self'", response.headers.getRawHeaders("Content-Security-Policy")[0])

        shots = os.path.abspath(self.mktemp())
        os.makedirs(shots)
        seen = await threads.deferToThread(drive, base, shots)
        self.assertEqual(seen["errors"], [])
        self.assertEqual(seen["repos"], ["docs", "library/alpine", "multi", "team/app"])
        self.assertEqual(seen["found"], ["team/app"])
        self.assertEqual((seen["repo"], seen["tags"]), ("team/app", ["v1", "v2"]))
        self.assertEqual(seen["facts"], ["Size", "Last push", "Downloads", "Vendors", "Platforms"])
        self.assertEqual(seen["pull"], f"docker pull {base.split('//')[1]}/team/app:v2")
        self.assertEqual(seen["image"], "team/app:v1")
        self.assertEqual(seen["layers"], [layer for layer, _ in images.app_v1.layers])
        self.assertEqual(seen["history"], 4)
        self.assertEqual(seen["referrers"], sorted([fixture.SBOM_TYPE, fixture.SIGNATURE_TYPE]))
        self.assertEqual(seen["multi"], ["Manifest linux/amd64", "Manifest linux/arm64"])
        self.assertEqual(seen["bob"], ["library/alpine"])
        self.assertIn("repository not found: team/app", seen["bob_error"])
        for name in ("home.png", "repository.png", "image.png"):
            self.assertGreater(os.path.getsize(os.path.join(shots, name)), 5_000, name)
