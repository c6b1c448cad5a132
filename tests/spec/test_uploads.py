"""Upload sessions (spec: upload status, cancel, cross-repository mount): what a session answers about
itself, that a cancelled or unknown one is gone, and mounting a blob from another repository (or a plain
session when the registry cannot)."""

from __future__ import annotations

import uuid

from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of


class UploadBehaviours(SpecBehaviours):
    async def start(self, repository: str) -> str:
        result = await self.expect(202, "POST", self.url(repository, "blobs/uploads/"))
        return self.follow(repository, result.header("Location") or "")

    async def test_status(self) -> None:
        """GET on a session: 204, its Location, and Range 0-<last byte received>."""
        repository = self.fresh_repository("upload")
        location = await self.start(repository)
        result = await self.expect(
            202, "PATCH", location, {"Content-Range": "0-1233", "Content-Type": "application/octet-stream"},
            images.random_bytes(1234),
        )
        location = self.follow(repository, result.header("Location") or "")
        status = await self.expect(204, "GET", location)
        self.assertEqual(status.header("Range"), "0-1233")
        self.assertTrue(status.header("Location"))

    async def test_cancel(self) -> None:
        """DELETE on a session: 204; afterwards the session is unknown."""
        repository = self.fresh_repository("upload")
        location = await self.start(repository)
        await self.expect(204, "DELETE", location)
        self.assert_error(await self.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")

    async def test_unknown_session(self) -> None:
        """Status, chunk and close of a session that never existed: 404 BLOB_UPLOAD_UNKNOWN."""
        repository, _ = await self.pushed_image("upload")
        location = self.url(repository, f"blobs/uploads/{uuid.uuid4()}")
        digest = images.digest_of(b"x", self.algorithm)
        for method, url, data in (
            ("GET", location, None),
            ("PATCH", location, b"x"),
            ("PUT", f"{location}?digest={digest}", b"x"),
            ("DELETE", location, None),
        ):
            self.assert_error(await self.request(method, url, data=data), 404, "BLOB_UPLOAD_UNKNOWN")

    async def test_mount(self) -> None:
        """POST ?mount=&from=: 201 with the blob's Location and digest (or, where this path cannot
        mount, a 202 session the blob can be pushed through); either way the blob ends up there."""
        source, manifest = await self.pushed_image("mount-from")
        target = self.fresh_repository("mount-to")
        layer = manifest.blobs[-1]
        result = await self.request("POST", self.url(target, f"blobs/uploads/?mount={layer.digest}&from={source}"))
        if self.variant.path == "direct":
            self.assertEqual(result.code, 201, result.body)
        if result.code == 201:
            self.assertEqual(result.header("Docker-Content-Digest"), layer.digest)
            self.assertTrue(result.header("Location"))
        else:
            self.assertEqual(result.code, 202, result.body)
            location = self.follow(target, result.header("Location") or "")
            await self.expect(201, "PUT", f"{location}?digest={layer.digest}", data=layer.data)
        got = await self.expect(200, "GET", self.url(target, f"blobs/{layer.digest}"))
        self.assertEqual(got.body, layer.data)

    async def test_mount_fallback(self) -> None:
        """A mount of a blob the source does not have: 202 and an ordinary session that works."""
        source, _ = await self.pushed_image("mount-from")
        target = self.fresh_repository("mount-to")
        data = images.random_bytes(900)
        digest = images.digest_of(data, self.algorithm)
        result = await self.expect(202, "POST", self.url(target, f"blobs/uploads/?mount={digest}&from={source}"))
        location = self.follow(target, result.header("Location") or "")
        await self.expect(201, "PUT", f"{location}?digest={digest}", data=data)
        got = await self.expect(200, "GET", self.url(target, f"blobs/{digest}"))
        self.assertEqual(got.body, data)


globals().update(variants_of(UploadBehaviours))
