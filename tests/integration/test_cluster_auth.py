"""Authentication and access control across a real cluster: three replicas on 127.0.0.1-3 (each
with its own storage, so the catalog fans out), real HAProxy, skopeo with ``--creds`` and oras-py
with basic auth. The receiving replica refuses before forwarding; the owner checks again."""

from __future__ import annotations

import base64
import copy
import json
import os
from typing import Any, Mapping

import bcrypt
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests.integration import ocilayout
from tests.integration.cluster import ClusterTLS, RegistryClient, ZotpyCluster, small_image
from tests.integration.daemon import HTTPResult, require_binary, tail
from tests.integration.haproxy import HAProxy
from tests.tokenservice import TokenService
from zotpy.cluster.proxy import HOP_HEADER

USERS = {"alice": "alice-secret", "mallory": "mallory-secret"}
ACCESS = {
    "repositories": {
        "**": {"policies": [{"users": ["alice"], "actions": ["read", "create", "update", "delete"]}]},
        "public/**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]},
    },
    "adminPolicy": {"users": ["alice"], "actions": ["read", "create", "update", "delete"]},
}


def htpasswd_http(directory: str) -> dict[str, Any]:
    """The ``http`` section of a cluster with :data:`USERS` in an htpasswd file written in
    ``directory`` and :data:`ACCESS` as its access control."""
    htpasswd = os.path.join(directory, "htpasswd")
    with open(htpasswd, "wb") as stream:
        for user, password in USERS.items():
            stream.write(user.encode() + b":" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)) + b"\n")
    return {"auth": {"htpasswd": {"path": htpasswd}, "failDelay": 0}, "accessControl": ACCESS}


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()


class CredentialedClient(RegistryClient):
    """The cluster tests' client, sending ``Authorization`` with every request."""

    def __init__(self, authorization: str | None) -> None:
        super().__init__()
        self.authorization = authorization

    async def request(
        self, method: str, url: str, headers: Mapping[str, str] | None = None, data: bytes | None = None
    ) -> HTTPResult:
        sent = dict(headers or {})
        if self.authorization is not None:
            sent.setdefault("Authorization", self.authorization)
        return await super().request(method, url, sent, data)


