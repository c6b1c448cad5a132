"""The search API across 3 real replicas, with per-instance storage and with shared S3 (SeaweedFS):
every replica answers global queries with the same complete, exactly paginated set, fields about
one repository come from its owner, and a member down is an error naming it."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial import unittest

from tests import searchimages as fixture
from tests.integration.cluster import RegistryClient, ZotpyCluster, seaweed_storage_driver, small_image
from tests.test_api import async_test

SEARCH = {"extensions": {"search": {"enable": True}, "ui": {"enable": True}}}


class ClusterPusher:
    """Pushes through a replica that does not own the repository (so every push is forwarded)."""

    def __init__(self, cluster: ZotpyCluster, client: RegistryClient) -> None:
        self.cluster, self.client = cluster, client

    def base(self, repo: str) -> str:
        return self.cluster.url(self.cluster.non_owner(repo))

    async def blob(self, repo: str, data: bytes) -> None:
        await self.client.push_blob(self.base(repo), repo, data)

    async def manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> None:
        url = f"{self.base(repo)}/v2/{repo}/manifests/{reference}"
        await self.client.expect(201, "PUT", url, headers={"Content-Type": media_type}, data=body)


class ClusterSearchTests(unittest.TestCase):
    timeout = 240

    async def start(self, **kwargs: Any) -> None:
        self.cluster = ZotpyCluster(self.mktemp(), extra=SEARCH, **kwargs)
        await self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.client = RegistryClient()
        self.addCleanup(self.client.close)

        async def tick() -> None:
            pass

        self.images = await fixture.push_all(ClusterPusher(self.cluster, self.client), tick)
        self.padding = self.cluster.spread_names("pad", 2)
        for name in self.padding:
            await self.client.push_image(self.cluster.url(self.cluster.non_owner(name)), name, small_image(name, (64,)), "v1")
        self.names = sorted(["docs", "library/alpine", "multi", "team/app", *self.padding])
        owners = {self.cluster.owner(name) for name in self.names}
        self.assertEqual(owners, {0, 1, 2}, "the repositories must be spread over every member")

    async def query(self, index: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        result = await self.client.expect(
            200, "POST", self.cluster.url(index) + "/v2/_zot/ext/search",
            headers={"Content-Type": "application/json"}, data=json.dumps({"query": query, "variables": variables}).encode(),
        )
        return json.loads(result.body)

    async def data(self, index: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        document = await self.query(index, query, variables)
        self.assertNotIn("errors", document, (index, query))
        return document["data"]

    async def check_cluster(self) -> None:
        page = await self.client.expect(200, "GET", self.cluster.url(2) + "/")  # the UI, on every replica
        self.assertIn(b"/ui/app.js", page.body)
        repos = 'query($p: PageInput) { GlobalSearch(query: "", requestedPage: $p) { Page { TotalCount ItemCount } Repos { Name LastUpdated } } }'
        newest = "query($p: PageInput) { RepoListWithNewestImage(requestedPage: $p) { Page { TotalCount ItemCount } Results { Name NewestImage { Tag } } } }"
        full_by_time = None
        for index in range(3):
            # Pages of 4 in name order, from every replica: together exactly every repository, once.
            seen = []
            for offset in range(0, len(self.names) + 4, 4):
                page = (await self.data(index, repos, {"p": {"offset": offset, "limit": 4, "sortBy": "ALPHABETIC_ASC"}}))["GlobalSearch"]
                self.assertEqual(page["Page"], {"TotalCount": len(self.names), "ItemCount": len(page["Repos"])})
                seen += [repo["Name"] for repo in page["Repos"]]
            self.assertEqual(seen, self.names, f"replica {index}")
            # Newest first, whole and in pages of 3 (ties in time broken by name on every member alike).
            whole = (await self.data(index, newest, {"p": {"sortBy": "UPDATE_TIME"}}))["RepoListWithNewestImage"]
            self.assertEqual(whole["Page"], {"TotalCount": len(self.names), "ItemCount": len(self.names)})
            paged = []
            for offset in range(0, len(self.names), 3):
                paged += (await self.data(index, newest, {"p": {"offset": offset, "limit": 3, "sortBy": "UPDATE_TIME"}}))["RepoListWithNewestImage"]["Results"]
            self.assertEqual(paged, whole["Results"], f"replica {index}")
            full_by_time = full_by_time or whole["Results"]
            self.assertEqual(whole["Results"], full_by_time, f"replica {index} disagrees")
            self.assertEqual(
                {r["Name"]: r["NewestImage"]["Tag"] for r in whole["Results"]}["team/app"], "v2"
            )
            found = (await self.data(index, '{ GlobalSearch(query: "pad-") { Page { TotalCount } Repos { Name } } }'))["GlobalSearch"]
            self.assertEqual(sorted(r["Name"] for r in found["Repos"]), sorted(self.padding))
        # Fields about one repository: asked of its owner, from a replica that does not own it.
        for _ in range(2):
            await self.client.expect(200, "GET", f"{self.cluster.url(self.cluster.non_owner('team/app'))}/v2/team/app/manifests/v1")
        via = self.cluster.non_owner("team/app", 2)
        image = (await self.data(via, '{ Image(image: "team/app:v1") { Digest DownloadCount IsSigned Referrers { ArtifactType } Manifests { Platform { Arch } } } }'))["Image"]
        self.assertEqual(sorted(r["ArtifactType"] for r in image.pop("Referrers")), sorted([fixture.SBOM_TYPE, fixture.SIGNATURE_TYPE]))
        self.assertEqual(
            image,
            {"Digest": self.images.app_v1.digest, "DownloadCount": 2, "IsSigned": True, "Manifests": [{"Platform": {"Arch": "amd64"}}]},
        )
        multi = (await self.data(self.cluster.non_owner("multi"), '{ ExpandedRepoInfo(repo: "multi") { Images { Tag Manifests { Platform { Arch } } } } }'))
        self.assertEqual(
            [(i["Tag"], [m["Platform"]["Arch"] for m in i["Manifests"]]) for i in multi["ExpandedRepoInfo"]["Images"]],
            [("amd64-only", ["amd64"]), ("arm64-only", ["arm64"]), ("latest", ["amd64", "arm64"])],
        )
        related = await self.data(
            self.cluster.non_owner("library/alpine"),
            '{ DerivedImageList(image: "library/alpine:3.19") { Page { TotalCount } Results { RepoName Tag } }'
            f' ImageListForDigest(id: "{self.images.base.layers[0][0]}") {{ Page {{ TotalCount }} }} }}',
        )
        self.assertEqual(
            sorted((r["RepoName"], r["Tag"]) for r in related["DerivedImageList"]["Results"]), [("team/app", "v1"), ("team/app", "v2")]
        )
        self.assertEqual(related["ImageListForDigest"]["Page"]["TotalCount"], 3)

        # One member down: global queries name it; fields of its repositories too; others still answer.
        down = self.cluster.owner("team/app")
        await self.cluster.stop_replica(down)
        member = self.cluster.members[down]
        asking = (down + 1) % 3
        for query in ('{ GlobalSearch(query: "") { Repos { Name } } }', '{ ImageList(repo: "team/app") { Page { TotalCount } } }'):
            document = await self.query(asking, query)
            self.assertIsNone(document["data"], query)
            (error,) = document["errors"]
            self.assertIn(member, error["message"], query)
            self.assertEqual((error["extensions"]["code"], list(error["extensions"]["members"])), ("UNAVAILABLE", [member]))
        alive = next(name for name in self.names if self.cluster.owner(name) != down)
        listed = await self.data(asking, f'{{ ImageList(repo: "{alive}") {{ Page {{ TotalCount }} }} }}')
        self.assertGreaterEqual(listed["ImageList"]["Page"]["TotalCount"], 1)

    @async_test
    async def test_per_instance_storage(self) -> None:
        await self.start()
        await self.check_cluster()

    @async_test
    async def test_shared_s3_storage(self) -> None:
        await self.start(storage_driver=seaweed_storage_driver())
        await self.check_cluster()
