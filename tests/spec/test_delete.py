"""Content management (spec: "Deleting tags", "Deleting manifests", "Deleting blobs")."""

from __future__ import annotations

from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of


class DeleteBehaviours(SpecBehaviours):
    async def test_tag(self) -> None:
        """DELETE by tag: 202; the tag is gone, the manifest stays readable by digest."""
        repository, manifest = await self.pushed_image("delete", tag="gone")
        await self.put_manifest(repository, "kept", manifest)
        await self.expect(202, "DELETE", self.url(repository, "manifests/gone"))
        self.assert_error(await self.request("GET", self.url(repository, "manifests/gone")), 404, "MANIFEST_UNKNOWN")
        await self.expect(200, "GET", self.url(repository, f"manifests/{manifest.digest}"))
        tags = await self.expect(200, "GET", self.url(repository, "tags/list"))
        self.assertEqual(tags.json()["tags"], ["kept"])

    async def test_manifest(self) -> None:
        """DELETE by digest: 202; the manifest and its tags are gone."""
        repository, manifest = await self.pushed_image("delete", tag="v1")
        other, _ = await self.pushed_image("delete")
        await self.expect(202, "DELETE", self.url(repository, f"manifests/{manifest.digest}"))
        for reference in (manifest.digest, "v1"):
            result = await self.request("GET", self.url(repository, f"manifests/{reference}"))
            self.assert_error(result, 404, "MANIFEST_UNKNOWN")
        await self.expect(200, "GET", self.url(other, "manifests/v1"))

    async def test_blob(self) -> None:
        """DELETE of a blob: 202, then 404 BLOB_UNKNOWN."""
        repository = self.fresh_repository("delete")
        data = images.random_bytes(800)
        digest = await self.push_blob(repository, data)
        await self.expect(202, "DELETE", self.url(repository, f"blobs/{digest}"))
        self.assert_error(await self.request("GET", self.url(repository, f"blobs/{digest}")), 404, "BLOB_UNKNOWN")

    async def test_unknown_manifest(self) -> None:
        repository, _ = await self.pushed_image("delete")
        missing = images.digest_of(b"no manifest", "sha256")
        result = await self.request("DELETE", self.url(repository, f"manifests/{missing}"))
        self.assert_error(result, 404, "MANIFEST_UNKNOWN")

    async def test_unknown_blob(self) -> None:
        repository, _ = await self.pushed_image("delete")
        missing = images.digest_of(b"no blob", self.algorithm)
        self.assert_error(await self.request("DELETE", self.url(repository, f"blobs/{missing}")), 404, "BLOB_UNKNOWN")


globals().update(variants_of(DeleteBehaviours))