class ClusterAuthTests(unittest.TestCase):
    timeout = 240

    async def start(self) -> ZotpyCluster:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        http = htpasswd_http(directory)
        cluster = ZotpyCluster(os.path.join(directory, "cluster"), extra={"http": http})
        await cluster.start()
        self.addCleanup(cluster.stop)
        return cluster

    def client(self, user: str | None) -> CredentialedClient:
        client = CredentialedClient(basic(user) if user else None)
        self.addCleanup(client.close)
        return client

    def code(self, result: HTTPResult) -> tuple[int, str]:
        return result.code, json.loads(result.body)["errors"][0]["code"] if result.body else ""

    async def test_policy_through_every_replica(self) -> None:
        cluster = await self.start()
        alice, mallory, anonymous = self.client("alice"), self.client("mallory"), self.client(None)
        private, public = "team/app", "public/base"
        images = {name: small_image(name) for name in (private, public)}
        for name, image in images.items():
            await alice.push_image(cluster.url(cluster.non_owner(name)), name, image, "v1")
            await alice.pull_image(cluster.url(cluster.non_owner(name, 2)), name, "v1", image)

        probe = "mallory-was-here"
        for index in range(3):
            base = cluster.url(index)
            # mallory is authenticated but allowed nothing outside public/**: 403 on every replica.
            got = await mallory.request("GET", f"{base}/v2/{private}/manifests/v1")
            self.assertEqual(self.code(got), (403, "DENIED"), index)
            if index != cluster.owner(private):
                got = await mallory.request("PUT", f"{base}/v2/{private}/manifests/{probe}", data=images[private].manifest)
                self.assertEqual(self.code(got), (403, "DENIED"), index)
            # No credentials: 401 with the challenge; but public/** is readable anonymously.
            got = await anonymous.request("GET", f"{base}/v2/{private}/manifests/v1")
            self.assertEqual(self.code(got), (401, "UNAUTHORIZED"), index)
            self.assertEqual(got.header("WWW-Authenticate"), 'Basic realm="zot"')
            await anonymous.pull_image(base, public, "v1", images[public])
            # The catalog fans out with the caller's credentials: each sees what it may read.
            self.assertEqual(await alice.catalog(base), [public, private])
            self.assertEqual(await anonymous.catalog(base), [public])

        # Refused by the receiving replica: the owner never saw mallory's PUT.
        owner_log = cluster.access_log(cluster.owner(private))
        self.assertFalse([entry for entry in owner_log if probe in entry.path], owner_log[-5:])
        # The owner checks again: a request that claims to be forwarded gets no free pass.
        owner = cluster.url(cluster.owner(private))
        for client, expected in ((mallory, (403, "DENIED")), (anonymous, (401, "UNAUTHORIZED"))):
            got = await client.request(
                "PUT", f"{owner}/v2/{private}/manifests/{probe}", {HOP_HEADER.decode(): "1"}, images[private].manifest
            )
            self.assertEqual(self.code(got), expected)
        self.assertEqual(await alice.tags(owner, private), ["v1"])

    async def test_skopeo_and_oras_through_haproxy(self) -> None:
        skopeo = require_binary("skopeo", "skopeo")
        cluster = await self.start()
        haproxy = HAProxy(os.path.join(self.mktemp(), "haproxy"), cluster.members)
        await haproxy.start()
        self.addCleanup(haproxy.stop)
        host = haproxy.base_url.split("://", 1)[1]
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        name = "skopeo/auth"
        image = ocilayout.build_image(os.path.join(tmp, "src"), tag="v1", layers=2, name="skopeo-auth")
        env = dict(os.environ, HOME=tmp, REGISTRY_AUTH_FILE=os.path.join(tmp, "auth.json"))

        async def skopeo_run(*args: str, expect: int = 0) -> bytes:
            out, err, code = await getProcessOutputAndValue(skopeo, ["--insecure-policy", *args], env=env, path=tmp)
            if code != expect:
                self.fail(f"skopeo {' '.join(args)} exited {code}\n{tail(err.decode('utf-8', 'replace'))}")
            return out + err

        creds = f"alice:{USERS['alice']}"
        await skopeo_run("copy", "--dest-tls-verify=false", "--dest-creds", creds, image.reference(),
                         f"docker://{host}/{name}:v1")
        raw = await skopeo_run("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"docker://{host}/{name}:v1")
        self.assertEqual(raw, image.manifest_bytes)
        dst = os.path.join(tmp, "dst")
        await skopeo_run("copy", "--src-tls-verify=false", "--src-creds", creds, f"docker://{host}/{name}:v1", f"oci:{dst}:v1")
        self.assertEqual(ocilayout.tagged_manifest_digest(dst, "v1"), image.manifest_digest)
        # Anonymous skopeo reads public/** (the /v2/ ping challenges, and skopeo goes on without credentials).
        await skopeo_run("copy", "--dest-tls-verify=false", "--dest-creds", creds, image.reference(),
                         f"docker://{host}/public/auth:v1")
        raw = await skopeo_run("inspect", "--raw", "--tls-verify=false", "--no-creds", f"docker://{host}/public/auth:v1")
        self.assertEqual(raw, image.manifest_bytes)
        await skopeo_run("inspect", "--raw", "--tls-verify=false", "--no-creds", f"docker://{host}/{name}:v1", expect=1)
        # A wrong password and a refused user fail, whichever replica HAProxy picks.
        for bad in (f"alice:wrong", f"mallory:{USERS['mallory']}"):
            output = await skopeo_run("inspect", "--raw", "--tls-verify=false", "--creds", bad,
                                      f"docker://{host}/{name}:v1", expect=1)
            self.assertRegex(output.decode("utf-8", "replace"), "unauthorized|denied|401|403")

        # oras-py with basic auth: push a file artifact, pull it back.
        artifact = os.path.join(tmp, "artifact.txt")
        with open(artifact, "w") as stream:
            stream.write("pushed by oras through HAProxy\n")
        outdir = os.path.join(tmp, "oras-out")

        def oras_round_trip() -> list[str]:
            import oras.client

            client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
            client.login(username="alice", password=USERS["alice"], hostname=host, config_path=os.path.join(tmp, "oras.json"))
            response = client.push(target=f"{host}/oras/artifact:v1", files=[artifact], disable_path_validation=True)
            response.raise_for_status()
            return client.pull(target=f"{host}/oras/artifact:v1", outdir=outdir)

        cwd = os.getcwd()
        os.chdir(tmp)  # oras-py names the layer by the path it was given
        try:
            pulled = await deferToThread(oras_round_trip)
        finally:
            os.chdir(cwd)
        self.assertEqual(len(pulled), 1, pulled)
        with open(pulled[0]) as stream:
            self.assertEqual(stream.read(), "pushed by oras through HAProxy\n")
        self.assertTrue(os.path.isdir(cluster.repo_dir(cluster.owner("oras/artifact"), "oras/artifact")))
        served = {entry.server for entry in haproxy.entries()}
        self.assertGreater(len(served), 1, served)




class ClusterBearerTests(unittest.TestCase):
    """skopeo does the Docker token flow against a non-owner; the owner verifies the same token."""

    timeout = 240

    async def test_skopeo_with_tokens_through_non_owners(self) -> None:
        skopeo = require_binary("skopeo", "skopeo")
        directory = os.path.abspath(self.mktemp())
        tokens = TokenService(os.path.join(directory, "tokens"), {
            "alice": ("alice-pw", {"*": ["pull", "push"]}),
            "bob": ("bob-pw", {"*": ["pull"]}),
        })
        realm = await tokens.start(self)
        bearer = {"realm": realm, "service": tokens.service, "cert": tokens.cert_path}
        cluster = ZotpyCluster(os.path.join(directory, "cluster"), extra={"http": {"auth": {"bearer": bearer}}})
        await cluster.start()
        self.addCleanup(cluster.stop)
        name = "tokens/app"
        push_via, pull_via = cluster.non_owner(name, 1), cluster.non_owner(name, 2)
        image = ocilayout.build_image(os.path.join(directory, "src"), tag="v1", layers=2, name="bearer")
        env = dict(os.environ, HOME=directory, REGISTRY_AUTH_FILE=os.path.join(directory, "auth.json"))

        async def run(*args: str, expect: int = 0) -> bytes:
            out, err, code = await getProcessOutputAndValue(skopeo, ["--insecure-policy", *args], env=env, path=directory)
            if code != expect:
                self.fail(f"skopeo {' '.join(args)} exited {code}\n{tail(err.decode('utf-8', 'replace'))}\n{cluster.describe()}")
            return out + err

        await run("copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw", image.reference(),
                  f"docker://{cluster.members[push_via]}/{name}:v1")
        raw = await run("inspect", "--raw", "--tls-verify=false", "--creds", "bob:bob-pw",
                        f"docker://{cluster.members[pull_via]}/{name}:v1")
        self.assertEqual(raw, image.manifest_bytes)
        # bob's tokens grant pull only: his push is refused.
        output = await run("copy", "--dest-tls-verify=false", "--dest-creds", "bob:bob-pw", image.reference(),
                           f"docker://{cluster.members[push_via]}/{name}:v2", expect=1)
        self.assertRegex(output.decode("utf-8", "replace"), "unauthorized|denied|insufficient")
        # The owner stored it, and it verified the tokens itself (the forwarded requests reached it).
        owner = cluster.owner(name)
        self.assertTrue(os.path.isdir(cluster.repo_dir(owner, name)))
        self.assertTrue(any(f"/v2/{name}/manifests/v1" in e.path and e.status == 201 for e in cluster.access_log(owner)))
        self.assertTrue(any(entry["sub"] == "alice" and entry["access"] for entry in tokens.issued))


class ClusterMutualTLSTests(unittest.TestCase):
    """Identities from client certificates (http.tls.cacert) through non-owners, unforgeable."""

    timeout = 240

    async def test_certificate_identity_through_non_owners(self) -> None:
        tls = ClusterTLS(os.path.abspath(self.mktemp()))
        access = {"repositories": {
            "**": {"policies": [{"users": ["alice"], "actions": ["read", "create", "update", "delete"]}]},
            "public/**": {"defaultPolicy": ["read"]},
        }}
        cluster = ZotpyCluster(os.path.join(tls.directory, "cluster"), tls=tls, extra={"http": {"accessControl": access}})
        await cluster.start()
        self.addCleanup(cluster.stop)

        def client_for(user: str) -> RegistryClient:
            holder = copy.copy(tls)
            holder.client = tls.ca.issue(user, [], client=True)  # CN = user, no member names
            client = RegistryClient(holder)
            self.addCleanup(client.close)
            return client

        alice, mallory = client_for("alice"), client_for("mallory")
        name = "team/app"
        image = small_image(name)
        owner = cluster.owner(name)
        await alice.push_image(cluster.url(cluster.non_owner(name)), name, image, "v1")
        await alice.pull_image(cluster.url(cluster.non_owner(name, 2)), name, "v1", image)
        self.assertTrue(os.path.isdir(cluster.repo_dir(owner, name)))
        for index in range(3):
            got = await mallory.request("GET", f"{cluster.url(index)}/v2/{name}/manifests/v1")
            self.assertEqual(got.code, 403, index)
            # Claiming to be alice in the header the replicas use between themselves changes nothing,
            # through a non-owner (which replaces it) or at the owner (which ignores it from a client).
            got = await mallory.request(
                "GET", f"{cluster.url(index)}/v2/{name}/manifests/v1",
                {"X-Zotpy-Client-Identity": "alice", HOP_HEADER.decode(): "1"} if index == owner
                else {"X-Zotpy-Client-Identity": "alice"},
            )
            self.assertEqual(got.code, 403, index)
            self.assertEqual(await alice.catalog(cluster.url(index)), [name])  # fan-out with alice's identity
            self.assertEqual(await mallory.catalog(cluster.url(index)), [])
