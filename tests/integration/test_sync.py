"""Sync against real upstreams: the Debian ``docker-registry`` (CNCF distribution 2.8) and another
zotpy, mirrored by real zotpy daemons (one, or a three-replica cluster), pulled with skopeo.

``docker-registry`` and ``skopeo`` must be installed (``.ci/run`` installs them): a missing binary
fails the test with what to install. Upstream requests are counted from docker-registry's access log,
where the sync client's User-Agent names the cluster member that sent each one.
"""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any, Awaitable, Callable

import attr
import bcrypt
from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient

from tests.integration.cluster import ZotpyCluster
from tests.integration.daemon import DockerRegistry, ZotpyDaemon, http_request, require_binary, sleep
from tests.syncimages import SyncImage, multi_arch, push_http, signature_for, single

_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) \S+ "[^"]*" "(?P<agent>[^"]*)"')
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
])


@attr.s(auto_attribs=True, frozen=True)
class Request:
    method: str
    path: str
    status: int
    agent: str


class Upstream(DockerRegistry):
    """docker-registry with its access log parsed; with ``users``, behind htpasswd Basic auth."""

    def __init__(self, workdir: str, users: dict[str, str] | None = None, binary: str | None = None) -> None:
        super().__init__(workdir, binary)
        self.users = users or {}
        if users:
            import bcrypt

            path = os.path.join(os.path.abspath(workdir), "htpasswd")
            with open(path, "w") as stream:
                for user, password in users.items():
                    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
                    stream.write(f"{user}:{hashed}\n")
            with open(self.config_path) as stream:
                config = json.load(stream)
            config["auth"] = {"htpasswd": {"realm": "zotpy-tests", "path": path}}
            with open(self.config_path, "w") as stream:
                json.dump(config, stream)
            self.ready_codes = (401,)

    def headers(self) -> dict[str, str]:
        if not self.users:
            return {}
        user, password = next(iter(self.users.items()))
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def requests(self) -> list[Request]:
        return [
            Request(m["method"], m["path"], int(m["status"]), m["agent"])
            for m in _ACCESS.finditer(self.log_text())
        ]

    def sync_requests(self, agent_part: str = "zotpy-sync") -> list[Request]:
        return [r for r in self.requests() if agent_part in r.agent]


def client_for(testcase: unittest.TestCase) -> HTTPClient:
    pool = HTTPConnectionPool(reactor, persistent=False)
    testcase.addCleanup(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool))


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 20.0, describe: Callable[[], str] = str) -> None:
    deadline = reactor.seconds() + timeout
    while not await check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s\n{describe()}")
        await sleep(0.2)


