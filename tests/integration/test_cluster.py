"""The scale-out cluster end to end: real replicas (``twistd -n zotpy``) on
127.0.0.1-3 sharing one port, driven over HTTP with treq, skopeo and real HAProxy.

Storage is one local root per replica: the tests can then see on disk that a
repository lives on its owner only (``/v2/_catalog`` gathers every member's, see
``test_operability``). Each test starts its own cluster (about two seconds).
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from tests.integration import ocilayout
from tests.integration.cluster import (
    HASH_KEY,
    RegistryClient,
    ZotpyCluster,
    location_path,
    oci_error_codes,
    pseudo_random,
    raw_request,
    seaweed_storage_driver,
    sha256_digest,
    small_image,
    with_query,
)
from tests.integration.daemon import REPO_ROOT, ZotpyDaemon, free_port, require_binary, sleep, tail
from tests.integration.haproxy import HAProxy
from zotpy.cluster.ring import Ring

#: 20 repositories, flat and nested names; with HASH_KEY and 3 members every member owns some.
REPOSITORIES = [f"team{i % 4}/app{i}" if i % 2 else f"app{i}" for i in range(20)]


class ClusterTestCase(unittest.TestCase):
    timeout = 120
    #: The documented mode: every replica on one SeaweedFS bucket (``rootdirectory`` per test);
    #: otherwise each replica has its own local root.
    shared_storage = False

    async def start_cluster(self, **kwargs: object) -> tuple[ZotpyCluster, RegistryClient]:
        if self.shared_storage:
            kwargs["storage_driver"] = seaweed_storage_driver()
        cluster = ZotpyCluster(self.mktemp(), **kwargs)  # type: ignore[arg-type]
        await cluster.start()
        self.addCleanup(cluster.stop)
        client = RegistryClient(kwargs.get("tls"))  # type: ignore[arg-type]
        self.addCleanup(client.close)
        return cluster, client

    async def gather(self, coroutines: list, limit: int = 6) -> list:
        """Run coroutines concurrently, at most ``limit`` at a time; first failure raises."""
        semaphore = defer.DeferredSemaphore(limit)
        return await defer.gatherResults(
            [semaphore.run(defer.ensureDeferred, c) for c in coroutines], consumeErrors=True
        ).addErrback(lambda f: f.value.subFailure)


class ForwardingTests(ClusterTestCase):
    """Any replica serves any repository; the owner stores it (per-instance storage: on its own disk)."""

    async def test_push_via_non_owner_pull_via_every_replica(self) -> None:
        cluster, client = await self.start_cluster()
        owned = cluster.repositories_owned_by_each(REPOSITORIES)
        self.assertTrue(all(owned.values()), f"every member should own some of the 20: {owned}")

        images = {name: small_image(name) for name in REPOSITORIES}
        # Push each repository through a replica that does not own it (alternating which one).
        pushed_via = {name: cluster.non_owner(name, 1 + i % 2) for i, name in enumerate(REPOSITORIES)}
        await self.gather(
            [client.push_image(cluster.url(pushed_via[n]), n, images[n], "v1") for n in REPOSITORIES]
        )
        # Pull every repository through every replica: manifest and blobs, digest-verified.
        await self.gather(
            [
                client.pull_image(cluster.url(i), n, ref, images[n])
                for n in REPOSITORIES
                for i in range(3)
                for ref in ("v1", images[n].digest)
            ]
        )

        # Shared storage: one catalog, the same on every replica; nothing on the replicas' disks.
        if cluster.shared_storage:
            for index in range(3):
                self.assertEqual(await client.catalog(cluster.url(index)), sorted(REPOSITORIES), index)
                for name in REPOSITORIES:
                    self.assertFalse(os.path.exists(cluster.repo_dir(index, name)))
        # Per-instance storage: the owner holds the repository with every blob, the others nothing.
        for name in REPOSITORIES if not cluster.shared_storage else []:
            owner = cluster.owner(name)
            for index in range(3):
                repo_dir = cluster.repo_dir(index, name)
                if index == owner:
                    for digest in [images[name].digest, *images[name].blobs]:
                        path = os.path.join(repo_dir, "blobs", "sha256", digest.split(":")[1])
                        self.assertTrue(os.path.isfile(path), f"{name}: owner {owner} lacks {path}")
                    self.assertEqual(
                        ocilayout.tagged_manifest_digest(repo_dir, "v1"), images[name].digest
                    )
                else:
                    self.assertFalse(
                        os.path.exists(repo_dir),
                        f"{name} (owner {owner}) has data on replica {index}: {repo_dir}",
                    )
            # No upload was left behind on the owner.
            uploads = os.path.join(cluster.repo_dir(owner, name), ".uploads")
            self.assertEqual(os.listdir(uploads) if os.path.isdir(uploads) else [], [], name)

        # The pushes really went through the non-owners: each logged its PUT of the manifest,
        # and so did the owner (the forwarded copy); the third replica never saw it.
        for name in REPOSITORIES:
            path = f"/v2/{name}/manifests/v1"
            puts = {i: [e for e in cluster.access_log(i) if e.method == "PUT" and e.path == path] for i in range(3)}
            self.assertEqual(len(puts[pushed_via[name]]), 1, (name, puts))
            self.assertEqual(len(puts[cluster.owner(name)]), 1, (name, puts))
            self.assertEqual(sum(len(p) for p in puts.values()), 2, (name, puts))
            self.assertEqual(puts[pushed_via[name]][0].status, 201)

    async def test_tags_list_and_catalog(self) -> None:
        """Tags agree on every replica (pagination included), and so does the catalog."""
        cluster, client = await self.start_cluster()
        names = cluster.spread_names("catalog/repo", 2)
        tags = ["1.0", "1.1", "2.0", "latest", "stable"]
        for name in names:
            image = small_image(name, layer_sizes=(100,))
            base = cluster.url(cluster.non_owner(name))
            await client.push_image(base, name, image, tags[0])
            for tag in tags[1:]:
                await client.push_manifest(base, name, tag, image.manifest)
        for name in names:
            answers = [await client.tags(cluster.url(i), name) for i in range(3)]
            self.assertEqual(answers, [tags] * 3, name)

            # Pagination: the query reaches the owner and its Link header comes back untouched.
            via = cluster.url(cluster.non_owner(name, 2))
            first = await client.expect(200, "GET", f"{via}/v2/{name}/tags/list?n=2")
            self.assertEqual(first.json(), {"name": name, "tags": tags[:2]})
            link = first.header("Link")
            self.assertEqual(link, f'</v2/{name}/tags/list?n=2&last={tags[1]}>; rel="next"')
            second = await client.expect(
                200, "GET", cluster.url(cluster.non_owner(name, 1)) + link[1 : link.index(">")]
            )
            self.assertEqual(second.json()["tags"], tags[2:4])

        # /v2/_catalog is never forwarded. Shared storage: every replica lists every repository.
        # Per-instance storage: each replica gathers every member's (zotpy.cluster.catalog).
        for index in range(3):
            self.assertEqual(await client.catalog(cluster.url(index)), sorted(names), index)
            # Paginated the same way on every replica.
            first = await client.expect(200, "GET", f"{cluster.url(index)}/v2/_catalog?n=1")
            self.assertEqual(first.json()["repositories"], sorted(names)[:1])

    async def test_skopeo_via_two_non_owners(self) -> None:
        """skopeo pushes through one non-owner and pulls back through the other."""
        skopeo = require_binary("skopeo", "skopeo")
        cluster, client = await self.start_cluster()
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        name = "skopeo/image"
        image = ocilayout.build_image(
            os.path.join(tmp, "src"),
            tag="v1",
            layers=[
                ocilayout.default_layer_files(0, "skopeo"),
                ocilayout.default_layer_files(1, "skopeo", payload_size=2 * 1024 * 1024),
            ],
            name="skopeo",
        )
        push_via, pull_via = cluster.non_owner(name, 1), cluster.non_owner(name, 2)
        env = dict(os.environ, HOME=tmp, REGISTRY_AUTH_FILE=os.path.join(tmp, "auth.json"))

        async def run(*args: str) -> bytes:
            out, err, code = await getProcessOutputAndValue(
                skopeo, ["--debug", "--insecure-policy", *args], env=env, path=tmp
            )
            if code != 0:
                self.fail(
                    f"skopeo {' '.join(args)} exited {code}\n{tail(err.decode('utf-8', 'replace'))}\n"
                    f"{cluster.describe()}"
                )
            return out

        await run(
            "copy", "--dest-tls-verify=false", "--dest-no-creds",
            image.reference(), f"docker://{cluster.members[push_via]}/{name}:v1",
        )
        raw = await run(
            "inspect", "--raw", "--tls-verify=false", "--no-creds",
            f"docker://{cluster.members[pull_via]}/{name}:v1",
        )
        self.assertEqual(raw, image.manifest_bytes)
        dst = os.path.join(tmp, "dst")
        await run(
            "copy", "--src-tls-verify=false", "--src-no-creds",
            f"docker://{cluster.members[pull_via]}/{name}:v1", f"oci:{dst}:v1",
        )
        self.assertEqual(ocilayout.tagged_manifest_digest(dst, "v1"), image.manifest_digest)
        for digest in (image.config_digest, *image.layer_digests):
            self.assertEqual(ocilayout.read_blob(dst, digest), ocilayout.read_blob(image.path, digest))

        owner = cluster.owner(name)
        self.assertEqual(os.path.isdir(cluster.repo_dir(owner, name)), not cluster.shared_storage)
        for index in {push_via, pull_via}:
            self.assertFalse(os.path.exists(cluster.repo_dir(index, name)))
        # skopeo's requests for this repository reached the non-owners (and were forwarded).
        for index in (push_via, pull_via):
            self.assertTrue(
                any(f"/v2/{name}/" in e.path and "skopeo" in e.user_agent for e in cluster.access_log(index)),
                f"replica {index} saw no skopeo request for {name}",
            )

    async def test_chunked_upload_spread_over_replicas(self) -> None:
        """POST, each PATCH and the final PUT land on different replicas; the blob is right."""
        cluster, client = await self.start_cluster()
        bases = [cluster.url(i) for i in range(3)]
        chunks = [pseudo_random("chunk0", 1024 * 1024 + 7), pseudo_random("chunk1", 300_001), b"tail"]
        # One repository per owner, so the owner's own leg is sometimes the POST, a PATCH or the PUT.
        for name in cluster.spread_names("chunked", 1):
            owner = cluster.owner(name)
            order = [bases[(owner + k) % 3] for k in (1, 2, 0)]
            digest = await client.push_blob_chunked(order, name, chunks)
            self.assertEqual(digest, sha256_digest(b"".join(chunks)))
            for base in bases:
                body = await client.pull_blob(base, name, digest)
                self.assertEqual(len(body), sum(map(len, chunks)))
            # Each replica logged its own leg of this upload.
            for index in range(3):
                legs = [e.method for e in cluster.access_log(index) if e.path.startswith(f"/v2/{name}/blobs/uploads/")]
                self.assertTrue(legs, f"replica {index} never saw the upload of {name}")

        # Upload status and cancel through non-owners.
        name = "chunked/status"
        location = await client.start_upload(cluster.url(cluster.non_owner(name, 1)), name)
        path = location_path(location)
        await client.expect(
            202, "PATCH", cluster.url(cluster.non_owner(name, 2)) + path,
            headers={"Content-Range": "0-9", "Content-Type": "application/octet-stream"}, data=b"0123456789",
        )
        status = await client.expect(204, "GET", cluster.url(cluster.non_owner(name, 1)) + path)
        self.assertEqual(status.header("Range"), "0-9")
        await client.expect(204, "DELETE", cluster.url(cluster.non_owner(name, 2)) + path)
        gone = await client.request("GET", cluster.url(cluster.owner(name)) + path)
        self.assertEqual((gone.code, oci_error_codes(gone)), (404, ["BLOB_UPLOAD_UNKNOWN"]))

    async def test_cross_repository_mount_between_owners(self) -> None:
        """``POST ?mount=&from=`` where the two repositories have different owners, sent to a
        third replica: the target's owner answers. Shared storage: it sees the source's blob and
        mounts it (201). Per-instance storage: the blob is on another replica, so the owner
        falls back to a new upload session (202), as the spec allows; pushing then works."""
        cluster, client = await self.start_cluster()
        source = next(n for n in (f"mount/src{i}" for i in range(100)) if cluster.owner(n) == 0)
        target = next(n for n in (f"mount/dst{i}" for i in range(100)) if cluster.owner(n) == 1)
        image = small_image(source)
        await client.push_image(cluster.url(2), source, image, "v1")
        layer = sha256_digest(image.layers[1])
        result = await client.request(
            "POST", f"{cluster.url(2)}/v2/{target}/blobs/uploads/?mount={layer}&from={source}"
        )
        if cluster.shared_storage:
            self.assertEqual(result.code, 201, result)
            self.assertEqual(result.header("Location"), f"/v2/{target}/blobs/{layer}")
        else:
            self.assertEqual(result.code, 202, result)
            location = result.header("Location")
            self.assertTrue(location and location.startswith(f"/v2/{target}/blobs/uploads/"), result.headers)
            await client.expect(
                201, "PUT", with_query(cluster.url(0) + location, digest=layer), data=image.layers[1]
            )
        for via in range(3):
            await client.pull_blob(cluster.url(via), target, layer)


    async def test_concurrent_tag_pushes_through_every_replica(self) -> None:
        """15 tags of one repository pushed at once, spread over the three replicas: all writes
        reach the one owner, which serialises them, so no tag is lost from index.json."""
        cluster, client = await self.start_cluster()
        name = "concurrent/tags"
        images = [small_image(f"{name}:{i}", layer_sizes=(64 + i,)) for i in range(15)]
        await self.gather(
            [client.push_image(cluster.url(i % 3), name, image, f"t{i}") for i, image in enumerate(images)],
            limit=15,
        )
        expected = sorted(f"t{i}" for i in range(15))
        for via in range(3):
            self.assertEqual(sorted(await client.tags(cluster.url(via), name)), expected, via)
        for i, image in enumerate(images):
            await client.pull_image(cluster.url((i + 1) % 3), name, f"t{i}", image)


class _PausingReader(Protocol):
    """Sends one request, then stops reading after the first bytes of the answer."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = 0
        self.first_bytes: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if not self.first_bytes.called:
            self.transport.pauseProducing()
            self.first_bytes.callback(None)

    def connectionLost(self, reason: object) -> None:
        self.closed.callback(None)


