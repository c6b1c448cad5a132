"""zot's GraphQL search API on one registry: every implemented query checked field by field
against a known set of images (tests/searchimages.py), pagination boundaries, errors and limits."""

from __future__ import annotations

import io
import json
import os
from typing import Any
from urllib.parse import urlencode

from twisted.internet import reactor, task
from twisted.trial import unittest
from twisted.web.resource import IResource
from zope.interface import implementer

from tests import searchimages as fixture
from tests.storeimages import digest
from tests.support import http_client, serve
from tests.test_api import async_test
from tests.test_auth import basic, htpasswd_file
from zotpy.api import routes
from zotpy.api.site import registry_resource
from zotpy.api.visibility import set_reader
from zotpy.auth import actions
from zotpy.auth.factory import protected
from zotpy.config import parse_config
from zotpy.meta.details import DetailsReader
from zotpy.meta.keeper import MetaKeeper
from zotpy.oci.digest import parse_digest
from zotpy.search.engine import SearchEngine
from zotpy.search.resource import SearchResource
from zotpy.search.summaries import rfc3339
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver

START = 1_700_000_000.0
REPO_FIELDS = "Name LastUpdated Size Platforms { Os Arch } Vendors DownloadCount StarCount IsStarred IsBookmarked NewestImage { Tag Digest }"
REFERRER = "MediaType ArtifactType Size Digest Annotations { Key Value }"
MANIFEST = f"""Digest ConfigDigest LastUpdated Size IsSigned Platform {{ Os Arch }} DownloadCount ArtifactType
    Layers {{ Size Digest }} History {{ Layer {{ Size Digest }} HistoryDescription {{ Created CreatedBy EmptyLayer }} }}
    Referrers {{ {REFERRER} }} Vulnerabilities {{ Count }}"""
IMAGE = f"""RepoName Tag Digest MediaType Size DownloadCount LastUpdated PushTimestamp IsSigned Description Vendor
    Licenses Title Manifests {{ {MANIFEST} }} Referrers {{ Digest }}"""


class StorePusher:
    def __init__(self, store: ImageStore) -> None:
        self.store = store

    async def blob(self, repo: str, data: bytes) -> None:
        await self.store.put_blob(repo, parse_digest(digest(data)), io.BytesIO(data))

    async def manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> None:
        await self.store.put_manifest(repo, reference, body, media_type)


@implementer(IResource)
class Readable:
    """Stands in for access control: leaves a reader on the request, as AuthResource does."""

    isLeaf = True

    def __init__(self, wrapped: IResource, hidden: set[str]) -> None:
        self.wrapped, self.hidden = wrapped, hidden

    def render(self, request: Any) -> Any:
        set_reader(request, lambda name: name not in self.hidden)
        return self.wrapped.render(request)