async def digest_at(base: str, repo: str, reference: str) -> str | None:
    result = await http_request("HEAD", f"{base}/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT})
    return result.header("Docker-Content-Digest") if result.code == 200 else None


async def tags_at(base: str, repo: str) -> list[str]:
    result = await http_request("GET", f"{base}/v2/{repo}/tags/list")
    return sorted(result.json().get("tags") or []) if result.code == 200 else []


def sync_config(registries: list[dict[str, Any]], credentials_file: str | None = None) -> dict[str, Any]:
    sync: dict[str, Any] = {"enable": True, "registries": registries}
    if credentials_file:
        sync["credentialsFile"] = credentials_file
    return {"extensions": {"sync": sync}}


class SyncIntegrationCase(unittest.TestCase):
    timeout = 120

    async def upstream(self, users: dict[str, str] | None = None) -> Upstream:
        upstream = Upstream(self.mktemp(), users, require_binary("docker-registry"))
        await upstream.start()
        self.addCleanup(upstream.stop)
        return upstream

    async def seed(self, upstream: Any, images: dict[str, SyncImage], headers: dict[str, str] | None = None) -> None:
        client = client_for(self)
        for name, image in images.items():
            repo, _, tag = name.partition(":")
            await push_http(client, upstream.base_url, repo, image, tag or None, headers)

    async def daemon(self, config: dict[str, Any], name: str = "zotpy") -> ZotpyDaemon:
        daemon = ZotpyDaemon(self.mktemp(), config, name=name)
        await daemon.start()
        self.addCleanup(daemon.stop)
        return daemon


class PeriodicTests(SyncIntegrationCase):
    async def test_mirrors_matching_content_and_follows_changes(self) -> None:
        upstream = await self.upstream()
        images = {
            "library/alpine:3.19": multi_arch("alpine-3.19"),  # OCI index, 2 platforms
            "library/alpine:3.20": multi_arch("alpine-3.20", docker=True),  # Docker manifest list
            "library/alpine:3.20-rc1": single("alpine-rc"),
            "library/alpine:edge": single("alpine-edge"),
            "library/busybox:1.36": single("busybox", docker=True),
            "tools/helper:1.0": single("helper"),
        }
        await self.seed(upstream, images)
        zotpy = await self.daemon(sync_config([{
            "urls": [upstream.base_url],
            "pollInterval": "1s",
            "content": [{"prefix": "/library/**", "tags": {"regex": "^[0-9]", "excludeRegex": "-rc"}}],
        }]))

        async def mirrored() -> bool:
            return (await tags_at(zotpy.base_url, "library/alpine") == ["3.19", "3.20"]
                    and await tags_at(zotpy.base_url, "library/busybox") == ["1.36"])

        await wait_for("library/* mirrored", mirrored, describe=zotpy.describe)
        for name, image in images.items():
            repo, tag = name.split(":")
            expected = image.digest if name in ("library/alpine:3.19", "library/alpine:3.20", "library/busybox:1.36") else None
            self.assertEqual(await digest_at(zotpy.base_url, repo, tag), expected, name)
            for child in image.children if expected else ():  # every platform, same bytes
                result = await http_request("GET", f"{zotpy.base_url}/v2/{repo}/manifests/{child.digest}")
                self.assertEqual((result.code, result.body), (200, child.body))
        self.assertEqual(await tags_at(zotpy.base_url, "tools/helper"), [])
        catalog = (await http_request("GET", f"{zotpy.base_url}/v2/_catalog")).json()["repositories"]
        self.assertEqual(catalog, ["library/alpine", "library/busybox"])

        # Each blob crossed once; later polls only ask for digests.
        fetched = [r.path for r in upstream.sync_requests() if r.method == "GET" and "/blobs/" in r.path]
        self.assertEqual(len(fetched), len(set(fetched)))
        self.assertIn("sync: " + upstream.base_url + ": mirrored library/alpine:3.19 as library/alpine:3.19", zotpy.log_text())

        # A tag moved upstream is followed on a next poll.
        rebuilt = single("busybox-rebuilt")
        await self.seed(upstream, {"library/busybox:1.36": rebuilt})

        async def followed() -> bool:
            return await digest_at(zotpy.base_url, "library/busybox", "1.36") == rebuilt.digest

        await wait_for("library/busybox:1.36 updated", followed, timeout=10, describe=zotpy.describe)


class OnDemandTests(SyncIntegrationCase):
    async def skopeo(self, *args: str) -> tuple[int, str]:
        binary = require_binary("skopeo")
        env = dict(os.environ, REGISTRY_AUTH_FILE=os.path.join(self.tmp, "auth.json"), HOME=self.tmp)
        out, err, code = await getProcessOutputAndValue(binary, ["--insecure-policy", *args], env=env, path=self.tmp)
        return code, (out + err).decode("utf-8", "replace")

    async def test_ten_concurrent_pulls_fetch_once_then_serve_without_upstream(self) -> None:
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)
        upstream = await self.upstream()
        image = multi_arch("app")
        await self.seed(upstream, {"library/app:1.0": image})
        zotpy = await self.daemon(sync_config([{"urls": [upstream.base_url], "onDemand": True}]))

        async def pull(index: int) -> tuple[int, str]:
            return await self.skopeo(
                "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                f"docker://{zotpy.hostport}/library/app:1.0", f"oci:{self.tmp}/pull{index}:1.0",
            )

        results = await defer.gatherResults([defer.ensureDeferred(pull(i)) for i in range(10)])
        for code, output in results:
            self.assertEqual(code, 0, f"{output[-3000:]}\n{zotpy.describe()}")
        for index in range(10):
            with open(os.path.join(self.tmp, f"pull{index}", "index.json")) as stream:
                self.assertEqual(json.load(stream)["manifests"][0]["digest"], image.digest)

        synced = upstream.sync_requests()
        gets = [r.path for r in synced if r.method == "GET"]
        self.assertEqual(gets.count("/v2/library/app/manifests/1.0"), 1, synced)
        for digest in image.blobs:
            self.assertEqual(gets.count(f"/v2/library/app/blobs/{digest}"), 1, synced)
        for child in image.children:
            self.assertEqual(gets.count(f"/v2/library/app/manifests/{child.digest}"), 1, synced)

        await upstream.stop()
        code, output = await self.skopeo(
            "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
            f"docker://{zotpy.hostport}/library/app:1.0", f"oci:{self.tmp}/after:1.0",
        )
        self.assertEqual(code, 0, f"{output[-3000:]}\n{zotpy.describe()}")
        missing = await http_request("GET", f"{zotpy.base_url}/v2/library/other/manifests/1.0")
        self.assertEqual(missing.code, 404)


