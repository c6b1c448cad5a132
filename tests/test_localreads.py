"""Local reads (:mod:`zotpy.cluster.localreads`): which forwarded requests a member answers from the
storage it shares with the owner, and how a miss still reaches the owner.

Two registry apps over one store directory stand for two members on one bucket: the owner is
served behind a counter, the other wrapped in a ClusterResource with local reads on. The
integration tests (``tests/integration/test_localreads.py``) do the same with real replicas on
SeaweedFS.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web.resource import IResource
from zope.interface import implementer

from tests.driversuite import async_test
from tests.support import local_store, serve
from tests.test_cluster_proxy import KEY, owned_by, raw_request
from zotpy.api.registry import RegistryApp
from zotpy.api.routes import match
from zotpy.cluster.identity import Identity
from zotpy.cluster.localreads import LocalReads
from zotpy.cluster.membership import Membership, View
from zotpy.cluster.peers import peer_agent
from zotpy.cluster.proxy import ClusterResource, Forwarder
from zotpy.cluster.ring import Ring
from zotpy.oci.digest import parse_digest

DIGEST = "sha256:" + "a" * 64
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


class ServesTests(unittest.TestCase):
    """What is answered locally: GET/HEAD by digest of blobs and manifests, and nothing else."""

    def test_reads_by_digest_only(self) -> None:
        reads = LocalReads()
        served = [
            ("GET", f"/v2/a/b/blobs/{DIGEST}"),
            ("HEAD", f"/v2/a/blobs/{DIGEST}"),
            ("GET", f"/v2/a/manifests/{DIGEST}"),
            ("HEAD", f"/v2/a/manifests/{DIGEST}"),
        ]
        forwarded = [
            ("GET", "/v2/a/manifests/latest"),
            ("HEAD", "/v2/a/manifests/v1"),
            ("PUT", f"/v2/a/manifests/{DIGEST}"),
            ("DELETE", f"/v2/a/manifests/{DIGEST}"),
            ("DELETE", f"/v2/a/blobs/{DIGEST}"),
            ("GET", "/v2/a/tags/list"),
            ("GET", f"/v2/a/referrers/{DIGEST}"),
            ("POST", "/v2/a/blobs/uploads/"),
            ("GET", "/v2/a/blobs/uploads/0c1e4c7e-5b7a-4d1a-9d3e-4b1f2c3d4e5f"),
        ]
        for method, path in served:
            found = match(method, path)
            self.assertTrue(found is not None and reads.serves(found), (method, path))
        for method, path in forwarded:
            found = match(method, path)
            self.assertTrue(found is not None and not reads.serves(found), (method, path))

    def test_repositories_synced_on_demand_stay_the_owners(self) -> None:
        reads = LocalReads(fetched_on_demand=lambda repo: repo.startswith("mirror/"))
        self.assertFalse(reads.serves(match("GET", f"/v2/mirror/x/manifests/{DIGEST}")))  # type: ignore[arg-type]
        self.assertTrue(reads.serves(match("GET", f"/v2/own/x/manifests/{DIGEST}")))  # type: ignore[arg-type]


@implementer(IResource)
class Counting:
    """The owner: counts what reaches it."""

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        self.inner = inner
        self.paths: list[bytes] = []

    def render(self, request: Any) -> Any:
        self.paths.append(request.method + b" " + request.path)
        return self.inner.render(request)

    def getChildWithDefault(self, name: bytes, request: Any) -> IResource:
        return self


class SharedStoreTests(unittest.TestCase):
    @async_test
    async def setUp(self) -> None:
        root = tempfile.mkdtemp(prefix="zotpy-localreads-")
        self.store = local_store(root)
        self.owner = Counting(RegistryApp(local_store(root)).resource())
        owner_member = (await serve(self, self.owner)).removeprefix("http://")
        self.ring = Ring(("127.0.0.1:1", owner_member), KEY)
        self.repo = owned_by(self.ring, 1, "remote")
        self.blob = b"layer bytes" * 100
        self.blob_digest = "sha256:" + hashlib.sha256(self.blob).hexdigest()
        await self.store.put_blob(self.repo, parse_digest(self.blob_digest), io.BytesIO(self.blob))
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": self.blob_digest, "size": len(self.blob)}, "layers": []}
        self.manifest = json.dumps(manifest).encode()
        self.manifest_digest = "sha256:" + hashlib.sha256(self.manifest).hexdigest()
        await self.store.put_manifest(self.repo, "v1", self.manifest, MANIFEST_TYPE)

    async def member(self, reads: LocalReads | None) -> str:
        agent, pool = peer_agent(reactor, None)
        self.addCleanup(pool.closeCachedConnections)
        local = RegistryApp(local_store(self.store.driver.root)).resource()  # type: ignore[attr-defined]
        identity = Identity(0, "127.0.0.1:1", "test")
        membership = Membership(View(self.ring.members, self.ring.hash_key), identity, settled=True)
        return await serve(self, ClusterResource(local, membership, Forwarder(agent, reactor), reads))

    @async_test
    async def test_reads_by_digest_never_reach_the_owner(self) -> None:
        base = await self.member(LocalReads())
        for method in ("GET", "HEAD"):
            blob = await raw_request(base, method, f"/v2/{self.repo}/blobs/{self.blob_digest}", [])
            self.assertEqual((blob.status, blob.header("Docker-Content-Digest")), (200, self.blob_digest))
            self.assertEqual(blob.header("Content-Length"), str(len(self.blob)))
            manifest = await raw_request(base, method, f"/v2/{self.repo}/manifests/{self.manifest_digest}", [])
            self.assertEqual((manifest.status, manifest.header("Content-Type")), (200, MANIFEST_TYPE))
        self.assertEqual(blob.body, b"")
        ranged = await raw_request(base, "GET", f"/v2/{self.repo}/blobs/{self.blob_digest}", [("Range", "bytes=2-5")])
        self.assertEqual((ranged.status, ranged.body), (206, self.blob[2:6]))
        self.assertEqual(self.owner.paths, [])
        # A missing blob is the repository's miss, answered here too.
        missing = await raw_request(base, "GET", f"/v2/{self.repo}/blobs/{DIGEST}", [])
        self.assertEqual((missing.status, json.loads(missing.body)["errors"][0]["code"]), (404, "BLOB_UNKNOWN"))
        # Another repository's blob is not this one's, whatever the storage holds.
        other = owned_by(self.ring, 1, "other")
        missing = await raw_request(base, "HEAD", f"/v2/{other}/blobs/{self.blob_digest}", [])
        self.assertEqual(missing.status, 404)
        self.assertEqual(self.owner.paths, [])
        # A tag read goes to the owner.
        tagged = await raw_request(base, "GET", f"/v2/{self.repo}/manifests/v1", [])
        self.assertEqual((tagged.status, tagged.body), (200, self.manifest))
        self.assertEqual(self.owner.paths, [f"GET /v2/{self.repo}/manifests/v1".encode()])

    @async_test
    async def test_a_miss_goes_to_the_owner_when_it_may_answer_otherwise(self) -> None:
        base = await self.member(LocalReads(blob_misses_to_owner=True))
        hit = await raw_request(base, "HEAD", f"/v2/{self.repo}/blobs/{self.blob_digest}", [])
        self.assertEqual((hit.status, self.owner.paths), (200, []))
        missing = await raw_request(base, "HEAD", f"/v2/{self.repo}/blobs/{DIGEST}", [])
        self.assertEqual(missing.status, 404)
        self.assertEqual(self.owner.paths, [f"HEAD /v2/{self.repo}/blobs/{DIGEST}".encode()])
        missing = await raw_request(base, "GET", f"/v2/{self.repo}/blobs/{DIGEST}", [])
        self.assertEqual((missing.status, json.loads(missing.body)["errors"][0]["code"]), (404, "BLOB_UNKNOWN"))
        self.assertEqual(len(self.owner.paths), 2)

    @async_test
    async def test_without_local_reads_everything_is_forwarded(self) -> None:
        base = await self.member(None)
        blob = await raw_request(base, "GET", f"/v2/{self.repo}/blobs/{self.blob_digest}", [])
        self.assertEqual((blob.status, blob.body), (200, self.blob))
        self.assertEqual(self.owner.paths, [f"GET /v2/{self.repo}/blobs/{self.blob_digest}".encode()])

