"""Pushing blobs (spec: "Pushing blobs"): monolithic in two requests or one, chunked in order, out of
order (416), with the last chunk in the closing PUT, and streamed."""

from __future__ import annotations

from tests.integration.daemon import HTTPResult
from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of

OCTETS = {"Content-Type": "application/octet-stream"}


class PushBehaviours(SpecBehaviours):
    async def start(self, repository: str) -> str:
        """POST a session: 202 with a Location; that location as a URL."""
        result = await self.expect(202, "POST", self.url(repository, "blobs/uploads/"))
        location = result.header("Location")
        self.assertTrue(location)
        return self.follow(repository, location or "")

    async def chunk(self, repository: str, location: str, data: bytes, start: int, code: int = 202) -> HTTPResult:
        headers = {**OCTETS, "Content-Range": f"{start}-{start + len(data) - 1}"}  # Content-Length: set by the client
        return await self.expect(code, "PATCH", location, headers, data)

    async def close(self, repository: str, location: str, digest: str, data: bytes | None = None) -> HTTPResult:
        """The closing PUT: 201, the blob's Location and digest."""
        separator = "&" if "?" in location else "?"
        result = await self.expect(201, "PUT", f"{location}{separator}digest={digest}", OCTETS, data)
        self.assertTrue(result.header("Location"))
        self.assertEqual(result.header("Docker-Content-Digest"), digest)
        return result

    async def assert_blob(self, repository: str, data: bytes) -> None:
        digest = images.digest_of(data, self.algorithm)
        result = await self.expect(200, "GET", self.url(repository, f"blobs/{digest}"))
        self.assertEqual(result.body, data)

    async def test_monolithic_post_then_put(self) -> None:
        repository = self.fresh_repository("push")
        data = images.random_bytes(10_000)
        location = await self.start(repository)
        await self.close(repository, location, images.digest_of(data, self.algorithm), data)
        await self.assert_blob(repository, data)

    async def test_monolithic_single_post(self) -> None:
        """POST ?digest= with the whole blob as body: 201 and a Location (the spec's one-request push)."""
        repository = self.fresh_repository("push")
        data = images.random_bytes(7000)
        digest = images.digest_of(data, self.algorithm)
        result = await self.expect(201, "POST", self.url(repository, f"blobs/uploads/?digest={digest}"), OCTETS, data)
        self.assertTrue(result.header("Location"))
        await self.assert_blob(repository, data)

    async def test_chunked_in_order(self) -> None:
        """Each PATCH: 202, a Location, and Range 0-<last byte received>."""
        repository = self.fresh_repository("push")
        data = images.random_bytes(30_000)
        location = await self.start(repository)
        for start in range(0, len(data), 10_000):
            result = await self.chunk(repository, location, data[start : start + 10_000], start)
            self.assertEqual(result.header("Range"), f"0-{start + 9_999}")
            location = self.follow(repository, result.header("Location") or "")
        await self.close(repository, location, images.digest_of(data, self.algorithm))
        await self.assert_blob(repository, data)

    async def test_chunk_out_of_order(self) -> None:
        """A chunk that does not start where the upload ends: 416, and the upload goes on from where it was."""
        repository = self.fresh_repository("push")
        data = images.random_bytes(2000)
        location = await self.start(repository)
        result = await self.chunk(repository, location, data[:1000], 0)
        location = self.follow(repository, result.header("Location") or "")
        await self.chunk(repository, location, data[1000:], 1500, code=416)
        result = await self.chunk(repository, location, data[1000:], 1000)
        await self.close(repository, self.follow(repository, result.header("Location") or ""), images.digest_of(data, self.algorithm))
        await self.assert_blob(repository, data)

    async def test_last_chunk_in_put(self) -> None:
        repository = self.fresh_repository("push")
        data = images.random_bytes(5000)
        location = await self.start(repository)
        result = await self.chunk(repository, location, data[:3000], 0)
        await self.close(
            repository, self.follow(repository, result.header("Location") or ""),
            images.digest_of(data, self.algorithm), data[3000:],
        )
        await self.assert_blob(repository, data)

    async def test_streamed(self) -> None:
        """PATCH without Content-Range (a stream of unknown length), then a PUT with no body."""
        repository = self.fresh_repository("push")
        data = images.random_bytes(20_000)
        location = await self.start(repository)
        result = await self.expect(202, "PATCH", location, OCTETS, data)
        self.assertEqual(result.header("Range"), f"0-{len(data) - 1}")
        await self.close(repository, self.follow(repository, result.header("Location") or ""), images.digest_of(data, self.algorithm))
        await self.assert_blob(repository, data)

    async def test_wrong_digest_refused(self) -> None:
        """A closing PUT whose digest the content does not have: 400 DIGEST_INVALID, and no such blob."""
        repository = self.fresh_repository("push")
        data = images.random_bytes(1000)
        claimed = images.digest_of(b"something else", self.algorithm)
        location = await self.start(repository)
        result = await self.request("PUT", f"{location}{'&' if '?' in location else '?'}digest={claimed}", OCTETS, data)
        self.assert_error(result, 400, "DIGEST_INVALID")
        missing = await self.request("HEAD", self.url(repository, f"blobs/{claimed}"))
        self.assertEqual(missing.code, 404)

    async def test_push_existing_blob_again(self) -> None:
        repository = self.fresh_repository("push")
        data = images.random_bytes(1000)
        await self.push_blob(repository, data)
        await self.push_blob(repository, data)
        await self.assert_blob(repository, data)


globals().update(variants_of(PushBehaviours))