class AuthTests(SyncIntegrationCase):
    async def test_htpasswd_credentials_and_a_wrong_password(self) -> None:
        upstream = await self.upstream(users={"alice": "s3cret"})
        image = single("private")
        await self.seed(upstream, {"private/app:1": image}, upstream.headers())
        credentials = {}
        for name, password in (("right", "s3cret"), ("wrong", "guess")):
            path = os.path.abspath(self.mktemp())
            with open(path, "w") as stream:
                json.dump({upstream.hostport: {"username": "alice", "password": password}}, stream)
            credentials[name] = path
        right, wrong = await defer.gatherResults([
            defer.ensureDeferred(self.daemon(sync_config(
                [{"urls": [upstream.base_url], "onDemand": True}], credentials["right"]), name="right")),
            defer.ensureDeferred(self.daemon(sync_config(
                [{"urls": [upstream.base_url], "onDemand": True, "maxRetries": 2, "retryDelay": "200ms"}],
                credentials["wrong"]), name="wrong")),
        ])
        self.assertEqual(await digest_at(right.base_url, "private/app", "1"), image.digest)

        result = await http_request("GET", f"{wrong.base_url}/v2/private/app/manifests/1")
        self.assertEqual(result.code, 404)
        log = wrong.log_text()
        self.assertIn("the credentials of user 'alice' from extensions.sync.credentialsFile were refused", log)
        self.assertIn("retry 2 of 2", log)
        refused = [r for r in upstream.sync_requests() if r.status == 401 and r.path == "/v2/private/app/manifests/1"]
        # The right one: one challenge. The wrong one: one challenge, then the refused password once per
        # attempt (1 + maxRetries 2).
        self.assertEqual(len(refused), 1 + 1 + 3, refused)


class ZotpyUpstreamTests(SyncIntegrationCase):
    async def test_another_zotpy_with_referrers(self) -> None:
        source = await self.daemon({}, name="upstream-zotpy")
        image = multi_arch("app")
        signature = signature_for(image)
        await self.seed(source, {"apps/web:2.0": image, "apps/web": signature})
        mirror = await self.daemon(sync_config([{
            "urls": [source.base_url],
            "pollInterval": "1s",
            "onDemand": True,
            "content": [{"prefix": "/apps/**", "destination": "/mirror", "stripPrefix": True}],
        }]), name="mirror-zotpy")

        async def mirrored() -> bool:
            return await digest_at(mirror.base_url, "mirror/web", "2.0") == image.digest

        await wait_for("apps/web mirrored as mirror/web", mirrored, describe=mirror.describe)

        async def has_referrer() -> bool:
            result = await http_request("GET", f"{mirror.base_url}/v2/mirror/web/referrers/{image.digest}")
            return [m["digest"] for m in result.json()["manifests"]] == [signature.digest]

        await wait_for("the signature came along", has_referrer, timeout=5, describe=mirror.describe)


