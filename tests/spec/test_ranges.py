"""Range requests on blobs (spec: "Pulling blobs", ``Range``): 206 with the slice, 416 past the end."""

from __future__ import annotations

from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of

SIZE = 10_000


class RangeBehaviours(SpecBehaviours):
    async def blob(self) -> tuple[str, bytes, str]:
        repository = self.fresh_repository("ranges")
        data = images.random_bytes(SIZE)
        return repository, data, await self.push_blob(repository, data)

    async def test_slice(self) -> None:
        repository, data, digest = await self.blob()
        result = await self.expect(206, "GET", self.url(repository, f"blobs/{digest}"), {"Range": "bytes=100-1099"})
        self.assertEqual(result.body, data[100:1100])
        self.assertEqual(result.header("Content-Range"), f"bytes 100-1099/{SIZE}")

    async def test_open_ended(self) -> None:
        repository, data, digest = await self.blob()
        result = await self.expect(206, "GET", self.url(repository, f"blobs/{digest}"), {"Range": "bytes=9000-"})
        self.assertEqual(result.body, data[9000:])
        self.assertEqual(result.header("Content-Range"), f"bytes 9000-{SIZE - 1}/{SIZE}")

    async def test_end_past_size_is_clipped(self) -> None:
        repository, data, digest = await self.blob()
        result = await self.expect(206, "GET", self.url(repository, f"blobs/{digest}"), {"Range": f"bytes=9990-{SIZE + 500}"})
        self.assertEqual(result.body, data[9990:])

    async def test_unsatisfiable(self) -> None:
        """A range that starts past the end: 416 with ``Content-Range: bytes */<size>``."""
        repository, _, digest = await self.blob()
        result = await self.request("GET", self.url(repository, f"blobs/{digest}"), {"Range": f"bytes={SIZE + 1}-"})
        self.assertEqual(result.code, 416)
        self.assertEqual(result.header("Content-Range"), f"bytes */{SIZE}")


globals().update(variants_of(RangeBehaviours))
