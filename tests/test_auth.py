"""Authentication and access control (zotpy.auth): unit tests of the rules, and the real HTTP
site with a local store behind ``AuthResource`` (bcrypt htpasswd files made here)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import time
from typing import Any

import bcrypt
import jwt
from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from zope.interface import implementer

from tests.support import http_client, local_store, serve
from tests.test_api import async_test
from tests.tokenservice import TokenService
from zotpy.api import routes
from zotpy.api.site import registry_resource
from zotpy.auth import actions
from zotpy.auth.basic import decode_basic
from zotpy.auth.cache import CredentialCache
from zotpy.auth.factory import protected
from zotpy.auth.htpasswd import HtpasswdChecker
from zotpy.auth.identity import ANONYMOUS, AuthenticationFailed, IAuthenticator, Identity
from zotpy.auth.policy import AccessPolicy
from zotpy.auth.ratelimit import RateLimiter, RateLimitResource
from zotpy.auth.resource import AuthResource
from zotpy.auth.settings import RateLimitSettings
from zotpy.cluster.proxy import HOP_HEADER
from zotpy.config import ConfigError, load_config, parse_config
from zotpy.doublestar import glob_match as glob_matches
from zotpy.observability.reload import Reloader
from zotpy.oci.digest import parse_digest
from zotpy.tap import _tag_lookup

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "configs")


def htpasswd_file(directory: str, users: dict[str, str], name: str = "htpasswd") -> str:
    """An htpasswd file with bcrypt entries (cost 4: fast, and still bcrypt)."""
    path = os.path.join(directory, name)
    with open(path, "wb") as stream:
        for user, password in users.items():
            stream.write(user.encode() + b":" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)) + b"\n")
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def config_with(http: dict[str, Any]) -> Any:
    return parse_config({"storage": {"rootDirectory": "/unused", "gc": False, "dedupe": False}, "http": http})


def policy_fixture() -> dict[str, Any]:
    with open(os.path.join(FIXTURES, "zot-config-policy.json")) as stream:
        document: dict[str, Any] = json.load(stream)
    return document


class GlobTests(unittest.TestCase):
    def test_doublestar(self) -> None:
        cases = [
            ("**", "a/b/c", True), ("infra/*", "infra/a", True), ("infra/*", "infra/a/b", False),
            ("infra/**", "infra", True), ("infra/**", "infra/a/b", True), ("infra/**", "infrastructure", False),
            ("a/**/b", "a/b", True), ("a/**/b", "a/x/y/b", True), ("**/b", "b", True), ("**/b", "x/b", True),
            ("{a,b}/c", "b/c", True), ("{a,b}/c", "d/c", False), ("[!x]y", "ay", True), ("[!x]y", "xy", False),
            ("a.b", "axb", False), ("a?", "ab", True), ("a?", "a/", False),
        ]
        for pattern, name, expected in cases:
            self.assertEqual(glob_matches(pattern, name), expected, (pattern, name))


class PolicyTests(unittest.TestCase):
    """zot's sample policy file (conditions removed: zotpy refuses them by name)."""

    def setUp(self) -> None:
        document = policy_fixture()
        del document["http"]["accessControl"]["repositories"]["prod/**"]
        self.policy = AccessPolicy(config_with({"accessControl": document["http"]["accessControl"]}).http.access_control)

    def can(self, user: str, action: str, repository: str, groups: frozenset[str] = frozenset()) -> bool:
        return self.policy.can(Identity(user, groups), action, repository)

    def test_longest_glob_wins(self) -> None:
        # "**" lets charlie update everywhere, but "infra/*" is longer and only reads for him.
        self.assertTrue(self.can("charlie", "update", "anything"))
        self.assertFalse(self.can("charlie", "update", "infra/app"))
        self.assertTrue(self.can("charlie", "read", "infra/app"))
        # "infra/*" does not match two levels down: "**" applies again.
        self.assertTrue(self.can("charlie", "update", "infra/app/x"))

    def test_users_groups_and_default(self) -> None:
        self.assertTrue(self.can("mary", "delete", "x"))
        self.assertTrue(self.can("jim", "delete", "x"))  # group2 from accessControl.groups
        self.assertFalse(self.can("jack", "delete", "x"))  # group1: read/create/update
        self.assertTrue(self.can("jack", "update", "x"))
        self.assertTrue(self.can("someone", "create", "x"))  # defaultPolicy
        self.assertFalse(self.can("someone", "update", "x"))
        self.assertTrue(self.can("someone", "update", "tmp/a/b"))
        self.assertTrue(self.can("bob", "create", "repos2/repo"))
        self.assertFalse(self.can("bob", "delete", "repos2/repo"))
        self.assertTrue(self.can("x", "delete", "infra/a", frozenset({"platformteam"})))  # an LDAP-style group

    def test_anonymous_gets_only_anonymous_policy(self) -> None:
        self.assertFalse(self.policy.can(ANONYMOUS, "read", "x"))  # defaultPolicy is for the authenticated

    def test_admin_everywhere(self) -> None:
        self.assertTrue(self.can("admin", "delete", "infra/a"))
        self.assertTrue(self.can("x", "delete", "repos2/repo", frozenset({"admins"})))
        self.assertTrue(self.policy.reader(Identity("admin"))("nothing/matches/this"))

    def test_reader_filters(self) -> None:
        document = {"repositories": {"public/**": {"anonymousPolicy": ["read"]}, "team/**": {"defaultPolicy": ["read"]}}}
        policy = AccessPolicy(config_with({"accessControl": document}).http.access_control)
        anonymous = policy.reader(ANONYMOUS)
        self.assertEqual([n for n in ["public/a", "team/b", "other"] if anonymous(n)], ["public/a"])
        user = policy.reader(Identity("u"))
        self.assertEqual([n for n in ["public/a", "team/b", "other"] if user(n)], ["team/b"])


