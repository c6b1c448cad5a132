"""Local reads end to end: 3 real replicas on one SeaweedFS bucket answer reads by digest
themselves (``cluster.localReads``, on by default with shared storage), with the owner's very
headers and errors, and keep forwarding everything else; per-instance storage forwards all.
"""

from __future__ import annotations

import json
import os

from twisted.trial import unittest

from tests.integration.cluster import (
    ClusterTLS,
    RegistryClient,
    ZotpyCluster,
    oci_error_codes,
    raw_request,
    seaweed_storage_driver,
    small_image,
)
from tests.integration.test_cluster_auth import CredentialedClient, basic, htpasswd_http
from tests.integration.test_s3_driver import s3_driver
from zotpy.meta.keeper import meta_path
from zotpy.meta.model import RepositoryMeta

NAME = "local/reads"


class LocalReadsTests(unittest.TestCase):
    timeout = 120

    async def start(self, **kwargs: object) -> tuple[ZotpyCluster, RegistryClient]:
        cluster = ZotpyCluster(self.mktemp(), **kwargs)  # type: ignore[arg-type]
        await cluster.start()
        self.addCleanup(cluster.stop)
        client = RegistryClient()
        self.addCleanup(client.close)
        return cluster, client

    def owner_saw(self, cluster: ZotpyCluster, path: str, repository: str = NAME) -> list[str]:
        return [f"{e.method} {e.status}" for e in cluster.access_log(cluster.owner(repository)) if e.path == path]

    async def test_reads_by_digest_answered_where_they_land(self) -> None:
        cluster, client = await self.start(storage_driver=seaweed_storage_driver())
        owner = cluster.owner(NAME)
        others = [cluster.non_owner(NAME, 1), cluster.non_owner(NAME, 2)]
        image = small_image(NAME)
        await client.push_image(cluster.url(owner), NAME, image, "v1")
        layer = list(image.blobs)[1]
        reads = [
            ("GET", f"/v2/{NAME}/blobs/{layer}", {}),
            ("HEAD", f"/v2/{NAME}/blobs/{layer}", {}),
            ("GET", f"/v2/{NAME}/blobs/{layer}", {"Range": "bytes=10-99"}),
            ("GET", f"/v2/{NAME}/manifests/{image.digest}", {"Accept": "application/vnd.oci.image.manifest.v1+json"}),
            ("HEAD", f"/v2/{NAME}/manifests/{image.digest}", {}),
            ("GET", f"/v2/{NAME}/manifests/sha256:{'0' * 64}", {}),
        ]
        answers = {}
        for via in others:  # first, so the owner's log shows none of them
            for method, path, headers in reads:
                answers[via, method, path, str(headers)] = await raw_request(method, cluster.url(via) + path, headers)
        for method, path, _ in reads:
            self.assertEqual(self.owner_saw(cluster, path), [], (method, path))
        for method, path, headers in reads:
            expected = await raw_request(method, cluster.url(owner) + path, headers)
            for via in others:
                got = answers[via, method, path, str(headers)]
                self.assertEqual(
                    (got.status, got.header_map(), got.body),
                    (expected.status, expected.header_map(), expected.body),
                    (via, method, path, headers),
                )
        self.assertEqual(answers[others[0], "GET", reads[0][1], "{}"].status, 200)
        self.assertEqual(answers[others[0], "GET", reads[2][1], str(reads[2][2])].status, 206)
        self.assertEqual(answers[others[0], "GET", reads[5][1], "{}"].status, 404)

        # The owner stopped: reads by digest still work, by tag and writes are UNAVAILABLE.
        await cluster.stop_replica(owner)
        for via in others:
            await client.pull_blob(cluster.url(via), NAME, layer)
            manifest = await client.expect(200, "GET", f"{cluster.url(via)}/v2/{NAME}/manifests/{image.digest}")
            self.assertEqual(manifest.body, image.manifest)
            for method, path in [("GET", f"/v2/{NAME}/manifests/v1"), ("POST", f"/v2/{NAME}/blobs/uploads/"),
                                 ("GET", f"/v2/{NAME}/tags/list")]:
                refused = await client.request(method, cluster.url(via) + path)
                self.assertEqual((refused.code, oci_error_codes(refused)), (503, ["UNAVAILABLE"]), (method, path))

        # Back: a blob deleted through one replica is unknown on every replica at once.
        await cluster.start_replica(owner)
        await client.expect(202, "DELETE", f"{cluster.url(others[0])}/v2/{NAME}/blobs/{layer}")
        for via in range(3):
            for method in ("GET", "HEAD"):
                gone = await client.request(method, f"{cluster.url(via)}/v2/{NAME}/blobs/{layer}")
                self.assertEqual(gone.code, 404, (via, method))
                if method == "GET":
                    self.assertEqual(oci_error_codes(gone), ["BLOB_UNKNOWN"], via)
        # Another repository's blob in the same bucket is not this repository's.
        config = list(image.blobs)[0]
        other = "local/other"
        await client.push_blob(cluster.url(cluster.owner(other)), other, image.blobs[config])
        via = cluster.non_owner("local/third")
        unknown = await client.request("GET", f"{cluster.url(via)}/v2/local/third/blobs/{config}")
        self.assertEqual(oci_error_codes(unknown), ["BLOB_UNKNOWN"])

    async def test_pulls_answered_elsewhere_reach_the_owners_counts(self) -> None:
        """Manifest GETs answered by the non-owners are reported to the owner in batches (here the
        last batch, sent as each stops) and counted in the repository's metadata with the owner's."""
        storage = seaweed_storage_driver()
        cluster, client = await self.start(storage_driver=storage)
        owner = cluster.owner(NAME)
        image = small_image(NAME, layer_sizes=(256,))
        await client.push_image(cluster.url(owner), NAME, image, "v1")
        for via, times in [(cluster.non_owner(NAME, 1), 3), (cluster.non_owner(NAME, 2), 2), (owner, 1)]:
            for _ in range(times):
                await client.expect(200, "GET", f"{cluster.url(via)}/v2/{NAME}/manifests/{image.digest}")
        for via in (cluster.non_owner(NAME, 1), cluster.non_owner(NAME, 2), owner):  # the owner last
            await cluster.stop_replica(via)
        driver = s3_driver(self, storage["rootdirectory"])
        meta = RepositoryMeta.parse(await driver.get_content(meta_path(NAME)), NAME)
        self.assertEqual(meta.images[image.digest].pull_count, 6)
        for via in range(3):
            self.assertNotIn("Traceback", cluster.replicas[via].log_text())
        # The owner logged the reports (one per non-owner), as member traffic.
        reports = [e for e in cluster.access_log(owner) if e.path == "/_zotpy/cluster/pulls"]
        self.assertEqual([e.status for e in reports], [204, 204])

    async def test_pull_reports_over_mutual_tls(self) -> None:
        """Replicas on https with client certificates: the reports reach the owner over the peer
        client (its member certificate), and a client certificate naming no member is refused."""
        tls = ClusterTLS(os.path.abspath(self.mktemp()))
        storage = seaweed_storage_driver()
        cluster = ZotpyCluster(self.mktemp(), tls=tls, storage_driver=storage)
        await cluster.start()
        self.addCleanup(cluster.stop)
        client = RegistryClient(tls)
        self.addCleanup(client.close)
        owner, via = cluster.owner(NAME), cluster.non_owner(NAME)
        image = small_image(NAME, layer_sizes=(256,))
        await client.push_image(cluster.url(owner), NAME, image, "v1")
        for _ in range(2):
            await client.expect(200, "GET", f"{cluster.url(via)}/v2/{NAME}/manifests/{image.digest}")
        forged = {"pulls": [{"repository": NAME, "digest": image.digest, "count": 1000, "at": 1}]}
        refused = await client.request("POST", f"{cluster.url(owner)}/_zotpy/cluster/pulls", data=json.dumps(forged).encode())
        self.assertEqual((refused.code, oci_error_codes(refused)), (403, ["DENIED"]))
        await cluster.stop_replica(via)  # its last report
        await cluster.stop_replica(owner)  # its last metadata flush
        meta = RepositoryMeta.parse(await s3_driver(self, storage["rootdirectory"]).get_content(meta_path(NAME)), NAME)
        self.assertEqual(meta.images[image.digest].pull_count, 2)

    async def test_local_reads_are_authorised_as_forwarded_ones(self) -> None:
        """With htpasswd and accessControl, a read answered by a non-owner is refused or allowed by
        that replica exactly as before forwarding: mallory 403, no credentials 401, alice served."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        http = htpasswd_http(directory)
        name = "team/app"  # alice may read and write it, mallory nothing
        cluster, _ = await self.start(storage_driver=seaweed_storage_driver(), extra={"http": http})
        alice, mallory, anonymous = (CredentialedClient(basic(user) if user else None) for user in ("alice", "mallory", ""))
        for client in (alice, mallory, anonymous):
            self.addCleanup(client.close)
        image = small_image(name, layer_sizes=(256,))
        await alice.push_image(cluster.url(cluster.owner(name)), name, image, "v1")
        via = cluster.url(cluster.non_owner(name))
        layer = list(image.blobs)[1]
        for path in (f"/v2/{name}/manifests/{image.digest}", f"/v2/{name}/blobs/{layer}"):
            for client, status in ((mallory, 403), (anonymous, 401), (alice, 200)):
                got = await client.request("GET", via + path)
                self.assertEqual(got.code, status, (path, got.body[:200]))
            self.assertEqual(self.owner_saw(cluster, path, name), [], path)

    async def test_per_instance_storage_and_local_reads_off_forward_everything(self) -> None:
        for kwargs in ({}, {"storage_driver": seaweed_storage_driver(), "extra": {"cluster": {"localReads": False}}}):
            cluster, client = await self.start(**kwargs)
            owner, via = cluster.owner(NAME), cluster.non_owner(NAME)
            image = small_image(NAME, layer_sizes=(512,))
            await client.push_image(cluster.url(owner), NAME, image, "v1")
            layer = list(image.blobs)[1]
            await client.pull_blob(cluster.url(via), NAME, layer)
            await client.expect(200, "HEAD", f"{cluster.url(via)}/v2/{NAME}/manifests/{image.digest}")
            self.assertEqual(self.owner_saw(cluster, f"/v2/{NAME}/blobs/{layer}"), ["GET 200"], kwargs)
            self.assertEqual(self.owner_saw(cluster, f"/v2/{NAME}/manifests/{image.digest}"), ["HEAD 200"], kwargs)
            await cluster.stop_replica(owner)
            refused = await client.request("GET", f"{cluster.url(via)}/v2/{NAME}/blobs/{layer}")
            self.assertEqual((refused.code, oci_error_codes(refused)), (503, ["UNAVAILABLE"]), kwargs)
            await cluster.stop()