class S3ForwardingTests(ForwardingTests):
    """The same on one shared SeaweedFS bucket: the documented deployment."""

    shared_storage = True


class RelayTests(ClusterTestCase):
    """How a non-owner relays: the owner's reply unchanged and never buffered whole; no loops."""

    async def test_forwarded_reply_is_relayed_unchanged(self) -> None:
        """Status, headers and body reach the client as the owner sent them.

        Compares each reply through a non-owner with the same request sent to
        the owner itself (Date and per-request ids aside).
        """
        cluster, client = await self.start_cluster()
        name = "relay/headers"
        image = small_image(name)
        owner, other = cluster.url(cluster.owner(name)), cluster.url(cluster.non_owner(name))
        await client.push_image(owner, name, image, "v1")
        layer = sha256_digest(image.layers[1])
        requests = [
            ("GET", f"/v2/{name}/blobs/{layer}", {}),
            ("GET", f"/v2/{name}/blobs/{layer}", {"Range": "bytes=10-19"}),
            ("HEAD", f"/v2/{name}/blobs/{layer}", {}),
            ("GET", f"/v2/{name}/manifests/v1", {"Accept": "application/vnd.oci.image.manifest.v1+json"}),
            ("HEAD", f"/v2/{name}/manifests/v1", {}),
            ("GET", f"/v2/{name}/tags/list", {}),
            ("GET", f"/v2/{name}/manifests/nope", {}),
            ("PUT", f"/v2/{name}/manifests/v2", {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}),
        ]
        for method, path, headers in requests:
            data = image.manifest if method == "PUT" else None
            direct = await raw_request(method, owner + path, headers, data)
            relayed = await raw_request(method, other + path, headers, data)
            self.assertEqual((relayed.status, relayed.body), (direct.status, direct.body), (method, path))
            self.assertEqual(
                relayed.header_map(),
                direct.header_map(),
                f"{method} {path}: headers differ through the non-owner",
            )

    async def start_with_recording_owner(self) -> tuple[ZotpyCluster, str, list[tuple[bytes, bytes, Headers, bytes]]]:
        """Replicas 0 and 1 real, member 2 a recorder in this process: what does the owner receive?

        Returns the cluster, a repository member 2 owns, and the list the recorder
        appends ``(method, uri, headers, body)`` to.
        """
        cluster = ZotpyCluster(self.mktemp())
        seen: list[tuple[bytes, bytes, Headers, bytes]] = []

        class Recorder(Resource):
            isLeaf = True

            def render(self, request: Request) -> bytes:
                seen.append((request.method, request.uri, request.requestHeaders.copy(), request.content.read()))
                request.setHeader("Content-Type", "application/json")
                return b"{}"

        port = reactor.listenTCP(cluster.port, Site(Recorder()), interface=cluster.addresses[2])
        self.addCleanup(port.stopListening)
        for replica in cluster.replicas[:2]:
            await replica.start()
            self.addCleanup(replica.stop)
        name = next(n for n in (f"wire/repo{i}" for i in range(1000)) if cluster.owner(n) == 2)
        return cluster, name, seen

    async def test_forwarded_request_on_the_wire(self) -> None:
        """What the owner receives: method, path and raw query as sent; end-to-end headers
        (Authorization, Cookie...) copied; hop-by-hop ones dropped; Host = the member; the hop
        header added; the body with its exact Content-Length (0 stays 0), never chunked."""
        cluster, name, seen = await self.start_with_recording_owner()
        via = cluster.url(0)

        sent = {
            "Authorization": "Bearer secret-token",
            "Cookie": "SERVER=zot1",
            "X-Custom": "kept",
            "User-Agent": "zotpy-tests/1",
            "Connection": "X-Private",
            "X-Private": "dropped: named in Connection",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Upgrade": "h2c",
            "Proxy-Authorization": "Basic cHJveHk6cHJveHk=",
        }
        result = await raw_request("GET", f"{via}/v2/{name}/tags/list?n=2&last=a%2Fb", sent)
        self.assertEqual((result.status, result.body), (200, b"{}"))
        method, uri, headers, body = seen[-1]
        self.assertEqual((method, uri, body), (b"GET", f"/v2/{name}/tags/list?n=2&last=a%2Fb".encode(), b""))
        for header in ("Authorization", "Cookie", "X-Custom", "User-Agent"):
            self.assertEqual(headers.getRawHeaders(header), [sent[header]], header)
        for header in ("Connection", "X-Private", "Keep-Alive", "TE", "Upgrade", "Proxy-Authorization",
                       "Transfer-Encoding", "Content-Length"):
            self.assertFalse(headers.hasHeader(header), f"{header} reached the owner: {headers}")
        self.assertEqual(headers.getRawHeaders("Host"), [cluster.members[2]])
        self.assertEqual(headers.getRawHeaders("X-Zot-Cluster-Hop-Count"), ["1"])

        for method_, path, data in [
            ("PATCH", f"/v2/{name}/blobs/uploads/0b0e8fb3-53e0-4c07-9a63-6e7ac8e5a4a1", b"x" * 70_000),
            ("PUT", f"/v2/{name}/blobs/uploads/0b0e8fb3-53e0-4c07-9a63-6e7ac8e5a4a1?digest=sha256:{'0' * 64}", b""),
        ]:
            await raw_request(method_, via + path, {"Content-Type": "application/octet-stream"}, data)
            method, uri, headers, body = seen[-1]
            self.assertEqual((method.decode(), uri.decode(), body), (method_, path, data))
            self.assertEqual(headers.getRawHeaders("Content-Length"), [str(len(data))], method_)
            self.assertFalse(headers.hasHeader("Transfer-Encoding"), headers)
            self.assertEqual(headers.getRawHeaders("Content-Type"), ["application/octet-stream"])

    async def test_forwarder_adds_no_accept_encoding(self) -> None:
        """The client's Accept-Encoding reaches the owner as sent, and none is invented."""
        cluster, name, seen = await self.start_with_recording_owner()
        await raw_request("GET", f"{cluster.url(0)}/v2/{name}/manifests/v1", {"Accept-Encoding": "identity"})
        self.assertEqual(seen[-1][2].getRawHeaders("Accept-Encoding"), ["identity"])
        await raw_request("GET", f"{cluster.url(1)}/v2/{name}/manifests/v1", {"Accept-Encoding": "gzip"})
        self.assertEqual(seen[-1][2].getRawHeaders("Accept-Encoding"), ["gzip"])

    async def test_slow_client_does_not_make_the_forwarder_buffer(self) -> None:
        """A client that stops reading a large blob through a non-owner: the non-owner pauses
        the owner instead of holding the blob in memory; when the client leaves, the next
        download through the same non-owner is complete and correct."""
        cluster, client = await self.start_cluster()
        name = "backpressure/blob"
        size = 64 * 1024 * 1024
        blob = pseudo_random("backpressure", 1024 * 1024) * 64
        digest = await client.push_blob(cluster.url(cluster.owner(name)), name, blob)
        via = cluster.non_owner(name)
        forwarder = cluster.replicas[via]
        before = forwarder.rss_bytes()

        reader = _PausingReader(
            f"GET /v2/{name}/blobs/{digest} HTTP/1.1\r\nHost: {cluster.members[via]}\r\n\r\n".encode()
        )
        endpoint = TCP4ClientEndpoint(reactor, cluster.addresses[via], cluster.port)
        await connectProtocol(endpoint, reader)
        await reader.first_bytes
        await sleep(1.0)  # ample time for the owner to push the whole blob if nothing held it back
        grown = forwarder.rss_bytes() - before
        self.assertLess(
            grown, size // 4,
            f"the non-owner's memory grew by {grown / 2**20:.0f} MiB while its client was paused "
            f"after {reader.received} bytes of a {size / 2**20:.0f} MiB blob",
        )
        reader.transport.abortConnection()
        await reader.closed

        self.assertEqual(await client.pull_blob(cluster.url(via), name, digest), blob)
        self.assertTrue(forwarder.running)

    async def test_owner_dying_mid_blob_cuts_the_client_short(self) -> None:
        """The owner stops in the middle of a blob relayed by a non-owner: the client's
        download ends visibly incomplete (fewer bytes than its Content-Length, connection
        closed), never as a complete-looking short blob; the non-owner keeps serving."""
        cluster, client = await self.start_cluster()
        name = "truncated/blob"
        blob = pseudo_random("truncated", 1024 * 1024) * 64  # far more than the sockets buffer
        owner = cluster.owner(name)
        digest = await client.push_blob(cluster.url(owner), name, blob)
        via = cluster.non_owner(name)

        reader = _PausingReader(
            f"GET /v2/{name}/blobs/{digest} HTTP/1.1\r\nHost: {cluster.members[via]}\r\n\r\n".encode()
        )
        chunks: list[bytes] = []
        original = reader.dataReceived

        def keep(data: bytes) -> None:
            chunks.append(data)
            original(data)

        reader.dataReceived = keep  # type: ignore[method-assign]
        await connectProtocol(TCP4ClientEndpoint(reactor, cluster.addresses[via], cluster.port), reader)
        await reader.first_bytes
        await cluster.stop_replica(owner)
        reader.transport.resumeProducing()
        await reader.closed  # the non-owner must close: the message can never complete

        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        self.assertIn(f"content-length: {len(blob)}".encode(), head.lower(), head)
        self.assertNotIn(b"transfer-encoding", head.lower(), head)
        self.assertLess(len(body), len(blob), "the whole blob arrived although its owner stopped")
        self.assertTrue(cluster.replicas[via].running)
        after = await client.request("GET", f"{cluster.url(via)}/v2/{name}/blobs/{digest}")
        self.assertEqual((after.code, oci_error_codes(after)), (503, ["UNAVAILABLE"]))

    async def test_member_lists_in_another_order(self) -> None:
        """One replica lists the members in another order (a misconfiguration). What it forwards
        to a member that disagrees gets an error naming the cause (no loop, nobody crashes);
        every outcome is the one the two rings predict."""
        cluster = ZotpyCluster(self.mktemp())
        odd = 2
        reordered = [cluster.members[i] for i in (1, 2, 0)]
        cluster.rewrite_config(odd, lambda config: config["cluster"].update(members=reordered))
        await cluster.start()
        self.addCleanup(cluster.stop)
        client = RegistryClient()
        self.addCleanup(client.close)
        wrong = Ring(tuple(reordered), HASH_KEY)

        outcomes: dict[str, int] = {}
        for i in range(30):
            name = f"disagree/repo{i}"
            result = await client.request("GET", f"{cluster.url(odd)}/v2/{name}/tags/list")
            believed, owner = wrong.owner(name), cluster.members[cluster.owner(name)]
            if believed == cluster.members[odd] or believed == owner:
                # Served where the odd replica sends it (itself, or the true owner): unknown repository.
                self.assertEqual((result.code, oci_error_codes(result)), (404, ["NAME_UNKNOWN"]), name)
            else:
                # Sent to a member that knows another owner: refused, not forwarded on.
                self.assertGreaterEqual(result.code, 500, (name, result))
                self.assertIn("disagree", result.body.decode(), name)
            outcomes[name] = result.code
        self.assertTrue(any(code >= 500 for code in outcomes.values()), outcomes)
        self.assertTrue(all(replica.running for replica in cluster.replicas))
        self.assertTrue(
            any("cluster.members differ" in cluster.replicas[i].log_text() for i in range(3) if i != odd)
        )

    async def test_hop_header_at_non_owner(self) -> None:
        """A forwarded request landing on a non-owner (member lists disagree) is refused, not looped."""
        cluster, client = await self.start_cluster()
        name = "loop/repo"
        via = cluster.non_owner(name)
        result = await client.request(
            "GET", f"{cluster.url(via)}/v2/{name}/tags/list", {"X-Zot-Cluster-Hop-Count": "1"}
        )
        self.assertGreaterEqual(result.code, 500, result)
        self.assertTrue(oci_error_codes(result), result)
        self.assertIn("disagree", result.body.decode())
        self.assertIn("cluster.members differ", cluster.replicas[via].log_text())
        # The owner never saw it, and the replica still serves.
        self.assertFalse([e for e in cluster.access_log(cluster.owner(name)) if name in e.path])
        self.assertTrue(cluster.replicas[via].running)
        await client.expect(404, "GET", f"{cluster.url(via)}/v2/{name}/tags/list")