class SettingsTests(unittest.TestCase):
    def problems(self, http: dict[str, Any]) -> list[tuple[str, str]]:
        error = self.assertRaises(ConfigError, config_with, http)
        return list(error.problems)

    def test_problems_name_their_key(self) -> None:
        paths = [path for path, _ in self.problems({
            "auth": {"htpasswd": {"path": "/nonexistent/htpasswd"}, "failDelay": "5", "bogus": 1},
            "accessControl": {"repositories": {"**": {"policies": [{"actions": ["read", "push"]}], "x": 1}}},
        })]
        self.assertEqual(sorted(paths), sorted([
            "http.auth.bogus", "http.auth.htpasswd.path", "http.auth.failDelay",
            "http.accessControl.repositories.**.x", "http.accessControl.repositories.**.policies[0].actions",
        ]))

    def test_conditions_refused_by_name(self) -> None:
        document = policy_fixture()
        directory = tempfile.mkdtemp()
        document["http"]["auth"]["htpasswd"]["path"] = htpasswd_file(directory, {"a": "b"})
        [(path, message)] = self.problems(document["http"])
        self.assertEqual(path, "http.accessControl.repositories.prod/**.policies[0].conditions")
        self.assertIn("not implemented", message)

    def test_garbage_htpasswd_refused_at_start(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "htpasswd")
        with open(path, "w") as stream:
            stream.write("alice:{SHA}not-bcrypt\n")
        [(key, message)] = self.problems({"auth": {"htpasswd": {"path": path}}})
        self.assertEqual(key, "http.auth.htpasswd.path")
        self.assertIn("line 1", message)

    def test_loads(self) -> None:
        path = htpasswd_file(tempfile.mkdtemp(), {"a": "b"})
        http = config_with({"realm": "R", "auth": {"htpasswd": {"path": path}, "failDelay": 1}}).http
        self.assertEqual((http.realm, http.auth.htpasswd.path, http.auth.fail_delay), ("R", path, 1.0))
        self.assertIsNone(config_with({"auth": {}}).http.auth)


class ActionTests(unittest.TestCase):
    """Access control takes routes from the API's table (zotpy.api.routes): every route and method
    the API serves maps to zot's action."""

    def test_every_route_in_the_table_has_an_action(self) -> None:
        expected = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "create", "PATCH": "create",
                    "DELETE": "delete"}
        params = {"name": "team/app", "reference": "v1", "session": "u-1", "digest": "sha256:" + "0" * 64}
        seen = 0
        for route in routes.ROUTES:
            path = re.sub(r"<(?:path:)?(\w+)>", lambda m: params[m.group(1)], route.pattern)
            for method in route.methods:
                need = actions.need(routes.match(method, path), {})
                if route is routes.BASE_ROUTE or route is routes.CATALOG:
                    self.assertEqual(need.kind, actions.BASE if route is routes.BASE_ROUTE else actions.CATALOG)
                    continue
                seen += 1
                self.assertEqual((need.kind, need.repository, need.action),
                                 (actions.REPOSITORY, "team/app", expected[method]), (method, route.pattern))
        self.assertEqual(seen, 17)  # the repository routes' method pairs the API serves

    def test_update_mount_and_unserved(self) -> None:
        tag = actions.need(routes.match("PUT", "/v2/a/manifests/v1"), {})
        self.assertEqual((tag.action, tag.tag), ("create", "v1"))  # an update when v1 exists
        for reference in ("latest", "sha256:" + "0" * 64):
            self.assertIsNone(actions.need(routes.match("PUT", f"/v2/a/manifests/{reference}"), {}).tag)
        mount = actions.need(routes.match("POST", "/v2/a/blobs/uploads/"), {b"mount": [b"sha256:x"], b"from": [b"b/c"]})
        self.assertEqual((mount.action, mount.mount_from), ("create", "b/c"))
        # A method the route does not serve still needs its method's action (the API answers 405).
        self.assertEqual(actions.need(routes.match("POST", "/v2/a/manifests/v1"), {}).action, "create")
        for method, path in [("GET", "/v2/a/nothing"), ("GET", "/v2/UPPER/tags/list"), ("GET", "/v3/")]:
            self.assertEqual(actions.need(routes.match(method, path), {}).kind, actions.OTHER, path)


class BasicDecodingTests(unittest.TestCase):
    def test_malformed(self) -> None:
        for credentials in [b"", b"!!!", base64.b64encode(b"nocolon"), base64.b64encode(b":nouser"),
                            base64.b64encode(b"\xff\xfe:x"), b"A" * 10240]:
            self.assertRaises(AuthenticationFailed, decode_basic, credentials)
        self.assertEqual(decode_basic(base64.b64encode(b"u:p:q")), ("u", "p:q"))
        self.assertEqual(decode_basic(base64.b64encode(b":")), ("", ""))


class CacheTests(unittest.TestCase):
    def test_expiry_and_bound(self) -> None:
        clock = task.Clock()
        cache = CredentialCache(clock, ttl=10, capacity=2)
        for header in (b"a", b"b", b"c"):
            cache.put(cache.key(header), Identity(header.decode()))
        self.assertIsNone(cache.get(cache.key(b"a")))  # evicted: bounded
        self.assertEqual(cache.get(cache.key(b"c")).identity, Identity("c"))
        clock.advance(10)
        self.assertIsNone(cache.get(cache.key(b"c")))  # expired
        self.assertNotIn(b"c", [bytes(k) for k in cache._entries])  # keys are hashes, not headers


