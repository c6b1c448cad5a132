"""The error codes that need access control or a rate limit on (spec: "Error Codes": UNAUTHORIZED,
DENIED, TOOMANYREQUESTS), on variants that carry zot's ``http.auth``, ``http.accessControl`` and
``http.ratelimit`` in their config and a writer's credentials in their headers: the matrix's hook for
running behaviours with auth on (:attr:`tests.spec.deployments.Variant.config`/``headers``)."""

from __future__ import annotations

import base64
import os

import attr

from tests.integration.daemon import HTTPResult
from tests.spec import images
from tests.spec.deployments import VARIANTS
from tests.spec.matrix import SpecBehaviours, variants_of

HTPASSWD = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "spec-htpasswd")
WRITER = ("writer", "spec-writer-password")
READER = ("reader", "spec-reader-password")
LIMITED_METHOD = "OPTIONS"  # limited to 1 request per second; no other behaviour sends it


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


ACCESS_CONFIG = {
    "http": {
        "auth": {"htpasswd": {"path": HTPASSWD}},
        "accessControl": {
            "repositories": {
                "spec/**": {
                    "policies": [
                        {"users": [WRITER[0]], "actions": ["read", "create", "update", "delete"]},
                        {"users": [READER[0]], "actions": ["read"]},
                    ],
                    "defaultPolicy": [],
                }
            }
        },
        "ratelimit": {"methods": [{"method": LIMITED_METHOD, "rate": 1}]},
    }
}

#: The digest algorithm plays no part in access: one per storage and path.
ACCESS_VARIANTS = tuple(
    attr.evolve(v, config=ACCESS_CONFIG, headers={"Authorization": basic(*WRITER)}, label="Access")
    for v in VARIANTS
    if v.algorithm == "sha256"
)


class AccessBehaviours(SpecBehaviours):
    async def as_(
        self, credentials: tuple[str, str] | None, method: str, url: str, data: bytes | None = None
    ) -> HTTPResult:
        """A request with these credentials (or none) instead of the variant's."""
        headers = {} if credentials is None else {"Authorization": basic(*credentials)}
        return await self.client.request(method, url, headers, data)

    async def test_unauthorized(self) -> None:
        """No credentials, or wrong ones: 401 UNAUTHORIZED and a Basic challenge."""
        repository, _ = await self.pushed_image("access")
        for credentials in (None, (WRITER[0], "not-the-password")):
            for url in (f"{self.deployment.any_base}/v2/", self.url(repository, "tags/list")):
                result = await self.as_(credentials, "GET", url)
                self.assert_error(result, 401, "UNAUTHORIZED")
                self.assertIn("Basic", result.header("WWW-Authenticate") or "")

    async def test_denied(self) -> None:
        """A user the policy lets read but not push: reads, and gets 403 DENIED on a push."""
        repository, manifest = await self.pushed_image("access")
        got = await self.as_(READER, "GET", self.url(repository, "manifests/v1"))
        self.assertEqual((got.code, got.body), (200, manifest.body))
        self.assert_error(await self.as_(READER, "POST", self.url(repository, "blobs/uploads/")), 403, "DENIED")
        other = images.image(self.algorithm)
        pushed = await self.as_(READER, "PUT", self.url(repository, "manifests/v2"), other.body)
        self.assert_error(pushed, 403, "DENIED")

    async def test_too_many_requests(self) -> None:
        """Over ``http.ratelimit``: 429 TOOMANYREQUESTS with ``Retry-After``."""
        url = f"{self.deployment.any_base}/v2/"
        results = [await self.request(LIMITED_METHOD, url) for _ in range(3)]
        limited = [r for r in results if r.code == 429]
        self.assertTrue(limited, [r.code for r in results])
        self.assert_error(limited[0], 429, "TOOMANYREQUESTS")
        self.assertTrue(limited[0].header("Retry-After"))


globals().update(variants_of(AccessBehaviours, ACCESS_VARIANTS))