class ZotpyUpstreamWithAuthTests(SyncIntegrationCase):
    async def test_zotpy_upstream_with_htpasswd_and_a_policy(self) -> None:
        """A zotpy upstream with http.auth and accessControl: the mirror's credentials are used for
        the upstream's Basic challenge; a user the policy refuses gets nothing mirrored."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        htpasswd = os.path.join(directory, "htpasswd")
        with open(htpasswd, "wb") as stream:
            for user, password in (("mirror", "mirror-pw"), ("pusher", "pusher-pw"), ("nobody", "nobody-pw")):
                stream.write(user.encode() + b":" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)) + b"\n")
        access = {"repositories": {"**": {"policies": [
            {"users": ["pusher"], "actions": ["read", "create", "update"]},
            {"users": ["mirror"], "actions": ["read"]},
        ]}}}
        source = await self.daemon({"http": {"auth": {"htpasswd": {"path": htpasswd}}, "accessControl": access}},
                                   name="upstream-zotpy-auth")
        image = single("guarded")
        pusher = {"Authorization": "Basic " + base64.b64encode(b"pusher:pusher-pw").decode()}
        await self.seed(source, {"guarded/app:1": image}, pusher)
        mirrors = {}
        for user in ("mirror", "nobody"):
            path = os.path.join(directory, f"{user}.json")
            with open(path, "w") as stream:
                json.dump({source.hostport: {"username": user, "password": f"{user}-pw"}}, stream)
            mirrors[user] = await self.daemon(sync_config(
                [{"urls": [source.base_url], "onDemand": True}], path), name=f"mirror-{user}")
        self.assertEqual(await digest_at(mirrors["mirror"].base_url, "guarded/app", "1"), image.digest)
        result = await http_request("GET", f"{mirrors['nobody'].base_url}/v2/guarded/app/manifests/1")
        self.assertEqual(result.code, 404)


class ClusterTests(SyncIntegrationCase):
    timeout = 180

    async def test_each_repository_is_synced_by_its_owner_only(self) -> None:
        require_binary("skopeo")
        upstream = await self.upstream()
        cluster = ZotpyCluster(self.mktemp(), size=3, extra=sync_config([
            {"urls": [upstream.base_url], "pollInterval": "1s",
             "content": [{"prefix": "/team/**", "destination": "/mirror", "stripPrefix": True}]},
            {"urls": [upstream.base_url], "onDemand": True, "content": [{"prefix": "/ondemand/**"}]},
        ]))
        # Two repositories owned by each replica, by their local names (upstream names hash elsewhere).
        chosen = [name.removeprefix("mirror/") for name in cluster.spread_names("mirror/svc", 2)]
        images = {f"team/{name}:1.0": single(name) for name in chosen}
        images["ondemand/tool:1"] = single("tool")
        await self.seed(upstream, images)
        await cluster.start()
        self.addCleanup(cluster.stop)

        async def everywhere() -> bool:
            for name in chosen:
                if not os.path.exists(os.path.join(cluster.repo_dir(cluster.owner(f"mirror/{name}"), f"mirror/{name}"), "index.json")):
                    return False
            return True

        await wait_for("every repository on its owner", everywhere, describe=cluster.describe)
        await sleep(2.5)  # a couple more polls: nobody else may touch them
        for name in chosen:
            local = f"mirror/{name}"
            owner = cluster.owner(local)
            for member in range(3):
                present = os.path.exists(cluster.repo_dir(member, local))
                self.assertEqual(present, member == owner, f"{local} on replica {member} (owner {owner})")
            agents = {r.agent for r in upstream.sync_requests() if r.path.startswith(f"/v2/team/{name}/")}
            self.assertEqual(agents, {f"zotpy-sync (cluster member {cluster.members[owner]})"}, local)
            self.assertIn(f"as {local}:1.0", cluster.replicas[owner].log_text())
            # Any replica serves it (forwarded to the owner).
            self.assertEqual(await digest_at(cluster.url(cluster.non_owner(local)), local, "1.0"), images[f"team/{name}:1.0"].digest)

        # On demand through a replica that does not own the repository: the owner fetches.
        local = "ondemand/tool"
        owner = cluster.owner(local)
        via = cluster.non_owner(local)
        self.assertEqual(await digest_at(cluster.url(via), local, "1"), images["ondemand/tool:1"].digest)
        agents = {r.agent for r in upstream.sync_requests() if r.path.startswith("/v2/ondemand/tool/")}
        self.assertEqual(agents, {f"zotpy-sync (cluster member {cluster.members[owner]})"})
        for member in range(3):
            self.assertEqual(os.path.exists(cluster.repo_dir(member, local)), member == owner, member)