class HtpasswdTests(unittest.TestCase):
    def setUp(self) -> None:
        self.pool = ThreadPool(1, 2, "test-bcrypt")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.directory = tempfile.mkdtemp()
        self.path = htpasswd_file(self.directory, {"alice": "secret"})
        self.clock = task.Clock()
        self.changes = 0
        self.checker = HtpasswdChecker(self.path, _Reactor(self.clock), self.pool, on_change=self._changed)

    def _changed(self) -> None:
        self.changes += 1

    @async_test
    async def test_checks_and_reloads(self) -> None:
        self.assertEqual(await self.checker.check("alice", "secret"), Identity("alice"))
        with self.assertRaises(AuthenticationFailed):
            await self.checker.check("alice", "wrong")
        with self.assertRaises(AuthenticationFailed):
            await self.checker.check("nobody", "secret")
        os.replace(htpasswd_file(self.directory, {"bob": "pw"}, "new"), self.path)
        self.clock.advance(2)
        self.assertEqual(await self.checker.check("bob", "pw"), Identity("bob"))
        self.assertEqual(self.changes, 1)
        with self.assertRaises(AuthenticationFailed):
            await self.checker.check("alice", "secret")

    @async_test
    async def test_garbage_keeps_last_good(self) -> None:
        with open(self.path, "w") as stream:
            stream.write("this is not an htpasswd file at all\n")
        self.clock.advance(2)
        self.assertEqual(await self.checker.check("alice", "secret"), Identity("alice"))
        self.assertEqual(self.changes, 0)
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class _Reactor:
    """The real reactor's threads with a test clock's time (the reload check reads the time)."""

    def __init__(self, clock: task.Clock) -> None:
        self.clock = clock

    def seconds(self) -> float:
        return self.clock.seconds()

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


