"""Listing tags and repositories (spec: "Listing tags", and the catalog zot serves), paginated with
``n``, ``last`` and a ``Link`` to the next page."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from tests.integration.daemon import HTTPResult
from tests.spec import images
from tests.spec.matrix import SpecBehaviours, variants_of

TAGS = ["a", "B", "c1", "c10", "c2", "latest", "v1.0"]


def next_link(result: HTTPResult) -> str | None:
    """The target of ``Link: <...>; rel="next"``, if any."""
    header = result.header("Link")
    if header is None:
        return None
    match = re.fullmatch(r'\s*<([^>]+)>\s*;\s*rel="?next"?\s*', header)
    assert match, f"not a next link: {header!r}"
    return match.group(1)


class ListingBehaviours(SpecBehaviours):
    async def tagged(self) -> str:
        """A repository with one manifest under every tag of :data:`TAGS`."""
        repository, manifest = await self.pushed_image("tags", tag=TAGS[0])
        for tag in TAGS[1:]:
            await self.put_manifest(repository, tag, manifest)
        return repository

    async def test_tags(self) -> None:
        """The name and every tag, in lexical order."""
        repository = await self.tagged()
        result = await self.expect(200, "GET", self.url(repository, "tags/list"))
        self.assertEqual(result.json(), {"name": repository, "tags": sorted(TAGS)})
        self.assertIsNone(result.header("Link"))

    async def test_tags_paginated(self) -> None:
        """?n= pages of at most n tags, each but the last with a Link to the next; together all tags."""
        repository = await self.tagged()
        url: str | None = self.url(repository, "tags/list?n=3")
        pages = []
        while url is not None:
            result = await self.expect(200, "GET", url)
            page = result.json()["tags"]
            self.assertLessEqual(len(page), 3)
            pages.append(page)
            link = next_link(result)
            url = self.follow(repository, link) if link else None
        self.assertEqual([tag for page in pages for tag in page], sorted(TAGS))
        self.assertEqual(len(pages), 3)

    async def test_tags_after_last(self) -> None:
        repository = await self.tagged()
        result = await self.expect(200, "GET", self.url(repository, "tags/list?n=2&last=c10"))
        self.assertEqual(result.json()["tags"], [t for t in sorted(TAGS) if t > "c10"][:2])

    async def test_catalog(self) -> None:
        """The catalog lists repositories pushed through any path (the cluster fans out)."""
        repositories = []
        for _ in range(3):
            repository, _ = await self.pushed_image("catalog")
            repositories.append(repository)
        result = await self.expect(200, "GET", f"{self.deployment.any_base}/v2/_catalog")
        listed = result.json()["repositories"]
        self.assertEqual(listed, sorted(listed))
        self.assertTrue(set(repositories) <= set(listed), (repositories, listed))

    async def test_catalog_paginated(self) -> None:
        for _ in range(2):
            await self.pushed_image("catalog")
        base = self.deployment.any_base
        everything = (await self.expect(200, "GET", f"{base}/v2/_catalog")).json()["repositories"]
        url: str | None = f"{base}/v2/_catalog?n=2"
        seen = []
        while url is not None:
            result = await self.expect(200, "GET", url)
            page = result.json()["repositories"]
            self.assertLessEqual(len(page), 2)
            seen += page
            link = next_link(result)
            url = urljoin(base + "/", link) if link else None
        # repositories other tests push meanwhile may appear too; none listed before may go missing
        self.assertEqual(seen, sorted(seen))
        self.assertTrue(set(everything) <= set(seen))

    async def test_unknown_repository_tags(self) -> None:
        result = await self.request("GET", self.url(self.fresh_repository("tags"), "tags/list"))
        self.assert_error(result, 404, "NAME_UNKNOWN")

    async def test_digest_pushes_are_not_tags(self) -> None:
        repository, _ = await self.pushed_image("tags", tag="only")
        untagged = images.image(self.algorithm)
        await self.push_manifest(repository, untagged.digest, untagged)
        result = await self.expect(200, "GET", self.url(repository, "tags/list"))
        self.assertEqual(result.json()["tags"], ["only"])


globals().update(variants_of(ListingBehaviours))
