"""The scale-out cluster over TLS: replicas serve https with certificates from a
test CA (IP SANs), require client certificates, verify their peers against
``cluster.tls.cacert`` and present ``cluster.tls.cert`` to them (mutual TLS).

A peer whose certificate comes from another CA must be refused, in both
directions, with a 503 ``UNAVAILABLE`` from the replica that tried, never
silently accepted; everything that does not cross that peer keeps working.
"""

from __future__ import annotations

import json
import os

from twisted.trial import unittest

from tests import negotiating
from tests.integration.cluster import (
    ClusterTLS,
    RegistryClient,
    ZotpyCluster,
    oci_error_codes,
    small_image,
)


class TLSClusterTestCase(unittest.TestCase):
    timeout = 120

    async def start_tls_cluster(self, **tls_options: object) -> tuple[ZotpyCluster, RegistryClient, ClusterTLS]:
        workdir = os.path.abspath(self.mktemp())
        tls = ClusterTLS(os.path.join(workdir, "certs"), **tls_options)  # type: ignore[arg-type]
        cluster = ZotpyCluster(workdir, tls=tls)
        await cluster.start()
        self.addCleanup(cluster.stop)
        client = RegistryClient(tls)
        self.addCleanup(client.close)
        return cluster, client, tls

    async def manifest_status(
        self, client: RegistryClient, cluster: ZotpyCluster, name: str, via: int
    ) -> tuple[int, list[str], dict]:
        result = await client.request(
            "GET", f"{cluster.url(via)}/v2/{name}/manifests/v1",
            {"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        detail = result.json()["errors"][0].get("detail", {}) if result.code >= 400 else {}
        return result.code, oci_error_codes(result), detail


class MutualTLSTests(TLSClusterTestCase):
    async def test_push_via_non_owner_over_mutual_tls(self) -> None:
        cluster, client, tls = await self.start_tls_cluster()
        self.assertTrue(all(url.startswith("https://") for url in map(cluster.url, range(3))))
        names = cluster.spread_names("tls/app", 2)
        images = {name: small_image(name) for name in names}
        for name in names:
            await client.push_image(cluster.url(cluster.non_owner(name)), name, images[name], "v1")
        for name in names:
            for via in range(3):
                await client.pull_image(cluster.url(via), name, "v1", images[name])
            self.assertEqual(await client.tags(cluster.url(cluster.non_owner(name, 2)), name), ["v1"])
            # The owner served the forwarded requests (over the peers' TLS connections).
            owner_saw = [e for e in cluster.access_log(cluster.owner(name)) if e.path == f"/v2/{name}/manifests/v1"]
            self.assertEqual(len([e for e in owner_saw if e.method == "PUT"]), 1)
            self.assertEqual(len([e for e in owner_saw if e.method == "GET"]), 3)
            # Data on the owner only.
            for index in range(3):
                self.assertEqual(
                    os.path.isdir(cluster.repo_dir(index, name)), index == cluster.owner(name), (name, index)
                )

        # The replicas really require a client certificate: without one the handshake is refused.
        anonymous = RegistryClient(tls, client_certificate=False, persistent=False)
        for via in range(3):
            with self.assertRaises(Exception) as caught:
                await anonymous.expect(200, "GET", f"{cluster.url(via)}/v2/")
            self.assertFalse(isinstance(caught.exception, AssertionError), f"the replica answered: {caught.exception}")
        # ... and plain http is not served on the TLS port.
        plain = RegistryClient(persistent=False, timeout=5)
        with self.assertRaises(Exception):
            await plain.request("GET", f"http://{cluster.members[0]}/v2/")

    async def test_peer_without_client_certificate_is_refused(self) -> None:
        """``cluster.tls`` without cert/key: peers that require one refuse every forwarded request."""
        cluster, client, tls = await self.start_tls_cluster(peer_client_cert=False)
        names = cluster.spread_names("nocert/app", 1)
        for name in names:
            await client.push_image(cluster.url(cluster.owner(name)), name, small_image(name), "v1")
        for name in names:
            for via in range(3):
                code, codes, detail = await self.manifest_status(client, cluster, name, via)
                if via == cluster.owner(name):
                    self.assertEqual(code, 200)
                else:
                    self.assertEqual((code, codes), (503, ["UNAVAILABLE"]), (name, via, detail))
                    self.assertEqual(detail.get("member"), cluster.members[cluster.owner(name)])
                    self.assertIn("certificate required", str(detail.get("reason")).lower(), detail)
        for index in range(3):
            self.assertTrue(cluster.replicas[index].running)


class NegotiatingClientTests(TLSClusterTestCase):
    async def test_clients_offering_alpn_through_a_non_owner(self) -> None:
        """curl, openssl s_client and Python's ssl offer h2 and http/1.1 (as Go's clients do); through
        a replica that forwards to the owner over its own TLS connection, each gets http/1.1 and the tags."""
        cluster, client, tls = await self.start_tls_cluster()
        name = cluster.spread_names("alpn/app", 1)[0]
        await client.push_image(cluster.url(cluster.owner(name)), name, small_image(name), "v1")
        url = f"{cluster.url(cluster.non_owner(name))}/v2/{name}/tags/list"
        exchanges = {
            "curl": await negotiating.curl(url, tls.bundle_path, tls.client),
            "curl --http1.1": await negotiating.curl(url, tls.bundle_path, tls.client, http1_only=True),
            "openssl s_client": await negotiating.openssl_s_client(url, tls.bundle_path, tls.client),
            "python ssl": await negotiating.python_ssl(url, tls.bundle_path, tls.client),
        }
        for who, exchange in exchanges.items():
            self.assertEqual((exchange.alpn, exchange.status), ("http/1.1", 200), (who, exchange.body))
            self.assertEqual(json.loads(exchange.body), {"name": name, "tags": ["v1"]}, who)
        owner_saw = [e for e in cluster.access_log(cluster.owner(name)) if e.path == f"/v2/{name}/tags/list"]
        self.assertEqual(len(owner_saw), len(exchanges))


class ForeignCATests(TLSClusterTestCase):
    async def test_peer_certificate_from_another_ca_is_refused(self) -> None:
        """Replica 2's certificate (server and client) comes from another CA.

        - forwarded to replica 2 by 0 or 1: 503 (0 and 1 cannot verify it);
        - forwarded by replica 2 to 0 or 1: 503 (they refuse its client certificate);
        - replica 2's own repositories through replica 2: served;
        - between replicas 0 and 1: served.
        """
        rogue = 2
        cluster, client, tls = await self.start_tls_cluster(rogue=frozenset({rogue}))
        names = cluster.spread_names("rogue/app", 2)
        images = {name: small_image(name, layer_sizes=(256,)) for name in names}
        for name in names:  # pushed straight to the owner: no forwarding needed
            await client.push_image(cluster.url(cluster.owner(name)), name, images[name], "v1")

        matrix = {}
        for name in names:
            owner = cluster.owner(name)
            for via in range(3):
                code, codes, detail = await self.manifest_status(client, cluster, name, via)
                matrix[(owner, via)] = matrix.get((owner, via), set()) | {code}
                if code == 503:
                    self.assertEqual(codes, ["UNAVAILABLE"])
                    self.assertEqual(detail.get("member"), cluster.members[owner], detail)
                    reason = str(detail.get("reason")).lower()
                    if via == rogue:
                        # The owner refused the rogue's client certificate (TLS alert).
                        self.assertIn("unknown ca", reason, detail)
                    else:
                        # This side refused the rogue's server certificate.
                        self.assertIn("certificate verify failed", reason, detail)
        expected = {
            (owner, via): {200 if owner == via or rogue not in (owner, via) else 503}
            for owner in range(3)
            for via in range(3)
        }
        self.assertEqual(matrix, expected)

        # Writes follow the same rule: a push to the rogue's repository through replica 0 fails.
        rogue_name = next(n for n in names if cluster.owner(n) == rogue)
        post = await client.request("POST", f"{cluster.url(0)}/v2/{rogue_name}/blobs/uploads/")
        self.assertEqual((post.code, oci_error_codes(post)), (503, ["UNAVAILABLE"]))
        # Nobody crashed.
        for index in range(3):
            self.assertTrue(cluster.replicas[index].running)