class SiteCase(unittest.TestCase):
    """The real site: a local store behind ``protected()`` as ``twistd zotpy`` builds it."""

    users = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
    access: dict[str, Any] = {
        "repositories": {
            "**": {"policies": [{"users": ["alice"], "actions": ["read", "create", "update", "delete"]}],
                   "defaultPolicy": ["read"]},
            "bob/**": {"policies": [{"users": ["bob"], "actions": ["read", "create"]}]},
            "public/**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]},
        },
        "adminPolicy": {"users": ["alice"], "actions": ["read", "create", "update", "delete"]},
    }

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.store = local_store(os.path.join(self.directory, "root"))

    async def start(self, log: dict[str, Any] | None = None, reloadable: bool = False, **http: Any) -> None:
        """Serve the site; ``reloadable``: from a config file, with ``self.reloader`` for SIGHUP's reload."""
        path = htpasswd_file(self.directory, self.users)
        http.setdefault("auth", {"htpasswd": {"path": path}})
        self.document = {
            "storage": {"rootDirectory": "/unused", "gc": False, "dedupe": False},
            "http": {"realm": "test-realm", **http}, "log": log or {},
        }
        self.reloader = None
        if reloadable:
            self.config_path = os.path.join(self.directory, "config.json")
            self.rewrite_config(self.document)
            config = load_config(self.config_path)
            self.reloader = Reloader(config)
        else:
            config = parse_config(self.document)
        pool = reactor.getThreadPool()
        stops: list[Any] = []
        self.resource = protected(
            config, registry_resource(self.store), reactor, pool, _tag_lookup(self.store, None),
            metrics_path="/metrics", on_stop=stops.append, reloader=self.reloader,
        )
        for stop in stops:
            self.addCleanup(stop)
        self.base = await serve(self, self.resource)
        self.http = http_client(self)

    def rewrite_config(self, document: dict[str, Any]) -> None:
        with open(self.config_path, "w") as stream:
            json.dump(document, stream)

    async def call(self, method: str, path: str, authorization: str | None = None, body: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Headers, bytes]:
        raw = Headers({k: [v] for k, v in (headers or {}).items()})
        if authorization is not None:
            raw.setRawHeaders("Authorization", [authorization])
        response = await self.http.request(method, self.base + path, headers=raw, data=body)
        return response.code, response.headers, await response.content()

    def assertCode(self, reply: tuple[int, Headers, bytes], status: int, code: str) -> None:
        self.assertEqual(reply[0], status, reply)
        self.assertEqual(json.loads(reply[2])["errors"][0]["code"], code)

    async def push(self, repo: str, tag: str, who: str, expect: int = 201) -> int:
        blob = os.urandom(64)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        auth = basic(who, self.users[who])
        status, _, _ = await self.call("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", auth, blob)
        if status != 201:
            self.assertEqual(status, expect)
            return status
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest, "size": len(blob)},
            "layers": [],
        }).encode()
        status, _, body = await self.call(
            "PUT", f"/v2/{repo}/manifests/{tag}", auth, manifest,
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        self.assertEqual(status, expect, body)
        return status


class HTTPTests(SiteCase):
    @async_test
    async def test_every_route_asks_for_credentials(self) -> None:
        await self.start()
        digest = "sha256:" + "0" * 64
        routes = [
            ("GET", "/v2/"), ("GET", "/v2/_catalog"), ("GET", "/v2/a/tags/list"), ("GET", "/v2/a/manifests/t"),
            ("HEAD", "/v2/a/manifests/t"), ("PUT", "/v2/a/manifests/t"), ("DELETE", "/v2/a/manifests/t"),
            ("GET", f"/v2/a/blobs/{digest}"), ("HEAD", f"/v2/a/blobs/{digest}"), ("DELETE", f"/v2/a/blobs/{digest}"),
            ("POST", "/v2/a/blobs/uploads/"), ("PATCH", "/v2/a/blobs/uploads/u"), ("PUT", "/v2/a/blobs/uploads/u"),
            ("GET", "/v2/a/blobs/uploads/u"), ("DELETE", "/v2/a/blobs/uploads/u"), ("GET", f"/v2/a/referrers/{digest}"),
            ("GET", "/v2/no/such/route"),
        ]
        for method, path in routes:
            status, headers, body = await self.call(method, path, body=b"x" if method in ("PUT", "PATCH", "POST") else None)
            self.assertEqual(status, 401, (method, path))
            self.assertEqual(headers.getRawHeaders("WWW-Authenticate"), ['Basic realm="test-realm"'], (method, path))
            if method != "HEAD":
                self.assertEqual(json.loads(body)["errors"][0]["code"], "UNAUTHORIZED")
        self.assertEqual(await self.store.repositories(), [])

    @async_test
    async def test_malformed_headers_are_401_not_500(self) -> None:
        await self.start()
        for header in [
            "Basic !!!notbase64", "Basic " + base64.b64encode(b"nocolon").decode(), "Basic",
            "Basic " + "A" * 10240, "Digest username=alice", "Bearer abc.def.ghi", basic("alice", "wrong"),
            basic("nobody", "alice-pw"), "basic" + base64.b64encode(b"alice:alice-pw").decode(),
            "Basic " + base64.b64encode(b":").decode(),  # empty: anonymous, and no anonymousPolicy here
        ]:
            status, headers, body = await self.call("GET", "/v2/", header)
            self.assertEqual(status, 401, header[:40])
            self.assertEqual(json.loads(body)["errors"][0]["code"], "UNAUTHORIZED")
            self.assertTrue(headers.hasHeader("WWW-Authenticate"))
        status, _, _ = await self.call("GET", "/v2/", basic("alice", "alice-pw"))
        self.assertEqual(status, 200)
        status, _, _ = await self.call("GET", "/v2/", basic("alice", "alice-pw").replace("Basic", "bAsIc"))
        self.assertEqual(status, 200)

    @async_test
    async def test_authentication_alone_allows_everything(self) -> None:
        await self.start()
        await self.push("any/repo", "v1", "carol")
        status, _, _ = await self.call("DELETE", "/v2/any/repo/manifests/v1", basic("carol", "carol-pw"))
        self.assertEqual(status, 202)

    @async_test
    async def test_policy(self) -> None:
        await self.start(accessControl=self.access)
        await self.push("team/app", "v1", "alice")
        await self.push("team/app", "v2", "bob", expect=403)  # bob: read only there (defaultPolicy)
        status, _, _ = await self.call("GET", "/v2/team/app/manifests/v1", basic("bob", "bob-pw"))
        self.assertEqual(status, 200)
        self.assertCode(await self.call("DELETE", "/v2/team/app/manifests/v1", basic("bob", "bob-pw")), 403, "DENIED")
        # bob may create in bob/** but not update: a new tag is a create, the same tag again an update.
        await self.push("bob/tool", "v1", "bob")
        await self.push("bob/tool", "v1", "bob", expect=403)
        await self.push("bob/tool", "latest", "bob")
        await self.push("bob/tool", "latest", "bob")  # zot: pushing "latest" again is a create
        self.assertEqual(sorted(await self.store.tags("bob/tool")), ["latest", "v1"])
        # anonymous: read in public/**, 401 (not 403) elsewhere.
        await self.push("public/base", "v1", "alice")
        status, _, _ = await self.call("GET", "/v2/public/base/manifests/v1")
        self.assertEqual(status, 200)
        status, headers, _ = await self.call("GET", "/v2/team/app/manifests/v1")
        self.assertEqual(status, 401)
        self.assertTrue(headers.hasHeader("WWW-Authenticate"))
        # The /v2/ ping challenges even with an anonymousPolicy, so clients with credentials send them.
        status, headers, _ = await self.call("GET", "/v2/")
        self.assertEqual(status, 401)
        # Empty credentials (what skopeo --no-creds sends after the challenge) are anonymous.
        empty = "Basic " + base64.b64encode(b":").decode()
        status, _, _ = await self.call("GET", "/v2/public/base/manifests/v1", empty)
        self.assertEqual(status, 200)
        status, _, _ = await self.call("GET", "/v2/team/app/manifests/v1", empty)
        self.assertEqual(status, 401)

    @async_test
    async def test_metrics_users(self) -> None:
        """accessControl.metrics.users may scrape /metrics; other users get 403, nobody 401."""
        await self.start(accessControl={**self.access, "metrics": {"users": ["carol"]}})
        self.assertEqual((await self.call("GET", "/metrics"))[0], 401)
        self.assertCode(await self.call("GET", "/metrics", basic("alice", "alice-pw")), 403, "DENIED")
        status, _, _ = await self.call("GET", "/metrics", basic("carol", "carol-pw"))
        self.assertEqual(status, 404)  # let through: this test's site has no metrics endpoint behind

    @async_test
    async def test_encoded_names_are_authorized_as_the_api_reads_them(self) -> None:
        """``team%2Fapp`` is ``team/app`` to the router, so it is to access control too."""
        await self.start(accessControl=self.access)
        await self.push("team/app", "v1", "alice")
        for method, path in [("GET", "/v2/team%2Fapp/tags/list"), ("GET", "/v2/team%2fapp/manifests/v1"),
                             ("POST", "/v2/team%2Fapp/blobs/uploads/"), ("GET", "/v2/%74eam/app/tags/list")]:
            status, _, _ = await self.call(method, path)
            self.assertEqual(status, 401, path)  # anonymous may read public/** only
            status, _, _ = await self.call(method, path, basic("bob", "bob-pw"))
            self.assertEqual(status, 200 if method == "GET" else 403, path)  # bob: read by default there
        # A reference that is not UTF-8 still names team/app's manifests: read access is checked.
        self.assertEqual((await self.call("GET", "/v2/team/app/manifests/v%ff"))[0], 401)
        self.assertEqual((await self.call("GET", "/v2/team/app/manifests/v%ff", basic("bob", "bob-pw")))[0], 404)

    @async_test
    async def test_mount_needs_read_on_the_source(self) -> None:
        access = {"repositories": {"secret/**": {"policies": [{"users": ["alice"], "actions": ["read", "create"]}]},
                                   "bob/**": {"policies": [{"users": ["bob"], "actions": ["read", "create"]}]}}}
        await self.start(accessControl=access)
        blob = b"secret layer"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        status, _, _ = await self.call("POST", f"/v2/secret/x/blobs/uploads/?digest={digest}", basic("alice", "alice-pw"), blob)
        self.assertEqual(status, 201)
        reply = await self.call("POST", f"/v2/bob/x/blobs/uploads/?mount={digest}&from=secret/x", basic("bob", "bob-pw"))
        self.assertCode(reply, 403, "DENIED")
        self.assertFalse(await self.store.has_blob("bob/x", parse_digest(digest)))

    @async_test
    async def test_catalog_lists_only_readable(self) -> None:
        await self.start(accessControl=self.access)
        for repo in ("bob/a", "public/b", "team/c"):
            await self.push(repo, "v1", "alice")
        async def catalog(authorization: str | None, query: str = "") -> Any:
            status, headers, body = await self.call("GET", "/v2/_catalog" + query, authorization)
            self.assertEqual(status, 200, body)
            return json.loads(body)["repositories"], headers.getRawHeaders("Link")
        self.assertEqual((await catalog(None))[0], ["public/b"])
        self.assertEqual((await catalog(basic("carol", "carol-pw")))[0], ["public/b", "team/c"])
        # filtered before paginating: a page of 1 holds a readable name, and the next page the other.
        page, link = await catalog(basic("carol", "carol-pw"), "?n=1")
        self.assertEqual(page, ["public/b"])
        self.assertIn("last=public%2Fb", link[0].replace("/", "%2F"))
        self.assertEqual((await catalog(basic("alice", "alice-pw")))[0], ["bob/a", "public/b", "team/c"])

    @async_test
    async def test_fail_delay_and_cache(self) -> None:
        await self.start(auth={"htpasswd": {"path": htpasswd_file(self.directory, self.users)}, "failDelay": 0.3})
        started = reactor.seconds()
        status, _, _ = await self.call("GET", "/v2/", basic("alice", "nope"))
        self.assertEqual(status, 401)
        self.assertGreaterEqual(reactor.seconds() - started, 0.3)
        status, _, _ = await self.call("GET", "/v2/", basic("alice", "alice-pw"))
        self.assertEqual(status, 200)
        self.assertEqual(len(self.resource.cache), 2)  # the wrong header and the right one, once each


class RateLimitTests(unittest.TestCase):
    def test_buckets(self) -> None:
        clock = task.Clock()
        limiter = RateLimiter(RateLimitSettings(rate=10, methods={"GET": 2}), clock)
        self.assertEqual([limiter.wait("a", "GET") for _ in range(2)], [0.0, 0.0])
        self.assertAlmostEqual(limiter.wait("a", "GET"), 0.5)  # GET's bucket is empty: 1 token / 2 per s
        self.assertEqual(limiter.wait("b", "GET"), 0.0)  # per client
        self.assertEqual(limiter.wait("a", "PUT"), 0.0)  # the overall bucket still has tokens
        clock.advance(0.5)
        self.assertEqual(limiter.wait("a", "GET"), 0.0)
        allowed = 0
        while limiter.wait("a", "POST") == 0.0:
            allowed += 1
        self.assertEqual(allowed, 9)  # a burst of 10 overall (refilled to the cap), one taken by the GET

    def test_bounded(self) -> None:
        limiter = RateLimiter(RateLimitSettings(rate=1), task.Clock(), capacity=3)
        for client in "abcdef":
            limiter.wait(client, "GET")
        self.assertEqual(len(limiter._buckets), 3)

    def test_settings(self) -> None:
        http = config_with({"ratelimit": {"rate": 10, "methods": [{"method": "get", "rate": 5}]}}).http
        self.assertEqual(http.ratelimit, RateLimitSettings(rate=10.0, methods={"GET": 5.0}))
        error = self.assertRaises(ConfigError, config_with, {"ratelimit": {"rate": -1, "methods": [{"rate": 1}, 3]}})
        self.assertEqual(
            [path for path, _ in error.problems],
            ["http.ratelimit.rate", "http.ratelimit.methods[0].method", "http.ratelimit.methods[1]"],
        )


class RateLimitAndAuditHTTPTests(SiteCase):
    """The layers ``protected()`` puts outside authentication, on the real site."""

    @async_test
    async def test_429_before_authentication(self) -> None:
        await self.start(ratelimit={"rate": 100, "methods": [{"method": "GET", "rate": 2}]})
        codes = [(await self.call("GET", "/v2/", basic("alice", "alice-pw")))[0] for _ in range(2)]
        self.assertEqual(codes, [200, 200])
        status, headers, body = await self.call("GET", "/v2/", basic("alice", "wrong"))
        self.assertEqual((status, json.loads(body)["errors"][0]["code"]), (429, "TOOMANYREQUESTS"))
        self.assertEqual(headers.getRawHeaders("Retry-After"), ["1"])
        self.assertEqual(len(self.resource.wrapped.cache), 1)  # the refused request never reached bcrypt
        status, _, _ = await self.call("HEAD", "/v2/", basic("alice", "alice-pw"))  # other methods: overall rate
        self.assertEqual(status, 200)

    @async_test
    async def test_audit_log_says_who_wrote(self) -> None:
        audit = os.path.join(self.directory, "audit.log")
        await self.start(accessControl=self.access, log={"audit": audit})
        await self.push("team/app", "v1", "alice")
        await self.push("team/app", "v2", "bob", expect=403)
        await self.call("GET", "/v2/team/app/manifests/v1", basic("alice", "alice-pw"))  # reads are not audited
        await self.call("DELETE", "/v2/team/app/manifests/v1")
        with open(audit) as stream:
            lines = [json.loads(line) for line in stream]
        seen = [(line["subject"], line["action"], line["object"].split("?")[0], line["status"]) for line in lines]
        self.assertEqual(seen, [
            ("alice", "POST", "/v2/team/app/blobs/uploads/", 201),
            ("alice", "PUT", "/v2/team/app/manifests/v1", 201),
            ("bob", "POST", "/v2/team/app/blobs/uploads/", 403),
            ("", "DELETE", "/v2/team/app/manifests/v1", 401),
        ])
        with open(audit) as stream:
            text = stream.read()
        self.assertNotIn("alice-pw", text)
        self.assertNotIn(base64.b64encode(b"alice:alice-pw").decode(), text)


class ReloadTests(SiteCase):
    """SIGHUP's reload (zotpy.observability.reload) applied to the running access layer, as the
    daemon wires it (tests/integration/test_operability.py sends the real signal)."""

    @async_test
    async def test_policy_and_users_change_without_a_restart(self) -> None:
        await self.start(reloadable=True, accessControl=self.access)
        assert self.reloader is not None
        await self.push("team/app", "v1", "bob", expect=403)
        # bob may now write everywhere; dave replaces carol in a new htpasswd file.
        access = json.loads(json.dumps(self.access))
        access["repositories"]["**"]["policies"].append({"users": ["bob"], "actions": ["read", "create"]})
        self.users = {**self.users, "dave": "dave-pw"}
        del self.users["carol"]
        http = {**self.document["http"], "accessControl": access,
                "auth": {"htpasswd": {"path": htpasswd_file(self.directory, self.users, "htpasswd-2")}}}
        self.rewrite_config({**self.document, "http": http})
        self.assertEqual(sorted(self.reloader.reload()), ["http.accessControl.repositories", "http.auth.htpasswd.path"])
        await self.push("team/app", "v1", "bob")
        self.assertEqual((await self.call("GET", "/v2/", basic("dave", "dave-pw")))[0], 200)
        self.assertEqual((await self.call("GET", "/v2/", basic("carol", "carol-pw")))[0], 401)
        # A config that does not read (here: an htpasswd file of garbage) changes nothing.
        garbage = os.path.join(self.directory, "garbage")
        with open(garbage, "w") as stream:
            stream.write("not an htpasswd file\n")
        self.rewrite_config({**self.document, "http": {**http, "auth": {"htpasswd": {"path": garbage}}}})
        self.assertEqual(self.reloader.reload(), [])
        self.assertEqual((await self.call("GET", "/v2/", basic("dave", "dave-pw")))[0], 200)
        self.flushLoggedErrors()

    @async_test
    async def test_auth_switched_on_and_realm_changed(self) -> None:
        """From no ``http.auth`` at all to htpasswd, then a new realm in the challenge."""
        await self.start(reloadable=True, auth=None)
        assert self.reloader is not None
        self.assertEqual((await self.call("GET", "/v2/"))[0], 200)
        http = {**self.document["http"], "auth": {"htpasswd": {"path": htpasswd_file(self.directory, self.users)}}}
        self.rewrite_config({**self.document, "http": http})
        self.assertEqual(self.reloader.reload(), ["http.auth"])
        status, headers, _ = await self.call("GET", "/v2/")
        self.assertEqual((status, headers.getRawHeaders("WWW-Authenticate")), (401, ['Basic realm="test-realm"']))
        self.rewrite_config({**self.document, "http": {**http, "realm": "other"}})
        self.assertEqual(self.reloader.reload(), ["http.realm"])
        status, headers, _ = await self.call("GET", "/v2/")
        self.assertEqual((status, headers.getRawHeaders("WWW-Authenticate")), (401, ['Basic realm="other"']))

    @async_test
    async def test_audit_log_is_reopened(self) -> None:
        """logrotate renames the file, then SIGHUP: later lines go to a new file at the same path."""
        audit = os.path.join(self.directory, "audit.log")
        await self.start(reloadable=True, log={"audit": audit})
        assert self.reloader is not None
        await self.push("team/app", "v1", "alice")
        os.rename(audit, audit + ".1")
        self.reloader.reopen()
        await self.push("team/app", "v2", "alice")
        for path, tag in ((audit + ".1", "v1"), (audit, "v2")):
            with open(path) as stream:
                objects = [json.loads(line)["object"].split("?")[0] for line in stream]
            self.assertEqual(objects, ["/v2/team/app/blobs/uploads/", f"/v2/team/app/manifests/{tag}"], path)


@implementer(IAuthenticator)
class _SlowAuthenticator:
    """Answers every check after 0.1 s, counting them."""

    scheme = b"basic"

    def __init__(self) -> None:
        self.checks = 0

    def challenge(self, realm: str, scope: str | None = None) -> str:
        return f'Basic realm="{realm}"'

    def authenticate(self, credentials: bytes) -> Deferred[Identity]:
        self.checks += 1
        return task.deferLater(reactor, 0.1, lambda: Identity("slow"))


class _Hello(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b"hello " + getattr(request, "zotpy_user", "?").encode()


class CoalescingTests(unittest.TestCase):
    @async_test
    async def test_concurrent_first_requests_share_one_check(self) -> None:
        authenticator = _SlowAuthenticator()
        base = await serve(self, AuthResource(_Hello(), reactor, [authenticator]))
        http = http_client(self)

        async def get() -> bytes:
            response = await http.get(base + "/v2/", headers={"Authorization": basic("slow", "x")})
            return await response.content()

        bodies = await defer.gatherResults([defer.ensureDeferred(get()) for _ in range(6)])
        self.assertEqual(bodies, [b"hello slow"] * 6)
        self.assertEqual(authenticator.checks, 1)


class BearerTests(unittest.TestCase):
    """The Docker token flow against the real site, with a token service run here."""

    async def start(self, **auth: Any) -> None:
        directory = tempfile.mkdtemp()
        self.tokens = TokenService(os.path.join(directory, "tokens"), {
            "alice": ("alice-pw", {"*": ["pull", "push", "delete"], "catalog": ["*"]}),
            "bob": ("bob-pw", {"*": ["pull"]}),
        })
        realm = await self.tokens.start(self)
        bearer = {"realm": realm, "service": "zotpy-test", "cert": self.tokens.cert_path}
        config = config_with({"auth": {"bearer": bearer, **auth}})
        self.store = local_store(os.path.join(directory, "root"))
        self.base = await serve(self, protected(config, registry_resource(self.store), reactor, reactor.getThreadPool()))
        self.http = http_client(self)

    async def login(self, challenge: str, user: str | None) -> str:
        """What a Docker client does with a Bearer challenge: ask the realm for the scope."""
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {"service": fields["service"], **({"scope": fields["scope"]} if "scope" in fields else {})}
        headers = {"Authorization": basic(user, f"{user}-pw")} if user else {}
        response = await self.http.get(fields["realm"], params=query, headers=headers)
        return "Bearer " + (await response.json())["token"]

    async def call(self, method: str, path: str, token: str | None = None, body: bytes | None = None) -> Any:
        headers = {"Authorization": token} if token else {}
        response = await self.http.request(method, self.base + path, headers=headers, data=body)
        return response.code, response.headers, await response.content()

    @async_test
    async def test_token_flow(self) -> None:
        await self.start()
        blob = b"bearer blob"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        path = f"/v2/team/app/blobs/uploads/?digest={digest}"
        status, headers, _ = await self.call("POST", path, body=blob)
        self.assertEqual(status, 401)
        [challenge] = headers.getRawHeaders("WWW-Authenticate")
        self.assertEqual(
            challenge, f'Bearer realm="{self.tokens.url}",service="zotpy-test",scope="repository:team/app:pull,push"'
        )
        alice = await self.login(challenge, "alice")
        status, _, _ = await self.call("POST", path, alice, blob)
        self.assertEqual(status, 201)
        self.assertEqual(self.tokens.issued[-1]["access"], [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
        # bob's token grants pull only: reading works, pushing is 401 insufficient_scope.
        bob = await self.login(challenge, "bob")
        status, _, _ = await self.call("GET", f"/v2/team/app/blobs/{digest}", bob)
        self.assertEqual(status, 200)
        status, headers, body = await self.call("POST", path, bob, blob)
        self.assertEqual((status, json.loads(body)["errors"][0]["code"]), (401, "UNAUTHORIZED"))
        self.assertIn('error="insufficient_scope"', headers.getRawHeaders("WWW-Authenticate")[0])
        # The catalog needs registry:catalog:*.
        status, headers, _ = await self.call("GET", "/v2/_catalog", alice)
        self.assertEqual(status, 401)
        self.assertIn('scope="registry:catalog:*"', headers.getRawHeaders("WWW-Authenticate")[0])
        catalog_token = await self.login(headers.getRawHeaders("WWW-Authenticate")[0], "alice")
        status, _, body = await self.call("GET", "/v2/_catalog", catalog_token)
        self.assertEqual((status, json.loads(body)), (200, {"repositories": ["team/app"]}))
        # /v2/ with any valid token.
        status, _, _ = await self.call("GET", "/v2/", bob)
        self.assertEqual(status, 200)

    @async_test
    async def test_bad_tokens_are_401(self) -> None:
        await self.start()
        access = [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
        other = TokenService(tempfile.mkdtemp(), {})
        good = self.tokens.token("alice", access)
        header, payload, signature = good.split(".")
        tampered_payload = base64.urlsafe_b64encode(
            json.dumps({**self.tokens.issued[-1], "access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push", "delete"]}]}).encode()
        ).rstrip(b"=").decode()
        public_key = open(self.tokens.cert_path, "rb").read()
        bad = {
            "expired": self.tokens.token("alice", access, exp=int(time.time()) - 120),
            "not yet valid": self.tokens.token("alice", access, nbf=int(time.time()) + 600),
            "wrong audience": self.tokens.token("alice", access, aud="another-service"),
            "no expiry": self.tokens.token("alice", access, exp=None),
            "tampered": f"{header}.{tampered_payload}.{signature}",
            "wrongly signed": other.token("alice", access),
            "alg none": jwt.encode({"sub": "alice", "aud": "zotpy-test", "exp": time.time() + 60, "access": access}, None, algorithm="none"),
            "HMAC with the public key": _hmac_token(public_key, access),
            "garbage": "not.a.jwt",
            "huge": "A" * 12000,
        }
        for what, token in bad.items():
            status, headers, body = await self.call("GET", "/v2/team/app/tags/list", "Bearer " + token)
            self.assertEqual(status, 401, what)
            self.assertEqual(json.loads(body)["errors"][0]["code"], "UNAUTHORIZED", what)
            self.assertTrue(headers.getRawHeaders("WWW-Authenticate")[0].startswith("Bearer realm="), what)
        status, _, _ = await self.call("GET", "/v2/team/app/tags/list", "Bearer " + good)
        self.assertEqual(status, 404)  # accepted: the repository does not exist yet

    def test_settings(self) -> None:
        error = self.assertRaises(ConfigError, config_with, {"auth": {"bearer": {"realm": "https://x/token", "cert": "/nonexistent"}}})
        self.assertEqual(sorted(path for path, _ in error.problems), ["http.auth.bearer.cert", "http.auth.bearer.service"])

    def test_verification_key_files(self) -> None:
        """The signer's certificate alone, first of a bundle with its CA after it, or a bare public
        key; anything else names the file."""
        from cryptography.hazmat.primitives import serialization

        from zotpy.auth.bearer import VerificationKeyError, load_verification_key

        directory = tempfile.mkdtemp()
        tokens = TokenService(os.path.join(directory, "tokens"), {})
        with open(tokens.cert_path, "rb") as stream:
            certificate = stream.read()
        with open(os.path.join(directory, "tokens", "ca.crt"), "rb") as stream:
            authority = stream.read()
        expected = load_verification_key(tokens.cert_path).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for name, data in [("bundle.pem", certificate + authority), ("public.pem", expected)]:
            path = os.path.join(directory, name)
            with open(path, "wb") as stream:
                stream.write(data)
            loaded = load_verification_key(path).public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            self.assertEqual(loaded, expected, name)
        for name, data in [("garbage.pem", b"not pem"), ("broken.pem", certificate.replace(b"M", b"x", 40))]:
            path = os.path.join(directory, name)
            with open(path, "wb") as stream:
                stream.write(data)
            self.assertIn(name, str(self.assertRaises(VerificationKeyError, load_verification_key, path)))


def _hmac_token(public_key: bytes, access: list[dict[str, Any]]) -> str:
    """The classic confusion attack: HS256 keyed with the verifier's public key."""
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "alice", "aud": "zotpy-test", "exp": int(time.time()) + 60, "access": access}).encode())
    signature = hmac.new(public_key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


class RateLimitResourceTests(unittest.TestCase):
    def request(self, client: str, hop: bool) -> Any:
        from twisted.internet.address import IPv4Address
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b""])
        request.client = IPv4Address("TCP", client, 4000)
        if hop:
            request.requestHeaders.setRawHeaders(HOP_HEADER, [b"1"])
        return request

    def test_members_forwarding_are_not_counted_twice(self) -> None:
        resource = RateLimitResource(_Hello(), RateLimiter(RateLimitSettings(rate=1), task.Clock()), ["127.0.0.2:5000"])
        self.assertEqual(resource.render(self.request("127.0.0.9", hop=False)), b"hello ?")
        self.assertEqual(resource.render(self.request("127.0.0.9", hop=False))[:9], b'{"errors"')
        # A member's forwarded requests pass (the member counted them); a client's hop header does not help.
        for _ in range(3):
            self.assertEqual(resource.render(self.request("127.0.0.2", hop=True)), b"hello ?")
        self.assertEqual(resource.render(self.request("127.0.0.9", hop=True))[:9], b'{"errors"')


