"""Pull (spec: "Pulling manifests", "Pulling blobs", the API version check): by tag and by digest, and HEAD
replies that agree with GET."""

from __future__ import annotations

from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of


class PullBehaviours(SpecBehaviours):
    async def test_api_version_check(self) -> None:
        """GET /v2/ answers 200 and names the API version clients sniff for."""
        result = await self.expect(200, "GET", f"{self.deployment.any_base}/v2/")
        self.assertEqual(result.header("Docker-Distribution-API-Version"), "registry/2.0")

    async def test_manifest_by_tag(self) -> None:
        """GET by tag returns the bytes pushed, their media type and the registry's digest of them."""
        repository, manifest = await self.pushed_image("pull", tag="latest")
        result = await self.expect(200, "GET", self.url(repository, "manifests/latest"), {"Accept": images.OCI_MANIFEST})
        self.assertEqual(result.body, manifest.body)
        self.assertEqual(result.header("Content-Type"), images.OCI_MANIFEST)
        self.assertEqual(result.header("Docker-Content-Digest"), manifest.digest)

    async def test_manifest_by_digest(self) -> None:
        repository, manifest = await self.pushed_image("pull")
        result = await self.expect(200, "GET", self.url(repository, f"manifests/{manifest.digest}"))
        self.assertEqual(result.body, manifest.body)
        self.assertEqual(result.header("Docker-Content-Digest"), manifest.digest)

    async def test_manifest_head_agrees_with_get(self) -> None:
        """HEAD by tag and by digest: 200, no body, and the GET's length, type and digest."""
        repository, manifest = await self.pushed_image("pull")
        for reference in ("v1", manifest.digest):
            got = await self.expect(200, "GET", self.url(repository, f"manifests/{reference}"))
            head = await self.expect(200, "HEAD", self.url(repository, f"manifests/{reference}"))
            self.assertEqual(head.body, b"")
            self.assertEqual(int(head.header("Content-Length") or -1), len(got.body))
            for name in ("Content-Type", "Docker-Content-Digest"):
                self.assertEqual(head.header(name), got.header(name), name)

    async def test_blob(self) -> None:
        """GET of a blob (by the variant's digest algorithm) returns its bytes and digest. (Twisted's
        client checks the body against Content-Length and keeps the header to itself on GET.)"""
        repository, manifest = await self.pushed_image("pull")
        for blob in manifest.blobs:
            result = await self.expect(200, "GET", self.url(repository, f"blobs/{blob.digest}"))
            self.assertEqual(result.body, blob.data)
            self.assertEqual(result.header("Docker-Content-Digest"), blob.digest)

    async def test_blob_head_agrees_with_get(self) -> None:
        repository, manifest = await self.pushed_image("pull")
        layer = manifest.blobs[-1]
        head = await self.expect(200, "HEAD", self.url(repository, f"blobs/{layer.digest}"))
        self.assertEqual(head.body, b"")
        self.assertEqual(int(head.header("Content-Length") or -1), len(layer.data))
        self.assertEqual(head.header("Docker-Content-Digest"), layer.digest)

    async def test_unknown_manifest_head(self) -> None:
        """HEAD of a manifest that is not there: 404 with no body (HEAD has none)."""
        repository, _ = await self.pushed_image("pull")
        result = await self.request("HEAD", self.url(repository, "manifests/nosuchtag"))
        self.assertEqual((result.code, result.body), (404, b""))

    async def test_unknown_blob_head(self) -> None:
        repository, _ = await self.pushed_image("pull")
        missing = images.digest_of(b"never pushed", self.algorithm)
        result = await self.request("HEAD", self.url(repository, f"blobs/{missing}"))
        self.assertEqual((result.code, result.body), (404, b""))


globals().update(variants_of(PullBehaviours))