class SearchAPITests(unittest.TestCase):
    @async_test
    async def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.clock = task.Clock()
        self.clock.advance(START)
        driver = LocalDriver(self.root, reactor, reactor.getThreadPool())
        self.keeper = MetaKeeper(driver, self.clock)
        self.store = ImageStore(driver, events=self.keeper)

        async def tick() -> None:
            self.clock.advance(10)

        self.images = await fixture.push_all(StorePusher(self.store), tick)
        for _ in range(2):
            await self.store.get_manifest("team/app", "v1", pull=True)
        self.hidden: set[str] = set()
        engine = SearchEngine(self.store.repositories, self.keeper.get, DetailsReader(driver))
        self.base = await serve(self, Readable(SearchResource(registry_resource(self.store), engine), self.hidden))
        self.http = http_client(self)

    async def post(self, query: str, variables: dict[str, Any] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        body = raw if raw is not None else json.dumps({"query": query, "variables": variables}).encode()
        response = await self.http.post(self.base + "/v2/_zot/ext/search", data=body, headers={"Content-Type": ["application/json"]})
        return response.code, json.loads(await response.content())

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        status, document = await self.post(query, variables)
        self.assertEqual((status, document.get("errors")), (200, None), document)
        return document["data"]

    # -- repositories -----------------------------------------------------------------------------

    @async_test
    async def test_global_search_repositories(self) -> None:
        found = (await self.data(f'{{ GlobalSearch(query: "app") {{ Page {{ TotalCount ItemCount }} Repos {{ {REPO_FIELDS} }} Images {{ Tag }} }} }}'))["GlobalSearch"]
        self.assertEqual((found["Page"], found["Images"]), ({"TotalCount": 1, "ItemCount": 1}, []))
        (repo,) = found["Repos"]
        meta = await self.keeper.get("team/app")
        self.assertEqual(
            repo,
            {
                "Name": "team/app", "LastUpdated": rfc3339(START + 40), "Size": str(meta.size),
                "Platforms": [{"Os": "linux", "Arch": "amd64"}], "Vendors": ["Team"], "DownloadCount": 2,
                "StarCount": 0, "IsStarred": False, "IsBookmarked": False,
                "NewestImage": {"Tag": "v2", "Digest": self.images.app_v2.digest},
            },
        )
        multi = (await self.data('{ GlobalSearch(query: "MULT") { Repos { Name Platforms { Os Arch } } } }'))["GlobalSearch"]
        self.assertEqual(
            multi["Repos"], [{"Name": "multi", "Platforms": [{"Os": "linux", "Arch": "amd64"}, {"Os": "linux", "Arch": "arm64"}]}]
        )

    @async_test
    async def test_pagination_boundaries_and_order(self) -> None:
        query = 'query($p: PageInput) { GlobalSearch(query: "", requestedPage: $p) { Page { TotalCount ItemCount } Repos { Name } } }'
        everything = ["docs", "library/alpine", "multi", "team/app"]
        for offset, limit, expected in ((0, 2, everything[:2]), (2, 2, everything[2:]), (3, 2, everything[3:]), (4, 2, []), (9, 0, []), (0, 0, everything)):
            page = (await self.data(query, {"p": {"offset": offset, "limit": limit, "sortBy": "ALPHABETIC_ASC"}}))["GlobalSearch"]
            self.assertEqual([r["Name"] for r in page["Repos"]], expected, (offset, limit))
            self.assertEqual(page["Page"], {"TotalCount": 4, "ItemCount": len(expected)})
        for sort, expected in (
            ("ALPHABETIC_DSC", everything[::-1]),
            ("UPDATE_TIME", ["docs", "team/app", "multi", "library/alpine"]),
            ("DOWNLOADS", ["team/app", "docs", "library/alpine", "multi"]),
            ("RELEVANCE", everything),
        ):
            page = (await self.data(query, {"p": {"sortBy": sort}}))["GlobalSearch"]
            self.assertEqual([r["Name"] for r in page["Repos"]], expected, sort)
        listed = (await self.data("{ RepoListWithNewestImage(requestedPage: {limit: 3}) { Page { TotalCount ItemCount } Results { Name NewestImage { Tag } } } }"))
        self.assertEqual(
            listed["RepoListWithNewestImage"],
            {"Page": {"TotalCount": 4, "ItemCount": 3}, "Results": [
                {"Name": "docs", "NewestImage": {"Tag": "guide"}}, {"Name": "team/app", "NewestImage": {"Tag": "v2"}},
                {"Name": "multi", "NewestImage": {"Tag": "latest"}},
            ]},
        )

    @async_test
    async def test_tags_by_repo_and_substring(self) -> None:
        found = (await self.data('{ GlobalSearch(query: "team/app:v") { Page { TotalCount } Repos { Name } Images { RepoName Tag } } }'))["GlobalSearch"]
        self.assertEqual(found["Images"], [{"RepoName": "team/app", "Tag": "v1"}, {"RepoName": "team/app", "Tag": "v2"}])
        self.assertEqual((found["Page"]["TotalCount"], found["Repos"]), (2, []))
        filtered = (await self.data('{ GlobalSearch(query: "multi:", filter: {Arch: ["arm64"]}) { Page { TotalCount } Images { Tag } } }'))["GlobalSearch"]
        self.assertEqual(filtered, {"Page": {"TotalCount": 2}, "Images": [{"Tag": "arm64-only"}, {"Tag": "latest"}]})
        signed = (await self.data('{ GlobalSearch(query: "", filter: {HasToBeSigned: true}) { Repos { Name } } }'))["GlobalSearch"]
        self.assertEqual(signed["Repos"], [{"Name": "team/app"}])

    # -- images -----------------------------------------------------------------------------------

    @async_test
    async def test_image_field_by_field(self) -> None:
        v1 = self.images.app_v1
        image = (await self.data(f'{{ Image(image: "team/app:v1") {{ {IMAGE} }} }}'))["Image"]
        size = len(v1.body) + sum(size for _, size in v1.layers) + (await self.store.blob_size("team/app", parse_digest(v1.config)))
        referrers = [
            {"MediaType": fixture.OCI_MANIFEST, "ArtifactType": artifact_type, "Size": len(pushed.body), "Digest": pushed.digest, "Annotations": annotations}
            for pushed, artifact_type, annotations in sorted(
                [(self.images.sbom, fixture.SBOM_TYPE, [{"Key": fixture.ANNOTATION + "title", "Value": "sbom"}]),
                 (self.images.signature, fixture.SIGNATURE_TYPE, [])],
                key=lambda item: item[0].digest,
            )
        ]
        layers = [{"Size": str(size), "Digest": layer} for layer, size in v1.layers]
        history = [
            {"Layer": layers[0], "HistoryDescription": {"Created": "2024-01-01T00:00:00Z", "CreatedBy": "ADD a", "EmptyLayer": False}},
            {"Layer": None, "HistoryDescription": {"Created": "2024-01-01T12:00:00Z", "CreatedBy": "ENV x=1", "EmptyLayer": True}},
            {"Layer": layers[1], "HistoryDescription": {"Created": "2024-01-02T00:00:00Z", "CreatedBy": "ADD b", "EmptyLayer": False}},
            {"Layer": layers[2], "HistoryDescription": {"Created": "2024-01-03T00:00:00Z", "CreatedBy": "ADD c", "EmptyLayer": False}},
        ]
        self.assertEqual(
            image,
            {
                "RepoName": "team/app", "Tag": "v1", "Digest": v1.digest, "MediaType": fixture.OCI_MANIFEST,
                "Size": str(size), "DownloadCount": 2, "LastUpdated": rfc3339(START + 10), "PushTimestamp": rfc3339(START + 10),
                "IsSigned": True, "Description": None, "Vendor": None, "Licenses": None, "Title": "team/app title",
                "Manifests": [{
                    "Digest": v1.digest, "ConfigDigest": v1.config, "LastUpdated": rfc3339(START + 10), "Size": str(size),
                    "IsSigned": True, "Platform": {"Os": "linux", "Arch": "amd64"}, "DownloadCount": 2,
                    "ArtifactType": fixture.OCI_CONFIG, "Layers": layers, "History": history, "Referrers": referrers,
                    "Vulnerabilities": None,
                }],
                "Referrers": [{"Digest": r["Digest"]} for r in referrers],
            },
        )
        base = (await self.data('{ Image(image: "library/alpine:3.19") { Description Vendor Licenses IsSigned } }'))["Image"]
        self.assertEqual(base, {"Description": "a small base", "Vendor": "Alpine", "Licenses": "MIT", "IsSigned": False})
        by_digest = (await self.data(f'{{ Image(image: "team/app@{v1.digest}") {{ Tag Digest }} }}'))["Image"]
        self.assertEqual(by_digest, {"Tag": "v1", "Digest": v1.digest})

    @async_test
    async def test_multi_arch_index_and_artifact(self) -> None:
        multi = (await self.data('{ Image(image: "multi:latest") { MediaType Description Size Manifests { Digest Platform { Os Arch } Layers { Digest } } } }'))["Image"]
        self.assertEqual(multi["MediaType"], fixture.OCI_INDEX)
        self.assertEqual(multi["Description"], "multi-arch")
        self.assertEqual(
            [(m["Digest"], m["Platform"]["Arch"], [layer["Digest"] for layer in m["Layers"]]) for m in multi["Manifests"]],
            [(self.images.amd64.digest, "amd64", [self.images.amd64.layers[0][0]]), (self.images.arm64.digest, "arm64", [self.images.arm64.layers[0][0]])],
        )
        meta = await self.keeper.get("multi")
        self.assertEqual(int(multi["Size"]), len(self.images.multi.body) + meta.images[self.images.amd64.digest].size + meta.images[self.images.arm64.digest].size)
        doc = (await self.data('{ Image(image: "docs:guide") { Title Manifests { ArtifactType ConfigDigest Platform { Os Arch } } } }'))["Image"]
        self.assertEqual(
            doc, {"Title": "Guide", "Manifests": [{"ArtifactType": fixture.DOC_TYPE, "ConfigDigest": digest(b"{}"), "Platform": {"Os": None, "Arch": None}}]}
        )

    @async_test
    async def test_repository_queries(self) -> None:
        info = (await self.data('{ ExpandedRepoInfo(repo: "team/app") { Images { Tag IsSigned } Summary { Name NewestImage { Tag } } } }'))["ExpandedRepoInfo"]
        self.assertEqual(
            info, {"Images": [{"Tag": "v1", "IsSigned": True}, {"Tag": "v2", "IsSigned": False}], "Summary": {"Name": "team/app", "NewestImage": {"Tag": "v2"}}}
        )
        listed = (await self.data('{ ImageList(repo: "team/app", requestedPage: {limit: 1, sortBy: UPDATE_TIME}) { Page { TotalCount ItemCount } Results { Tag } } }'))
        self.assertEqual(listed["ImageList"], {"Page": {"TotalCount": 2, "ItemCount": 1}, "Results": [{"Tag": "v2"}]})
        subject = self.images.app_v1.digest
        referrers = await self.data(
            f'{{ all: Referrers(repo: "team/app", digest: "{subject}") {{ Digest }} sboms: Referrers(repo: "team/app", digest: "{subject}", type: ["{fixture.SBOM_TYPE}"]) {{ Digest ArtifactType }} none: Referrers(repo: "nothing", digest: "{subject}") {{ Digest }} }}'
        )
        self.assertEqual(sorted(r["Digest"] for r in referrers["all"]), sorted([self.images.sbom.digest, self.images.signature.digest]))
        self.assertEqual(referrers["sboms"], [{"Digest": self.images.sbom.digest, "ArtifactType": fixture.SBOM_TYPE}])
        self.assertEqual(referrers["none"], [])

    @async_test
    async def test_digest_base_and_derived(self) -> None:
        def tags(result: dict[str, Any]) -> list[str]:
            return sorted(f"{image['RepoName']}:{image['Tag']}" for image in result["Results"])

        layer_a = self.images.base.layers[0][0]
        found = await self.data(
            f'{{ layer: ImageListForDigest(id: "{layer_a}") {{ Page {{ TotalCount }} Results {{ RepoName Tag }} }}'
            f' config: ImageListForDigest(id: "{self.images.app_v2.config.split(":")[1]}") {{ Results {{ RepoName Tag }} }}'
            f' manifest: ImageListForDigest(id: "{self.images.arm64.digest}") {{ Results {{ RepoName Tag }} }}'
            ' base: BaseImageList(image: "team/app:v2") { Page { TotalCount } Results { RepoName Tag } }'
            ' derived: DerivedImageList(image: "library/alpine:3.19") { Results { RepoName Tag } }'
            ' none: DerivedImageList(image: "team/app:v2") { Page { TotalCount } Results { Tag } } }'
        )
        self.assertEqual(tags(found["layer"]), ["library/alpine:3.19", "team/app:v1", "team/app:v2"])
        self.assertEqual(found["layer"]["Page"]["TotalCount"], 3)
        self.assertEqual(tags(found["config"]), ["team/app:v2"])
        self.assertEqual(tags(found["manifest"]), ["multi:arm64-only", "multi:latest"])
        self.assertEqual(tags(found["base"]), ["library/alpine:3.19", "team/app:v1"])
        self.assertEqual(tags(found["derived"]), ["team/app:v1", "team/app:v2"])
        self.assertEqual(found["none"], {"Page": {"TotalCount": 0}, "Results": []})

    # -- errors, limits, transport ----------------------------------------------------------------

    @async_test
    async def test_errors_are_graphql_errors_never_500(self) -> None:
        for query, status in (
            ("{ GlobalSearch(query: ", 422),  # does not parse
            ("{ NoSuchQuery { x } }", 422),  # does not validate
            ('{ GlobalSearch(query: "x") }', 422),  # object without a selection
            ("mutation { x }", 422),
            ("", 422),
            ("{" * 50 + "}" * 50, 422),  # depth 50
            ("{ " + " ".join(f"a{i}: RepoListWithNewestImage {{ Page {{ TotalCount }} }}" for i in range(10_000)) + " }", 413),
            ("{ " + " ".join(f"a{i}: __typename" for i in range(10_000)) + " }", 422),  # 10,000 aliases
            ("{ " + " ".join(f"a{i}: __typename" for i in range(1_500)) + " }", 422),  # fields, under the size limit
            ("{ " + " ".join(f'a{i}: Image(image: "x:{i}") {{ Tag }}' for i in range(11)) + " }", 422),
        ):
            got, document = await self.post(query)
            self.assertEqual(got, status, (query[:60], document))
            self.assertTrue(document["errors"] and all(isinstance(e["message"], str) for e in document["errors"]), document)
        got, document = await self.post("", raw=b"{not json")
        self.assertEqual((got, document["errors"][0]["message"]), (400, "json request body could not be decoded"))
        got, document = await self.post("", raw=json.dumps({"query": "{ __typename }", "variables": [1]}).encode())
        self.assertEqual(got, 400)
        # resolver errors: 200, the field null, an error with its path
        got, document = await self.post('{ Image(image: "team/app:nope") { Tag } }')
        self.assertEqual((got, document["data"], document["errors"][0]["path"]), (200, None, ["Image"]))
        self.assertIn("image not found", document["errors"][0]["message"])
        got, document = await self.post('{ ImageList(repo: "team/app", requestedPage: {limit: -1}) { Page { TotalCount } } }')
        self.assertEqual((got, document["data"]), (200, None))
        self.assertIn("limit", document["errors"][0]["message"])
        got, document = await self.post('{ ExpandedRepoInfo(repo: "UPPER") { Summary { Name } } }')
        self.assertEqual(got, 200)
        self.assertIn("not a repository name", document["errors"][0]["message"])

    @async_test
    async def test_a_forged_local_part_is_answered_never_left_hanging(self) -> None:
        """Anyone can send the members' scope header: a part whose args no GraphQL validation
        checked (wrong types, a field that does not exist) gets an answer, not a traceback and a
        connection left open."""
        for part in (
            {"field": "GlobalSearch", "args": {"query": 5}},
            {"field": "GlobalSearch", "args": {"query": "app", "requestedPage": "first"}},
            {"field": "GlobalSearch", "args": {"query": "app", "requestedPage": {"limit": "x"}}},
            {"field": "ImageList", "args": {"repo": ["team/app"]}},
            {"field": "Image", "args": {"image": None}},
            {"field": "ImageLayers", "args": {"image": 7}},
            {"field": "NoSuchField", "args": {}},
            {"field": "BaseImageList", "args": {"image": "team/app:v1", "layers": 3}},
        ):
            with self.subTest(part=part):
                response = await self.http.post(
                    self.base + "/v2/_zot/ext/search", data=json.dumps(part).encode(),
                    headers={"Content-Type": ["application/json"], "X-Zotpy-Search-Scope": ["local"]},
                    timeout=10,
                )
                document = json.loads(await response.content())
                self.assertIn(response.code, (200, 400), document)
                self.assertIn("error", document if response.code == 200 else {"error": 1})
        self.assertEqual(self.flushLoggedErrors(), [])

    @async_test
    async def test_root_fields_through_aliases_fragments_and_directives(self) -> None:
        """The top-level fields are found as the executor finds them: aliases, a named fragment, an
        inline fragment, ``@skip``/``@include`` by variable (each field is resolved only once asked)."""
        query = """
            query($hide: Boolean!) {
                one: GlobalSearch(query: "app") { Repos { Name } }
                ...more
                ... on Query { three: GlobalSearch(query: "docs") { Repos { Name } } }
                gone: GlobalSearch(query: "multi") @skip(if: $hide) { Repos { Name } }
                kept: GlobalSearch(query: "multi") @include(if: $hide) { Repos { Name } }
            }
            fragment more on Query { two: GlobalSearch(query: "alpine") { Repos { Name } } }"""
        found = await self.data(query, {"hide": True})
        self.assertEqual(
            {key: [repo["Name"] for repo in value["Repos"]] for key, value in found.items()},
            {"one": ["team/app"], "two": ["library/alpine"], "three": ["docs"], "kept": ["multi"]},
        )

    @async_test
    async def test_a_fault_of_ours_still_answers(self) -> None:
        """A resolver that raises what nobody foresaw: the client gets a 500 with a GraphQL error at
        once (not a connection held open until it times out), and the failure is logged."""

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        self.patch(SearchResource, "_query", broken)
        response = await self.http.post(
            self.base + "/v2/_zot/ext/search", data=b'{"query": "{ GlobalSearch(query: \"\") { Repos { Name } } }"}',
            headers={"Content-Type": ["application/json"]}, timeout=10,
        )
        document = json.loads(await response.content())
        self.assertEqual(response.code, 500)
        self.assertIn("errors", document)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @async_test
    async def test_get_and_methods(self) -> None:
        query = "query Q($r: String!) { ImageList(repo: $r) { Page { TotalCount } } }"
        url = self.base + "/v2/_zot/ext/search?" + urlencode({"query": query, "variables": json.dumps({"r": "team/app"}), "operationName": "Q"})
        response = await self.http.get(url)
        self.assertEqual((response.code, json.loads(await response.content())), (200, {"data": {"ImageList": {"Page": {"TotalCount": 2}}}}))
        response = await self.http.put(self.base + "/v2/_zot/ext/search", data=b"")
        self.assertEqual(response.code, 405)
        await response.content()
        # A member's part (what a fanning-out member asks): zotpy's own fields only, filtered the same way.
        local = {"Content-Type": ["application/json"], "X-Zotpy-Search-Scope": ["local"]}
        for field, args, expected in (
            ("ImageList", {"repo": "team/app"}, 2),
            ("related", {}, "related is not implemented by zotpy"),  # a resolver's helper, not a field
        ):
            body = json.dumps({"field": field, "args": args}).encode()
            response = await self.http.post(self.base + "/v2/_zot/ext/search", data=body, headers=local)
            part = json.loads(await response.content())
            self.assertEqual(response.code, 200)
            self.assertEqual(part["data"]["Page"]["TotalCount"] if "data" in part else part["error"], expected)

    @async_test
    async def test_access_control_filters_results(self) -> None:
        """With http.auth and http.accessControl (the real layer): each user sees what they may read."""
        directory = self.mktemp()
        os.makedirs(directory)
        users = {"alice": "alice-pw", "bob": "bob-pw"}
        config = parse_config({
            "storage": {"rootDirectory": "/unused"},
            "http": {
                "auth": {"htpasswd": {"path": htpasswd_file(directory, users)}},
                "accessControl": {"repositories": {
                    "**": {"policies": [{"users": ["alice"], "actions": ["read"]}]},
                    "library/**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]},
                }},
            },
        })
        engine = SearchEngine(self.store.repositories, self.keeper.get, DetailsReader(self.store.driver))
        stops: list[Any] = []
        guarded = protected(config, SearchResource(registry_resource(self.store), engine), reactor, reactor.getThreadPool(), on_stop=stops.append)
        for stop in stops:
            self.addCleanup(stop)
        self.base = await serve(self, guarded)
        query = json.dumps({"query": '{ GlobalSearch(query: "") { Page { TotalCount } Repos { Name } } }'}).encode()
        seen = {}
        for who in (None, "bob", "alice"):
            headers = {"Content-Type": ["application/json"]}
            if who is not None:
                headers["Authorization"] = [basic(who, users[who])]
            response = await self.http.post(self.base + "/v2/_zot/ext/search", data=query, headers=headers)
            document = json.loads(await response.content())
            self.assertEqual(response.code, 200, document)
            seen[who] = [repo["Name"] for repo in document["data"]["GlobalSearch"]["Repos"]]
        self.assertEqual(seen, {None: ["library/alpine"], "bob": ["library/alpine"], "alice": ["docs", "library/alpine", "multi", "team/app"]})

    @async_test
    async def test_only_readable_repositories(self) -> None:
        for method in ("GET", "POST"):
            self.assertEqual(actions.need(routes.match(method, "/v2/_zot/ext/search"), {}).kind, actions.SEARCH)
        self.hidden.add("team/app")
        found = await self.data('{ GlobalSearch(query: "") { Page { TotalCount } Repos { Name } } }')
        self.assertEqual([r["Name"] for r in found["GlobalSearch"]["Repos"]], ["docs", "library/alpine", "multi"])
        derived = await self.data('{ DerivedImageList(image: "library/alpine:3.19") { Results { Tag } } }')
        self.assertEqual(derived["DerivedImageList"]["Results"], [])
        status, document = await self.post('{ ExpandedRepoInfo(repo: "team/app") { Summary { Name } } }')
        self.assertEqual((status, document["data"]), (200, None))
        self.assertIn("not found", document["errors"][0]["message"])