class _TLSTransport:
    """What a TLS connection reports after the handshake verified the client's certificate."""

    def __init__(self, certificate: Any) -> None:
        self.certificate = certificate

    def getPeerCertificate(self) -> Any:
        return self.certificate


class MemberReadTests(unittest.TestCase):
    """A member's read of this replica's own copy (the rebalancer, dropMoved): admitted by the
    verified certificate naming a member, and by nothing less."""

    members = ["127.0.0.1:5000", "127.0.0.2:5000"]

    def setUp(self) -> None:
        from OpenSSL import crypto

        from tests.certs import CertificateAuthority
        from zotpy.auth.basic import BasicAuthenticator
        from zotpy.auth.mtls import ClientCertificates

        authority = CertificateAuthority(self.mktemp())

        def certificate(stem: str, hosts: list[str]) -> Any:
            return crypto.load_certificate(crypto.FILETYPE_PEM, authority.issue(stem, hosts, client=True).cert_pem())

        self.member = certificate("replica2", ["127.0.0.2"])
        self.added = certificate("replica3", ["127.0.0.3"])
        self.stranger = certificate("mallory", [])  # a user's certificate: mallory, who may read nothing
        only_alice = {"repositories": {"**": {"policies": [{"users": ["alice"], "actions": ["read"]}]}}}
        self.certificates = ClientCertificates.for_members(self.members)
        self.resource = AuthResource(
            _Hello(), task.Clock(), [BasicAuthenticator([])], AccessPolicy(config_with({"accessControl": only_alice}).http.access_control),
            certificates=self.certificates,
        )

    def render(
        self, method: bytes, path: bytes, certificate: Any = None, scope: bytes | None = b"X-Zotpy-Scope",
        for_member: bool = False,
    ) -> Any:
        from twisted.internet.address import IPv4Address
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b""])
        request.method, request.path, request.uri = method, path, path
        request.client = IPv4Address("TCP", "127.0.0.2", 40000)  # a member's address, which proves nothing
        request.channel = type("Channel", (), {"transport": _TLSTransport(certificate) if certificate else object()})()
        if scope is not None:
            request.requestHeaders.setRawHeaders(scope, [b"local"])
        if for_member:
            request.requestHeaders.setRawHeaders(b"X-Zotpy-Catalog-For-Member", [b"1"])
        body = self.resource.render(request)
        return request.responseCode or 200, body

    def test_member_certificate_and_local_scope_read_without_credentials(self) -> None:
        digest = b"sha256:" + b"0" * 64
        for method, path in [
            (b"GET", b"/v2/team/app/tags/list"), (b"GET", b"/v2/team/app/manifests/v1"),
            (b"HEAD", b"/v2/team/app/manifests/v1"), (b"GET", b"/v2/team/app/blobs/" + digest),
        ]:
            self.assertEqual(self.render(method, path, self.member), (200, b"hello cluster member"), path)
        catalog = self.render(b"GET", b"/v2/_catalog", self.member, scope=b"X-Zotpy-Catalog-Scope", for_member=True)
        self.assertEqual(catalog, (200, b"hello cluster member"))
        # The catalog fan-out for a user without credentials sends the scope alone: not a member's read.
        self.assertEqual(self.render(b"GET", b"/v2/_catalog", self.member, scope=b"X-Zotpy-Catalog-Scope")[0], 401)

    def test_without_the_scope_header_credentials_are_asked(self) -> None:
        self.assertEqual(self.render(b"GET", b"/v2/team/app/tags/list", self.member, scope=None)[0], 401)
        # Each route's own header: the catalog's does not open a manifest, nor the other way round.
        self.assertEqual(self.render(b"GET", b"/v2/_catalog", self.member)[0], 401)
        self.assertEqual(
            self.render(b"GET", b"/v2/team/app/tags/list", self.member, scope=b"X-Zotpy-Catalog-Scope")[0], 401
        )

    def test_a_certificate_naming_no_member_is_refused(self) -> None:
        # Its CN is a user's identity (mTLS), held to the policy: not a member reading everything.
        self.assertEqual(self.render(b"GET", b"/v2/team/app/tags/list", self.stranger)[0], 403)

    def test_writes_and_other_routes_are_refused(self) -> None:
        for method, path in [
            (b"PUT", b"/v2/team/app/manifests/v1"), (b"DELETE", b"/v2/team/app/manifests/v1"),
            (b"POST", b"/v2/team/app/blobs/uploads/"), (b"GET", b"/v2/team/app/blobs/uploads/u"),
            (b"GET", b"/v2/"),
        ]:
            self.assertEqual(self.render(method, path, self.member)[0], 401, (method, path))

    def test_a_members_address_without_its_certificate_is_refused(self) -> None:
        self.assertEqual(self.render(b"GET", b"/v2/team/app/tags/list")[0], 401)

    def test_members_follow_a_reloaded_list(self) -> None:
        """A replica the roll added copies from a previous owner that started without it."""
        from tests.test_membership import KEY, membership
        from zotpy.auth.factory import _follow_members
        from zotpy.cluster.identity import identify
        from zotpy.cluster.membership import View

        self.assertEqual(self.render(b"GET", b"/v2/team/app/tags/list", self.added)[0], 403)
        view = membership(tuple(self.members), "127.0.0.1")
        view.listeners.append(lambda changed: _follow_members(self.certificates, changed))
        grown = (*self.members, "127.0.0.3:5000")
        view.change(View(grown, KEY), identify(grown, "127.0.0.1", 5000))
        self.assertEqual(self.render(b"GET", b"/v2/team/app/tags/list", self.added), (200, b"hello cluster member"))
        self.assertEqual(self.render(b"GET", b"/v2/team/app/tags/list", self.member)[1], b"hello cluster member")
