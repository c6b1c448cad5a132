"""The spec matrix's TestCase base and the generator of one TestCase per variant.

A behaviour module writes ``class PullBehaviours(SpecBehaviours)`` with ``test_*`` methods that talk to
the registry through the helpers below (which route each request to the variant's daemon or non-owner
replica and add the variant's headers), then ends with ``globals().update(variants_of(PullBehaviours))``.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from urllib.parse import urljoin

from twisted.trial import unittest

from tests.integration.cluster import RegistryClient
from tests.integration.daemon import HTTPResult
from tests.spec import images, rawhttp
from tests.spec.deployments import VARIANTS, Deployment, Variant, deployment


class SpecBehaviours(unittest.TestCase if TYPE_CHECKING else object):
    """Behaviours of the spec, written once; :func:`variants_of` makes them run per variant (a mixin, not
    a TestCase itself, so trial does not run the behaviours without a variant)."""

    variant: Variant  # set on each generated subclass
    timeout = 120  # the first test of a deployment waits for its daemons (and SeaweedFS) to start

    async def setUp(self) -> None:
        self.deployment: Deployment = deployment(self.variant)
        self.algorithm = self.variant.algorithm
        self.client = RegistryClient()
        self.addCleanup(self.client.close)

    # -- naming and addressing -----------------------------------------------------------------

    def fresh_repository(self, area: str = "spec") -> str:
        """A repository no other test uses (the daemons are shared by the whole run)."""
        return f"spec/{area}-{uuid.uuid4().hex[:12]}"

    def url(self, repository: str, path: str) -> str:
        """``/v2/<repository>/<path>`` on the daemon or replica the variant reaches ``repository`` by."""
        return f"{self.deployment.base_for(repository)}/v2/{repository}/{path}"

    def follow(self, repository: str, location: str) -> str:
        """A ``Location`` (relative, as zotpy sends it, or absolute) as a URL on the variant's path."""
        return urljoin(self.deployment.base_for(repository) + "/", location)

    # -- requests ---------------------------------------------------------------------------

    def headers_for(self, url: str, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variant's headers (and credentials) for a request to ``url``, then ``headers``."""
        credentials = self.variant.credentials
        dynamic = credentials.headers(url) if credentials is not None else {}
        return {**self.variant.headers, **dynamic, **(headers or {})}

    async def request(
        self, method: str, url: str, headers: Mapping[str, str] | None = None, data: bytes | None = None
    ) -> HTTPResult:
        """One request with the variant's headers; with bearer credentials, a 401 challenge gets a
        token for its scope and the request is sent once more, as a Docker client does."""
        result = await self.client.request(method, url, self.headers_for(url, headers), data)
        credentials = self.variant.credentials
        if result.code == 401 and credentials is not None:
            if credentials.challenged(url, result.header("WWW-Authenticate") or ""):
                result = await self.client.request(method, url, self.headers_for(url, headers), data)
        return result

    async def expect(
        self,
        code: int,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> HTTPResult:
        result = await self.request(method, url, headers, data)
        if result.code != code:
            self.fail(f"{method} {url}: expected {code}, got {result.code} {result.headers} {result.body[:1500]!r}")
        return result

    def assert_error(self, result: HTTPResult, status: int, code: str) -> dict[str, Any]:
        """``result`` is the spec's error reply: ``status``, JSON ``{"errors": [{code, message, detail?}]}``
        naming ``code``; returns that error."""
        self.assertEqual(result.code, status, result.body[:500])
        self.assertIn("application/json", result.header("Content-Type") or "")
        errors = json.loads(result.body)["errors"]
        self.assertIsInstance(errors, list)
        matching = [e for e in errors if e.get("code") == code]
        self.assertTrue(matching, f"no {code} in {errors}")
        self.assertIsInstance(matching[0].get("message", ""), str)
        return matching[0]

    # -- pushing ----------------------------------------------------------------------------

    async def push_blob(self, repository: str, blob: images.Blob | bytes) -> str:
        """POST then PUT the whole blob (the variant's digest algorithm); its digest."""
        data = blob.data if isinstance(blob, images.Blob) else blob
        digest = images.digest_of(data, self.algorithm)
        started = await self.expect(202, "POST", self.url(repository, "blobs/uploads/"))
        location = self.follow(repository, started.header("Location") or "")
        separator = "&" if "?" in location else "?"
        await self.expect(
            201,
            "PUT",
            f"{location}{separator}digest={digest}",
            {"Content-Type": "application/octet-stream"},
            data,
        )
        return digest

    async def push_manifest(
        self, repository: str, reference: str, manifest: images.Manifest, code: int = 201
    ) -> HTTPResult:
        """PUT ``manifest`` (its blobs and children first) as ``reference``."""
        for blob in manifest.blobs:
            await self.push_blob(repository, blob)
        for child in manifest.children:
            await self.push_manifest(repository, child.digest, child)
        return await self.put_manifest(repository, reference, manifest, code)

    async def put_manifest(
        self, repository: str, reference: str, manifest: images.Manifest, code: int | None = 201
    ) -> HTTPResult:
        """Only the manifest PUT; ``code=None`` returns whatever the registry answered."""
        result = await self.request(
            "PUT", self.url(repository, f"manifests/{reference}"), {"Content-Type": manifest.media_type}, manifest.body
        )
        if code is not None and result.code != code:
            self.fail(f"PUT manifest {reference}: expected {code}, got {result.code} {result.body[:1500]!r}")
        return result

    async def put_refused_manifest(self, repository: str, reference: str, body: bytes) -> HTTPResult:
        """PUT a manifest the registry answers before reading it (over the size limit), over a
        connection of its own that the test sees closed (:mod:`tests.spec.rawhttp`). Sent once: with
        bearer credentials, the repository's token comes from the requests that pushed to it."""
        url = self.url(repository, f"manifests/{reference}")
        return await rawhttp.exchange("PUT", url, self.headers_for(url, {"Content-Type": images.OCI_MANIFEST}), body)

    async def pushed_image(self, area: str, tag: str = "v1", **fields: Any) -> tuple[str, images.Manifest]:
        """A fresh repository with one image tagged ``tag``."""
        repository = self.fresh_repository(area)
        manifest = images.image(self.algorithm, **fields)
        await self.push_manifest(repository, tag, manifest)
        return repository, manifest


def variants_of(
    behaviours: type[SpecBehaviours], variants: Iterable[Variant] = VARIANTS
) -> dict[str, type[unittest.TestCase]]:
    """One TestCase subclass of ``behaviours`` per variant (by default the matrix), by class name
    (``PullBehaviours`` -> ``PullSha256LocalDirect``, ...), for a module's globals. Another module can
    run the same behaviours on other variants (e.g. with auth on) by passing its own ``variants``."""
    stem = behaviours.__name__.removesuffix("Behaviours")
    cases: dict[str, type[unittest.TestCase]] = {}
    for variant in variants:
        name = f"{stem}{variant.name}"
        cases[name] = type(name, (behaviours, unittest.TestCase), {"variant": variant, "__module__": behaviours.__module__})
    return cases