class FailureTests(ClusterTestCase):
    """A dead owner affects exactly its own repositories, and only while it is down."""

    async def test_owner_down_then_back(self) -> None:
        cluster, client = await self.start_cluster()
        images = {name: small_image(name, layer_sizes=(512,)) for name in REPOSITORIES}
        await self.gather(
            [client.push_image(cluster.url(cluster.non_owner(n)), n, images[n], "v1") for n in REPOSITORIES]
        )
        dead = 1
        owned_by_dead = {n for n in REPOSITORIES if cluster.owner(n) == dead}
        self.assertTrue(0 < len(owned_by_dead) < len(REPOSITORIES))
        await cluster.stop_replica(dead)

        async def outcome(name: str, via: int) -> tuple[str, int, str]:
            result = await client.request(
                "GET", f"{cluster.url(via)}/v2/{name}/manifests/v1",
                {"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            if result.code == 503:
                self.assertEqual(oci_error_codes(result), ["UNAVAILABLE"], result)
                self.assertEqual(result.header("Content-Type"), "application/json")
                retry = result.header("Retry-After")
                self.assertTrue(retry is not None and retry.isdigit() and int(retry) > 0, result.headers)
                detail = result.json()["errors"][0]["detail"]
                self.assertEqual(detail["member"], cluster.members[dead], detail)
                self.assertTrue(detail.get("reason"), detail)
            else:
                self.assertEqual(result.code, 200, result)
                self.assertEqual(result.body, images[name].manifest)
            return name, via, "failed" if result.code == 503 else "ok"

        results = await self.gather([outcome(n, via) for n in REPOSITORIES for via in (0, 2)])
        failed = {name for name, _, state in results if state == "failed"}
        ok = {name for name, _, state in results if state == "ok"}
        self.assertEqual(failed, owned_by_dead)
        self.assertEqual(ok, set(REPOSITORIES) - owned_by_dead)
        self.assertEqual(len([r for r in results if r[2] == "failed"]), 2 * len(owned_by_dead))

        # Writes to the live owners keep working; a write for the dead owner gets the same 503.
        alive_name = next(n for n in REPOSITORIES if n not in owned_by_dead)
        via = next(i for i in (0, 2) if i != cluster.owner(alive_name))
        await client.push_image(cluster.url(via), alive_name, small_image(alive_name + "-v2"), "v2")
        dead_name = sorted(owned_by_dead)[0]
        post = await client.request("POST", f"{cluster.url(0)}/v2/{dead_name}/blobs/uploads/")
        self.assertEqual((post.code, oci_error_codes(post)), (503, ["UNAVAILABLE"]))
        # HEAD: the status and headers alone.
        head = await client.request("HEAD", f"{cluster.url(2)}/v2/{dead_name}/manifests/v1")
        self.assertEqual((head.code, head.body), (503, b""))
        self.assertIsNotNone(head.header("Retry-After"))
        # Routes that are never forwarded do not care.
        for via in (0, 2):
            await client.expect(200, "GET", f"{cluster.url(via)}/v2/")
        # The survivors logged the failures and keep running.
        for via in (0, 2):
            self.assertTrue(cluster.replicas[via].running)
            self.assertIn(f"owner {cluster.members[dead]} unreachable", cluster.replicas[via].log_text())

        await cluster.start_replica(dead)
        # Back: every repository works again through every replica, its data intact.
        await self.gather(
            [client.pull_image(cluster.url(via), n, "v1", images[n]) for n in REPOSITORIES for via in range(3)]
        )

class S3FailureTests(FailureTests):
    shared_storage = True


class IdentityTests(unittest.TestCase):
    timeout = 60

    async def test_no_matching_member_refuses_to_start(self) -> None:
        """A replica whose address and port match no member exits non-zero, listing the members."""
        members = ["127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"]
        daemon = ZotpyDaemon(
            self.mktemp(), {"cluster": {"members": members, "hashKey": HASH_KEY.decode()}}, address="127.0.0.2"
        )
        daemon.spawn()
        self.addCleanup(daemon.stop)
        code = await daemon.wait_exit(20)
        log = daemon.log_text()
        self.assertNotIn(code, (0, None), log)
        for member in members:
            self.assertIn(member, log)
        self.assertIn("cluster.members", log)
        self.assertIn("127.0.0.2", log)  # where it listens
        self.assertNotIn("zotpy listening on", log)

    async def test_refusal_is_a_message_not_a_traceback(self) -> None:
        """Like a config error, the identity refusal is one clear message, not a Python traceback."""
        daemon = ZotpyDaemon(
            self.mktemp(), {"cluster": {"members": ["127.0.0.1:1", "127.0.0.3:1"], "hashKey": HASH_KEY.decode()}},
            address="127.0.0.2",
        )
        daemon.spawn()
        self.addCleanup(daemon.stop)
        self.assertNotIn(await daemon.wait_exit(20), (0, None))
        self.assertNotIn("Traceback", daemon.log_text())

    async def test_specific_address_of_no_member_refuses_to_start(self) -> None:
        """Bound to 127.0.0.4, which no member names, on the members' port: refuse to start.

        The process can only ever receive connections on 127.0.0.4; claiming to
        be ``127.0.0.1:PORT`` (zot's local-interface rule) would make it serve
        member 0's repositories as their owner beside the real member 0.
        """
        port = free_port("127.0.0.4")
        members = [f"127.0.0.{i}:{port}" for i in (1, 2, 3)]
        daemon = ZotpyDaemon(
            self.mktemp(), {"cluster": {"members": members, "hashKey": HASH_KEY.decode()}},
            address="127.0.0.4", port=port,
        )
        daemon.spawn()
        self.addCleanup(daemon.stop)
        try:
            # Generous: a refusal comes after Python and the modules load, seconds on a loaded machine;
            # a replica that wrongly started never exits, so only a failure waits this long.
            code = await daemon.wait_exit(30)
        except Exception:
            self.fail(f"a replica bound to 127.0.0.4 started as a member:\n{daemon.log_text()}")
        self.assertNotIn(code, (0, None), daemon.log_text())

    async def test_owner_command(self) -> None:
        """``python -m zotpy owner`` agrees with the ring the replicas use."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        members = ["127.0.0.1:9000", "127.0.0.2:9000", "127.0.0.3:9000"]
        config = os.path.join(workdir, "config.json")
        with open(config, "w") as f:
            json.dump(
                {
                    "distSpecVersion": "1.1.0",
                    "storage": {"rootDirectory": workdir, "dedupe": False, "gc": False},
                    "http": {"address": "127.0.0.1", "port": "9000"},
                    "cluster": {"members": members, "hashKey": HASH_KEY.decode()},
                },
                f,
            )
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "zotpy", "owner", "-c", config, *REPOSITORIES[:5]],
            env=dict(os.environ, PYTHONPATH=REPO_ROOT), path=REPO_ROOT,
        )
        self.assertEqual(code, 0, err)
        ring = Ring(tuple(members), HASH_KEY)
        lines = out.decode().splitlines()
        self.assertEqual(len(lines), 5, out)
        for name, line in zip(REPOSITORIES[:5], lines):
            self.assertEqual(line.split("\t")[:2], [name, ring.owner(name)])


class HAProxyTests(ClusterTestCase):
    """The documented deployment: real HAProxy (round-robin, sticky cookie, health checks)
    in front of three replicas sharing one bucket."""

    shared_storage = True

    async def test_push_and_pull_through_haproxy(self) -> None:
        cluster, client = await self.start_cluster()
        haproxy = HAProxy(os.path.join(self.mktemp(), "haproxy"), cluster.members)
        await haproxy.start()
        self.addCleanup(haproxy.stop)
        base = haproxy.base_url

        names = cluster.spread_names("lb/app", 2)
        images = {name: small_image(name) for name in names}
        for name in names:  # sequential: round-robin then walks the replicas in turn
            await client.push_image(base, name, images[name], "v1")
        chunks = [pseudo_random("lb-chunk0", 200_000), pseudo_random("lb-chunk1", 150_000), b"end"]
        chunked_name = names[0]
        before_chunked = len(haproxy.entries())
        digest = await client.push_blob_chunked([base], chunked_name, chunks)
        for name in names:
            await client.pull_image(base, name, "v1", images[name])
            self.assertEqual(await client.tags(base, name), ["v1"])
        self.assertEqual(len(await client.pull_blob(base, chunked_name, digest)), sum(map(len, chunks)))

        # HAProxy spread the requests: every replica answered a fair share (HAProxy's log) ...
        served = haproxy.served_by()
        self.assertEqual(set(served), {"zot0", "zot1", "zot2"}, served)
        total = sum(served.values())
        for server, count in served.items():
            self.assertGreater(count, total // 6, f"round-robin is not spreading: {served}")
        # ... the chunked upload's legs landed on more than one replica ...
        legs = [e.server for e in haproxy.entries()[before_chunked:] if "/blobs/uploads/" in e.path]
        self.assertEqual(len(legs), 1 + len(chunks) + 1, legs)
        self.assertGreater(len(set(legs)), 1, legs)
        # ... and every replica received requests for repositories it does not own (forwarded on).
        for index in range(3):
            foreign = [
                e for e in cluster.access_log(index)
                if any(f"/v2/{n}/" in e.path for n in names if cluster.owner(n) != index)
            ]
            self.assertTrue(foreign, f"replica {index} got no request for another member's repository")

        # The sticky cookie: a client that sends it back stays on that replica.
        first = await client.request("GET", f"{base}/v2/")
        cookie = first.header("Set-Cookie")
        self.assertTrue(cookie and cookie.startswith("SERVER=zot"), first.headers)
        before = len(haproxy.entries())
        for _ in range(6):
            await client.expect(200, "GET", f"{base}/v2/_catalog", {"Cookie": cookie.split(";")[0]})
        stuck = {e.server for e in haproxy.entries()[before:]}
        self.assertEqual(stuck, {cookie.split(";")[0].split("=")[1]})

        # A replica that goes down is taken out by the health check; only its own
        # repositories fail (503 from the survivors), the others keep working through HAProxy.
        dead = 2
        await cluster.stop_replica(dead)
        await self.wait_for_log(haproxy, "zot-cluster/zot2 is DOWN")
        outcomes = {}
        for name in names:
            result = await client.request("GET", f"{base}/v2/{name}/manifests/v1")
            outcomes[name] = result.code
        self.assertEqual(
            outcomes, {n: 503 if cluster.owner(n) == dead else 200 for n in names}, outcomes
        )
        self.assertNotIn("zot2", {e.server for e in haproxy.entries()[-len(names):]})

        # Back: the health check brings it in again and its repositories work through HAProxy.
        await cluster.start_replica(dead)
        await self.wait_for_log(haproxy, "zot-cluster/zot2 is UP")
        before = len(haproxy.entries())
        for name in names:
            await client.pull_image(base, name, "v1", images[name])
        self.assertIn("zot2", {e.server for e in haproxy.entries()[before:]})

    async def wait_for_log(self, process: HAProxy, text: str, timeout: float = 10.0) -> None:
        for _ in range(int(timeout / 0.1)):
            if text in process.log_text():
                return
            await sleep(0.1)
        self.fail(f"{text!r} never appeared in HAProxy's log\n{process.describe()}")
