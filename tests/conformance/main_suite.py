"""Port of the data-driven conformance runner on distribution-spec ``main``
(``run.go``, ``config.go``, ``state.go``, ``results.go``, ``main.go``).

``Runner.test_all`` performs exactly what ``TestAll`` does: ping, empty-repo
tag list and referrers, the blob API matrix for sha256 and sha512, every
generated data set (push, tag list, HEAD, GET, referrers, delete) and the
manifest error cases.  Results form the same tree as ``results.go``; every
``TestPass``/``TestFail``/``TestSkip`` call counts one case, which is what the
official summary totals.

Go iterates maps in random order (blobs, tags, referrers, artifact types);
here those iterations are shuffled with ``Runner.rng`` so a seed reproduces a
run.
"""

from __future__ import annotations

import enum
import random
import secrets
import time
import traceback
from typing import Any, Awaitable, Callable, Optional

import attr

from .client import GoHTTPClient
from .gojson import digest_of, rand_text
from .main_api import (
    API,
    CHUNK_MIN,
    DISABLED,
    ERROR,
    FAIL,
    MT_EXAMPLE_CONF1,
    MT_EXAMPLE_CONF2,
    MT_OCI_EMPTY_JSON,
    MT_OCI_IMAGE,
    MT_OCI_LAYER_ND,
    MT_OCI_LAYER_ND_GZ,
    MT_OCI_LAYER_PRE,
    MT_OCTET_STREAM,
    SKIP,
    UNSUPPORTED,
    CErr,
    Opt,
    Ref,
    detect_subject,
    errorf,
    expect_body,
    expect_header,
    expect_status,
    get_flags,
    join,
    mark,
    return_header,
    return_response,
    return_status,
    save_output,
    with_and,
    with_flag,
    with_header_add,
    with_or,
    with_url_param,
)
from .main_testdata import (
    COMP_UNCOMP,
    Descriptor,
    TestData,
    gen_with_algo,
    gen_with_annotation_uniq,
    gen_with_annotations,
    gen_with_artifact_type,
    gen_with_blob_size,
    gen_with_compress,
    gen_with_config_bytes,
    gen_with_config_media_type,
    gen_with_descriptor_data,
    gen_with_extra_field,
    gen_with_layer_bytes,
    gen_with_layer_count,
    gen_with_layer_media_type,
    gen_with_platform,
    gen_with_platforms,
    gen_with_subject,
    gen_with_tag,
)

TEST_NAME = "OCI Conformance Test"


# --- results.go ---------------------------------------------------------------


class Status(enum.IntEnum):
    UNKNOWN = 0
    DISABLED = 1
    SKIP = 2
    PASS = 3
    FAIL = 4
    ERROR = 5

    def set(self, other: "Status") -> "Status":
        return other if other > self else self

    def __str__(self) -> str:
        return {1: "Disabled", 2: "Skip", 3: "Pass", 4: "FAIL", 5: "Error"}.get(int(self), "Unknown")


class Results:
    def __init__(self, name: str, parent: Optional["Results"]) -> None:
        self.name = f"{parent.name}/{name}" if parent is not None and parent.name else name
        self.parent = parent
        self.children: list[Results] = []
        self.status = Status.UNKNOWN
        self.errs: list[CErr] = []
        self.output: list[str] = []
        self.counts = [0] * 6
        self.start = time.time()
        self.stop = self.start

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


# --- state.go -------------------------------------------------------------------


class API_(enum.IntEnum):
    TAG_LIST = 0
    TAG_DELETE = 1
    TAG_DELETE_ATOMIC = 2
    BLOB_CANCEL = 3
    BLOB_PUSH = 4
    BLOB_POST_ONLY = 5
    BLOB_POST_PUT = 6
    BLOB_PATCH_CHUNKED = 7
    BLOB_PATCH_STREAM = 8
    BLOB_MOUNT_SOURCE = 9
    BLOB_MOUNT_ANONYMOUS = 10
    BLOB_GET_FULL = 11
    BLOB_GET_RANGE = 12
    BLOB_HEAD = 13
    BLOB_DELETE = 14
    BLOB_DELETE_ATOMIC = 15
    MANIFEST_PUT_DIGEST = 16
    MANIFEST_PUT_TAG = 17
    MANIFEST_PUT_TAG_PARAM = 18
    MANIFEST_PUT_SUBJECT = 19
    MANIFEST_GET_DIGEST = 20
    MANIFEST_GET_TAG = 21
    MANIFEST_HEAD_DIGEST = 22
    MANIFEST_HEAD_TAG = 23
    MANIFEST_DELETE = 24
    MANIFEST_DELETE_ATOMIC = 25
    REFERRERS = 26
    PING = 27

    def __str__(self) -> str:
        return _API_NAMES[self]


_API_NAMES = {
    API_.TAG_LIST: "Tag listing",
    API_.TAG_DELETE: "Tag delete",
    API_.TAG_DELETE_ATOMIC: "Tag delete atomic",
    API_.BLOB_CANCEL: "Blob upload cancel",
    API_.BLOB_PUSH: "Blob push",
    API_.BLOB_POST_ONLY: "Blob post only",
    API_.BLOB_POST_PUT: "Blob post put",
    API_.BLOB_PATCH_CHUNKED: "Blob chunked",
    API_.BLOB_PATCH_STREAM: "Blob streaming",
    API_.BLOB_MOUNT_SOURCE: "Blob mount",
    API_.BLOB_MOUNT_ANONYMOUS: "Blob anonymous mount",
    API_.BLOB_GET_FULL: "Blob get",
    API_.BLOB_GET_RANGE: "Blob get range",
    API_.BLOB_HEAD: "Blob head",
    API_.BLOB_DELETE: "Blob delete",
    API_.BLOB_DELETE_ATOMIC: "Blob delete atomic",
    API_.MANIFEST_PUT_DIGEST: "Manifest put by digest",
    API_.MANIFEST_PUT_TAG: "Manifest put by tag",
    API_.MANIFEST_PUT_TAG_PARAM: "Manifest put with tag params",
    API_.MANIFEST_PUT_SUBJECT: "Manifest put with subject",
    API_.MANIFEST_GET_DIGEST: "Manifest get by digest",
    API_.MANIFEST_GET_TAG: "Manifest get by tag",
    API_.MANIFEST_HEAD_DIGEST: "Manifest head by digest",
    API_.MANIFEST_HEAD_TAG: "Manifest head by tag",
    API_.MANIFEST_DELETE: "Manifest delete",
    API_.MANIFEST_DELETE_ATOMIC: "Manifest delete atomic",
    API_.REFERRERS: "Referrers",
    API_.PING: "Ping",
}


# --- config.go --------------------------------------------------------------------


@attr.s(auto_attribs=True)
class Config:
    """The parts of ``config`` the runner reads; defaults are those of spec version 1.1."""

    registry_url: str  # schemeReg, e.g. http://127.0.0.1:5000
    repo1: str = "conformance/repo1"
    repo2: str = "conformance/repo2"
    version: str = "1.1"
    # APIs
    ping: bool = True
    pull: bool = True
    push: bool = True
    blobs_atomic: bool = True
    blobs_delete: bool = True
    blobs_digest_header: bool = False
    blobs_mount_anonymous: bool = True
    blobs_upload_cancel: bool = False
    manifests_atomic: bool = True
    manifests_delete: bool = True
    manifests_digest_header: bool = False
    manifests_tag_param: bool = False
    tags_atomic: bool = True
    tags_delete: bool = True
    tags_list: bool = True
    referrer: bool = True
    # data
    data_image: bool = True
    data_index: bool = True
    data_index_list: bool = True
    data_sparse: bool = False
    data_artifact: bool = True
    data_subject: bool = True
    data_subject_missing: bool = True
    data_artifact_list: bool = True
    data_subject_list: bool = True
    data_data_field: bool = True
    data_nondistributable: bool = True
    data_custom_fields: bool = True
    data_no_layers: bool = True
    data_empty_blob: bool = True
    data_sha512: bool = True

    @classmethod
    def for_version(cls, registry_url: str, version: str = "1.1", **kw: Any) -> "Config":
        c = cls(registry_url=registry_url, **kw)
        if version in ("dev", "1.1+dev"):
            c.blobs_upload_cancel = True
            c.blobs_digest_header = True
            c.manifests_digest_header = True
            c.manifests_tag_param = True
            c.version = "1.1+dev"
        elif version in ("", "stable", "1.1"):
            c.version = "1.1"
        elif version == "1.0":
            c.blobs_mount_anonymous = False
            c.referrer = False
            c.version = "1.0"
        else:
            raise ValueError(f"unsupported config version {version}")
        return c


# --- run.go ------------------------------------------------------------------------

RunFn = Callable[["Runner", Results], Awaitable[Optional[CErr]]]
BLOB_APIS = [API_.BLOB_POST_PUT, API_.BLOB_POST_ONLY, API_.BLOB_PATCH_STREAM, API_.BLOB_PATCH_CHUNKED]


def map_contains_all(check: dict[str, str] | None, goal: dict[str, str] | None) -> bool:
    if not goal:
        return True
    check = check or {}
    return all(k in check and check[k] == v for k, v in goal.items())


class Runner:
    def __init__(self, config: Config, client: GoHTTPClient, seed: int | None = None) -> None:
        self.config = config
        self.api = API(client)
        self.results = Results(TEST_NAME, None)
        self.data: dict[str, TestData] = {}
        self.data_status: dict[str, Status] = {}
        self.api_status: dict[API_, Status] = {a: Status.UNKNOWN for a in API_}
        self.data_tests: list[str] = []
        self.blob_apis_tested: set[API_] = set()
        self.blob_apis_tested_by_algo: dict[str, set[API_]] = {}
        self.seed = secrets.randbits(32) if seed is None else seed
        self.rng = random.Random(self.seed)
        for a in API_:
            if (e := self.api_require(a)) is not None and e.is_(DISABLED):
                self.api_status[a] = Status.DISABLED

    @property
    def reg(self) -> str:
        return self.config.registry_url

    def shuffled(self, items: list) -> list:
        items = list(items)
        self.rng.shuffle(items)
        return items

    # ---------------------------------------------------------------- GenerateData

    def generate_data(self) -> None:
        c = self.config
        if not c.data_image:
            return
        if not c.push:
            return

        def new(td_name: str, desc: str, enabled: bool = True) -> Optional[TestData]:
            self.data[td_name] = TestData(desc)
            if not enabled:
                self.data_status[td_name] = Status.DISABLED
                return None
            self.data_status[td_name] = Status.UNKNOWN
            self.data_tests.append(td_name)
            return self.data[td_name]

        amd64 = {"os": "linux", "architecture": "amd64"}
        arm64 = {"os": "linux", "architecture": "arm64"}
        conformance_ann = {"org.opencontainers.conformance": "hello conformance test"}

        td = new("image", "Image")
        td.gen_manifest_full(gen_with_tag("image"))
        td = new("image-uncompressed", "Image Uncompressed")
        td.gen_manifest_full(gen_with_tag("image-uncompressed"), gen_with_compress(COMP_UNCOMP))
        td = new("large-manifest", "Image with Large Manifest")
        large = {f"large-annotation-{i}": "A" * 10000 for i in range(390)}
        td.gen_manifest_full(gen_with_tag("large-manifest"), gen_with_annotations(large))
        td = new("index", "Index", c.data_index)
        if td:
            td.gen_index_full(gen_with_tag("index"), gen_with_platforms([dict(amd64), dict(arm64)]))
        td = new("nested-index", "Nested Index", c.data_index and c.data_index_list)
        if td:
            d1 = td.gen_index_full(gen_with_platforms([dict(amd64), dict(arm64)]))
            d2 = td.gen_index_full(gen_with_platforms([dict(amd64), dict(arm64)]))
            td.gen_index([None, None], [d1, d2], gen_with_tag("index-of-index"))
        td = new("empty-index", "Empty Index", c.data_index)
        if td:
            td.gen_index_full(gen_with_tag("index"), gen_with_platforms([]))
        td = new("artifact", "Artifact", c.data_artifact)
        if td:
            td.gen_manifest_full(
                gen_with_tag("artifact"),
                gen_with_artifact_type(MT_EXAMPLE_CONF1),
                gen_with_config_media_type(MT_OCI_EMPTY_JSON),
                gen_with_config_bytes(b"{}"),
                gen_with_layer_count(1),
                gen_with_layer_media_type(MT_EXAMPLE_CONF1),
            )
        td = new("artifact-index", "Artifact Index", c.data_artifact_list)
        if td:
            td.gen_index_full(
                gen_with_tag("artifact-index"),
                gen_with_platforms([dict(amd64), dict(arm64)]),
                gen_with_artifact_type(MT_EXAMPLE_CONF1),
                gen_with_config_media_type(MT_OCI_EMPTY_JSON),
                gen_with_config_bytes(b"{}"),
                gen_with_layer_count(1),
                gen_with_layer_media_type(MT_EXAMPLE_CONF1),
            )
        td = new("artifact-without-layers", "Artifact without Layers", c.data_artifact)
        if td:
            td.gen_manifest_full(
                gen_with_tag("artifact-without-layers"),
                gen_with_artifact_type(MT_EXAMPLE_CONF1),
                gen_with_config_media_type(MT_OCI_EMPTY_JSON),
                gen_with_config_bytes(b"{}"),
                gen_with_layer_count(1),
                gen_with_layer_bytes(b"{}"),
                gen_with_layer_media_type(MT_OCI_EMPTY_JSON),
            )
        td = new("artifacts-with-subject", "Artifacts with Subject", c.data_subject)
        if td:
            subj_dig = td.gen_manifest_full(gen_with_tag("image"))
            subj_desc = td.desc[subj_dig].copy()
            td.gen_manifest_full(gen_with_subject(subj_desc))
            td.gen_manifest_full(
                gen_with_artifact_type(MT_EXAMPLE_CONF1),
                gen_with_annotations(dict(conformance_ann)),
                gen_with_annotation_uniq(),
                gen_with_config_media_type(MT_OCI_EMPTY_JSON),
                gen_with_config_bytes(b"{}"),
                gen_with_layer_count(1),
                gen_with_layer_media_type(MT_EXAMPLE_CONF1),
                gen_with_subject(subj_desc),
                gen_with_tag("tagged-artifact1"),
            )
            td.gen_manifest_full(
                gen_with_artifact_type(MT_EXAMPLE_CONF2),
                gen_with_annotations(dict(conformance_ann)),
                gen_with_annotation_uniq(),
                gen_with_config_media_type(MT_OCI_EMPTY_JSON),
                gen_with_config_bytes(b"{}"),
                gen_with_layer_count(1),
                gen_with_layer_media_type(MT_OCTET_STREAM),
                gen_with_subject(subj_desc),
                gen_with_tag("tagged-artifact2"),
            )
        td = new("index-with-subject", "Index with Subject", c.data_subject_list)
        if td:
            subj_dig = td.gen_index_full(gen_with_tag("index"))
            subj_desc = td.desc[subj_dig].copy()
            td.gen_index_full(
                gen_with_artifact_type(MT_EXAMPLE_CONF1),
                gen_with_annotations(dict(conformance_ann)),
                gen_with_annotation_uniq(),
                gen_with_config_media_type(MT_OCI_EMPTY_JSON),
                gen_with_config_bytes(b"{}"),
                gen_with_layer_count(1),
                gen_with_layer_media_type(MT_EXAMPLE_CONF1),
                gen_with_subject(subj_desc),
                gen_with_tag("tagged-artifact"),
            )
        td = new("missing-subject", "Missing Subject", c.data_subject_missing)
        if td:
            subj_desc = Descriptor(MT_OCI_IMAGE, digest_of(b"missing content"), 123)
            td.gen_manifest_full(
                gen_with_artifact_type(MT_EXAMPLE_CONF1),
                gen_with_annotations(dict(conformance_ann)),
                gen_with_annotation_uniq(),
                gen_with_config_media_type(MT_OCI_EMPTY_JSON),
                gen_with_config_bytes(b"{}"),
                gen_with_layer_count(1),
                gen_with_layer_media_type(MT_EXAMPLE_CONF1),
                gen_with_subject(subj_desc),
                gen_with_tag("tagged-artifact"),
            )
        td = new("data-field", "Data Field", c.data_data_field)
        if td:
            td.gen_manifest_full(gen_with_tag("data-field"), gen_with_descriptor_data())
        td = new("non-distributable-layers", "Non-distributable Layers", c.data_nondistributable)
        if td:
            conf_dig = ["", "", ""]
            conf_dig[0] = digest_of(secrets.token_bytes(256))
            dig = digest_of(secrets.token_bytes(256))
            layers = [Descriptor(MT_OCI_LAYER_ND_GZ, dig, 123456, urls=["https://store.example.com/blobs/sha256/" + dig.split(":", 1)[1]])]
            dig = digest_of(secrets.token_bytes(256))
            conf_dig[1] = dig
            layers.append(Descriptor(MT_OCI_LAYER_ND, dig, 12345, urls=["https://store.example.com/blobs/sha256/" + dig.split(":", 1)[1]]))
            c_dig, uc_dig, _ = td.gen_layer(1)
            conf_dig[2] = uc_dig
            layers.append(td.desc[c_dig].copy())
            c_dig2, _ = td.gen_config(dict(amd64), conf_dig)
            td.gen_manifest(td.desc[c_dig2], layers, gen_with_tag("non-distributable-image"))
        td = new("custom-fields", "Custom Fields", c.data_custom_fields)
        if td:
            td.gen_index_full(
                gen_with_tag("custom-fields"),
                gen_with_platforms([dict(amd64), dict(arm64)]),
                gen_with_extra_field(),
            )
        td = new("no-layers", "No Layers", c.data_no_layers)
        if td:
            td.gen_manifest_full(gen_with_tag("no-layers"), gen_with_layer_count(0))
        td = new("sparse", "Sparse Manifests", c.data_sparse)
        if td:
            td.gen_manifest_full(gen_with_tag("sparse-image"))
            for dig in list(td.blobs):
                if td.desc[dig].media_type.startswith(MT_OCI_LAYER_PRE):
                    del td.desc[dig]
                    del td.blobs[dig]
                    break
            image_dig = td.gen_manifest_full(gen_with_platform(dict(amd64)))
            rand_dig = digest_of(secrets.token_bytes(1024))
            td.desc[rand_dig] = Descriptor(MT_OCI_IMAGE, rand_dig, 1024)
            td.gen_index([dict(amd64), dict(arm64)], [image_dig, rand_dig], gen_with_tag("sparse-index"))
        # non-canonical digests require tag parameters to push tags, so only test by digest
        td = new("sha512", "Digest Algorithm sha512", c.data_sha512)
        if td:
            td.gen_index_full(gen_with_algo("sha512"))
        td = new("tag-param-sha256", "Tag Param", c.manifests_tag_param)
        if td:
            td.gen_index_full(gen_with_tag("tag-param-sha256"))
            for i, dig in enumerate(td.man_order):
                td.tags[f"tag-param-sha256-{i}"] = dig
                td.push_opts[dig] = [with_flag("TagParam")]
        td = new("tag-param-sha512", "Tag Param sha512", c.manifests_tag_param and c.data_sha512)
        if td:
            td.gen_index_full(gen_with_tag("tag-param-sha512"), gen_with_algo("sha512"))
            for i, dig in enumerate(td.man_order):
                td.tags[f"tag-param-sha512-{i}"] = dig
                td.push_opts[dig] = [with_flag("TagParam")]
        td = new("bad-digest-image", "Bad Digest Image")
        dig = td.gen_manifest_full()
        td.pull_opts[dig] = [with_flag("SkipPullTest")]
        td.push_opts[dig] = [with_flag("ExpectBadDigest")]
        # add some whitespace to make the digest mismatch
        td.manifests[dig] = td.manifests[dig] + b"  "

    # ---------------------------------------------------------------- TestAll

    async def test_all(self) -> Optional[CErr]:
        errs: list[Optional[CErr]] = []
        self.results.start = time.time()
        repo, repo2 = self.config.repo1, self.config.repo2
        self.generate_data()
        errs.append(await self.test_ping(self.results))
        errs.append(await self.test_empty(self.results, repo))
        algos = ["sha256"]
        if self.config.data_sha512:
            algos.append("sha512")
        else:
            self.data["blobs-sha512"] = TestData("Blobs sha512")
            self.data_status["blobs-sha512"] = Status.DISABLED
        for algo in algos:
            errs.append(await self.test_blob_apis(self.results, "blobs-" + algo, "Blobs " + algo, algo, repo, repo2))
        for td_name in self.data_tests:
            if self.data_status[td_name] == Status.DISABLED:
                continue

            async def run_data(r: Runner, res: Results, td_name: str = td_name) -> Optional[CErr]:
                e: list[Optional[CErr]] = [
                    await r.test_push(res, td_name, repo),
                    await r.test_list(res, td_name, repo),
                    await r.test_head(res, td_name, repo),
                    await r.test_pull(res, td_name, repo),
                    await r.test_referrers(res, td_name, repo),
                    await r.test_delete(res, td_name, repo),
                ]
                return join(e)

            errs.append(await self.child_run(td_name, self.results, run_data))
        errs.append(await self.test_manifest_errors(self.results, repo))
        self.results.stop = time.time()
        return join(errs)

    # ---------------------------------------------------------------- blob APIs

    async def test_blob_apis(self, parent: Results, td_name: str, td_desc: str, algo: str, repo: str, repo2: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.BLOB_PUSH)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_PUSH)
                return mark(SKIP, err)
            errs: list[Optional[CErr]] = []
            r.data[td_name] = TestData(td_desc)
            r.data_status[td_name] = Status.UNKNOWN
            td = r.data[td_name]
            digests: dict[str, str] = {}
            r.blob_apis_tested_by_algo.setdefault(algo, set())
            blob_api_tests = ["post only", "post+put", "chunked single", "stream", "mount", "mount anonymous", "mount missing", "post cancel"]
            for name in blob_api_tests:
                dig, _ = td.gen_blob(gen_with_blob_size(512), gen_with_algo(algo))
                digests[name] = dig

            async def get_missing(r: Runner, res: Results) -> Optional[CErr]:
                if (err := r.api_require(API_.BLOB_GET_FULL)) is not None:
                    r.test_skip(res, err, td_name, API_.BLOB_GET_FULL)
                    return mark(SKIP, err)
                err = await r.api.blob_get_req(r.reg, repo, digests["post cancel"], td, expect_status(404), save_output(res.output))
                if err is not None:
                    r.test_fail(res, err, td_name, API_.BLOB_GET_FULL)
                    return mark(FAIL, err)
                r.test_pass(res, td_name, API_.BLOB_GET_FULL)
                return None

            errs.append(await r.child_run("get-missing", res, get_missing))
            blob_api_tests += ["chunked multi", "chunked multi and put chunk", "chunked out-of-order", "chunked out-of-order and put chunk"]
            state = {"min_chunk_size": CHUNK_MIN}
            min_header = Ref("")

            for test_name in blob_api_tests:

                async def one(r: Runner, res: Results, test_name: str = test_name) -> Optional[CErr]:
                    err: Optional[CErr] = None
                    errs: list[Optional[CErr]] = []
                    dig = digests.get(test_name, "")
                    api = API_.TAG_LIST  # Go zero value; "mount missing" leaves it
                    big = state["min_chunk_size"] * 3 - 5
                    if test_name == "post only":
                        api = API_.BLOB_POST_ONLY
                        err = await r.test_push_blob_post_only(res, td_name, repo, dig)
                        errs.append(err)
                    elif test_name == "post+put":
                        api = API_.BLOB_POST_PUT
                        err = await r.test_push_blob_post_put(res, td_name, repo, dig)
                        errs.append(err)
                    elif test_name == "chunked single":
                        api = API_.BLOB_PATCH_CHUNKED
                        err = await r.test_push_blob_patch_chunked(res, td_name, repo, dig, return_header("OCI-Chunk-Min-Length", min_header))
                        errs.append(err)
                        if min_header.v != "":
                            try:
                                mp = int(min_header.v)
                            except ValueError:
                                mp = None
                            if mp is not None and mp > state["min_chunk_size"]:
                                state["min_chunk_size"] = mp
                    elif test_name in ("chunked multi", "chunked multi and put chunk", "chunked out-of-order", "chunked out-of-order and put chunk"):
                        api = API_.BLOB_PATCH_CHUNKED
                        dig, _ = td.gen_blob(gen_with_blob_size(big), gen_with_algo(algo))
                        digests[test_name] = dig
                        flags = {
                            "chunked multi": [],
                            "chunked multi and put chunk": [with_flag("PutLastChunk")],
                            "chunked out-of-order": [with_flag("OutOfOrderChunks")],
                            "chunked out-of-order and put chunk": [with_flag("PutLastChunk"), with_flag("OutOfOrderChunks")],
                        }[test_name]
                        err = await r.test_push_blob_patch_chunked(res, td_name, repo, dig, *flags)
                        errs.append(err)
                    elif test_name == "stream":
                        api = API_.BLOB_PATCH_STREAM
                        err = await r.test_push_blob_patch_stream(res, td_name, repo, dig)
                        errs.append(err)
                    elif test_name == "post cancel":
                        api = API_.BLOB_POST_PUT
                        err = await r.test_push_blob_post_cancel(res, td_name, repo, dig)
                        errs.append(err)
                    elif test_name == "mount":
                        api = API_.BLOB_MOUNT_SOURCE
                        err = await r.test_push_blob_any(res, td_name, repo2, dig)
                        errs.append(err)
                        err = await r.test_push_blob_mount(res, td_name, repo, repo2, dig)
                        errs.append(err)
                    elif test_name == "mount anonymous":
                        api = API_.BLOB_MOUNT_ANONYMOUS
                        err = await r.test_push_blob_any(res, td_name, repo2, dig)
                        errs.append(err)
                        err = await r.test_push_blob_mount_anonymous(res, td_name, repo, dig)
                        errs.append(err)
                    elif test_name == "mount missing":
                        err = await r.test_push_blob_mount_missing(res, td_name, repo, repo2, dig)
                        errs.append(err)
                    else:
                        return errorf(f"unknown api test {test_name}")
                    r.blob_apis_tested.add(api)
                    r.blob_apis_tested_by_algo.setdefault(algo, set()).add(api)
                    if err is None and test_name != "post cancel":
                        errs.append(await r.test_head_blob(res, td_name, repo, dig))
                        errs.append(await r.test_pull_blob(res, td_name, repo, dig))
                    errs.append(await r.test_delete_blob(res, td_name, repo, dig))
                    if test_name in ("mount", "mount anonymous"):
                        errs.append(await r.test_delete_blob(res, td_name, repo2, dig))
                    return join(errs)

                errs.append(await r.child_run(test_name, res, one))

            # verify support for range requests
            async def ranges(r: Runner, res: Results) -> Optional[CErr]:
                if (err := r.api_require(API_.BLOB_GET_RANGE, API_.BLOB_PUSH)) is not None:
                    r.test_skip(res, err, td_name, API_.BLOB_GET_RANGE)
                    return mark(SKIP, err)
                blob_len = 2048
                blob_len_str = str(blob_len)
                dig, blob = td.gen_blob(gen_with_blob_size(blob_len), gen_with_algo(algo))
                if (err := await r.test_push_blob_any(res, td_name, repo, dig)) is not None:
                    r.test_skip(res, err, td_name, API_.BLOB_GET_RANGE)
                    return err
                rerrs: list[Optional[CErr]] = []

                def cr(first: int, last: int) -> list[Opt]:
                    return [
                        with_or(
                            [expect_header("Content-Range", f"bytes {first}-{last}/{blob_len}")],
                            [expect_header("Content-Range", f"bytes {first}-{last}/*")],
                        )
                    ]

                range_tests = [
                    ("range 500-1499", "bytes=500-1499", [expect_body(blob[500:1500]), expect_status(206), expect_header("Content-Length", "1000"), *cr(500, 1499)]),
                    ("range 500-", "bytes=500-", [expect_body(blob[500:]), expect_status(206), expect_header("Content-Length", str(blob_len - 500)), *cr(500, blob_len - 1)]),
                    ("range -500", "bytes=-500", [expect_body(blob[blob_len - 500 :]), expect_status(206), expect_header("Content-Length", "500"), *cr(blob_len - 500, blob_len - 1)]),
                    ("range 2000-5000", "bytes=2000-5000", [expect_body(blob[2000:]), expect_status(206), expect_header("Content-Length", str(blob_len - 2000)), *cr(2000, blob_len - 1)]),
                    ("range 500-0", "bytes=500-0", [expect_status(416)]),
                    ("range 5000-10000", "bytes=5000-10000", [expect_status(416)]),
                ]
                for name, rng_hdr, resp_opts in range_tests:

                    async def one_range(r: Runner, res: Results, rng_hdr: str = rng_hdr, resp_opts: list[Opt] = resp_opts) -> Optional[CErr]:
                        status = Ref(0)
                        opts = [
                            save_output(res.output),
                            with_and([with_header_add("Range", rng_hdr)]),
                            with_or(
                                resp_opts,
                                [expect_status(200), expect_header("Content-Length", blob_len_str), expect_body(blob), return_status(status)],
                            ),
                        ]
                        if (err := await r.api.blob_get_req(r.reg, repo, dig, td, *opts)) is not None:
                            r.test_fail(res, err, td_name, API_.BLOB_GET_RANGE)
                            return mark(FAIL, err)
                        if status.v == 200:
                            err = errorf("range request unsupported, full blob returned", UNSUPPORTED)
                            r.test_fail(res, err, td_name, API_.BLOB_GET_RANGE)
                            return mark(FAIL, err)
                        r.test_pass(res, td_name, API_.BLOB_GET_RANGE)
                        return None

                    rerrs.append(await r.child_run(name, res, one_range))
                rerrs.append(await r.test_delete_blob(res, td_name, repo, dig))
                return join(rerrs)

            errs.append(await r.child_run("range requests", res, ranges))

            # test various well known blob contents
            blob_data_tests: dict[str, bytes] = {}
            if r.config.data_empty_blob:
                blob_data_tests["empty"] = b""
            blob_data_tests["emptyJSON"] = b"{}"
            for name, val in r.shuffled(list(blob_data_tests.items())):
                dig = digest_of(val, algo)
                digests[name] = dig
                td.blobs[dig] = val
            for name in r.shuffled(list(blob_data_tests)):

                async def known(r: Runner, res: Results, name: str = name) -> Optional[CErr]:
                    # (upstream appends to, and returns, the enclosing errs)
                    dig = digests[name]
                    for e in (
                        await r.test_push_blob_any(res, td_name, repo, dig),
                        await r.test_head_blob(res, td_name, repo, dig),
                        await r.test_pull_blob(res, td_name, repo, dig),
                        await r.test_delete_blob(res, td_name, repo, dig),
                    ):
                        if e is not None:
                            errs.append(e)
                    return join(errs)

                errs.append(await r.child_run(name, res, known))

            # the various blob push APIs with a bad digest
            bad_tests = ["bad digest post only", "bad digest post+put", "bad digest chunked", "bad digest chunked and put chunk", "bad digest stream"]
            for name in bad_tests:
                dig, _ = td.gen_blob(gen_with_blob_size(state["min_chunk_size"] * 3 - 5), gen_with_algo(algo))
                td.blobs[dig] = td.blobs[dig] + b"oh no"  # corrupt the blob bytes
                digests[name] = dig
            opt_bad = with_flag("ExpectBadDigest")
            for test_name in bad_tests:

                async def bad(r: Runner, res: Results, test_name: str = test_name) -> Optional[CErr]:
                    dig = digests[test_name]
                    if test_name == "bad digest post only":
                        return await r.test_push_blob_post_only(res, td_name, repo, dig, opt_bad)
                    if test_name == "bad digest post+put":
                        return await r.test_push_blob_post_put(res, td_name, repo, dig, opt_bad)
                    if test_name in ("bad digest chunked", "bad digest chunked and put chunk"):
                        return await r.test_push_blob_patch_chunked(res, td_name, repo, dig, opt_bad)
                    if test_name == "bad digest stream":
                        return await r.test_push_blob_patch_stream(res, td_name, repo, dig, opt_bad)
                    return errorf(f"unknown api test {test_name}")

                errs.append(await r.child_run(test_name, res, bad))
            return join(errs)

        return await self.child_run(algo + " blobs", parent, body)

    # ---------------------------------------------------------------- delete

    async def test_delete(self, parent: Results, td_name: str, repo: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            errs: list[Optional[CErr]] = []
            td = r.data[td_name]
            for tag, dig in r.shuffled(list(td.tags.items())):
                if (err := await r.test_delete_tag(res, td_name, repo, tag, dig)) is not None:
                    errs.append(CErr(f"failed to delete manifest tag {tag}", causes=[err]))
            for i, dig in enumerate(reversed(td.man_order)):
                if (err := await r.test_delete_manifest(res, td_name, repo, dig)) is not None:
                    errs.append(CErr(f"failed to delete manifest {i}, digest {dig}", causes=[err]))
            for dig in r.shuffled(list(td.blobs)):
                if (err := await r.test_delete_blob(res, td_name, repo, dig)) is not None:
                    errs.append(CErr(f"failed to delete blob {dig}", causes=[err]))
            return join(errs)

        return await self.child_run("delete", parent, body)

    async def test_delete_tag(self, parent: Results, td_name: str, repo: str, tag: str, dig: str) -> Optional[CErr]:
        td = self.data[td_name]
        if not td.tag_pushed.get(tag):
            return None  # tag was not pushed so skip the attempt to delete it

        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.TAG_DELETE)) is not None:
                r.data_status[td_name] = r.data_status[td_name].set(Status.SKIP)
                r.test_skip(res, err, td_name, API_.TAG_DELETE, API_.TAG_DELETE_ATOMIC)
                return mark(SKIP, err)
            if (err := await r.api.manifest_delete(r.reg, repo, tag, dig, td, save_output(res.output))) is not None:
                r.test_fail(res, err, td_name, API_.TAG_DELETE)
                r.test_skip(res, err, td_name, API_.TAG_DELETE_ATOMIC)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.TAG_DELETE)
            if (err := r.api_require(API_.TAG_DELETE_ATOMIC)) is not None:
                r.test_skip(res, err, td_name, API_.TAG_DELETE_ATOMIC)
                return mark(SKIP, err)
            if (err := await r.api.manifest_head_req(r.reg, repo, tag, dig, td, save_output(res.output), expect_status(404))) is not None:
                r.test_fail(res, err, td_name, API_.TAG_DELETE_ATOMIC)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.TAG_DELETE_ATOMIC)
            return None

        return await self.child_run("tag-delete", parent, body)

    async def test_delete_manifest(self, parent: Results, td_name: str, repo: str, dig: str) -> Optional[CErr]:
        td = self.data[td_name]

        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.MANIFEST_DELETE)) is not None:
                r.data_status[td_name] = r.data_status[td_name].set(Status.SKIP)
                r.test_skip(res, err, td_name, API_.MANIFEST_DELETE, API_.MANIFEST_DELETE_ATOMIC)
                return mark(SKIP, err)
            if (err := await r.api.manifest_delete(r.reg, repo, dig, dig, td, save_output(res.output))) is not None:
                r.test_fail(res, err, td_name, API_.MANIFEST_DELETE)
                r.test_skip(res, err, td_name, API_.MANIFEST_DELETE_ATOMIC)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.MANIFEST_DELETE)
            if (err := r.api_require(API_.MANIFEST_DELETE_ATOMIC)) is not None:
                r.test_skip(res, err, td_name, API_.MANIFEST_DELETE_ATOMIC)
                return mark(SKIP, err)
            if (err := await r.api.manifest_head_req(r.reg, repo, dig, dig, td, save_output(res.output), expect_status(404))) is not None:
                r.test_fail(res, err, td_name, API_.MANIFEST_DELETE_ATOMIC)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.MANIFEST_DELETE_ATOMIC)
            return None

        return await self.child_run("manifest-delete", parent, body)

    async def test_delete_blob(self, parent: Results, td_name: str, repo: str, dig: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            td = r.data[td_name]
            if (err := r.api_require(API_.BLOB_DELETE)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_DELETE, API_.BLOB_DELETE_ATOMIC)
                return mark(SKIP, err)
            if (err := await r.api.blob_delete(r.reg, repo, dig, td, save_output(res.output))) is not None:
                r.test_fail(res, err, td_name, API_.BLOB_DELETE)
                r.test_skip(res, err, td_name, API_.BLOB_DELETE_ATOMIC)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.BLOB_DELETE)
            if (err := r.api_require(API_.BLOB_DELETE_ATOMIC)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_DELETE_ATOMIC)
                return mark(SKIP, err)
            if (err := await r.api.blob_head_req(r.reg, repo, dig, td, save_output(res.output), expect_status(404))) is not None:
                r.test_fail(res, err, td_name, API_.BLOB_DELETE_ATOMIC)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.BLOB_DELETE_ATOMIC)
            return None

        return await self.child_run("blob-delete", parent, body)

    # ---------------------------------------------------------------- empty repo

    async def test_empty(self, parent: Results, repo: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            return join([await r.test_empty_tag_list(res, repo), await r.test_empty_referrers(res, repo)])

        return await self.child_run("empty", parent, body)

    async def test_empty_referrers(self, parent: Results, repo: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.REFERRERS)) is not None:
                r.test_skip(res, err, "", API_.REFERRERS)
                return mark(SKIP, err)
            subj = digest_of(rand_text().encode())
            _, err = await r.api.referrers_list(r.reg, repo, subj, save_output(res.output))
            if err is not None:
                r.test_fail(res, err, "", API_.REFERRERS)
                return mark(FAIL, err)
            r.test_pass(res, "", API_.REFERRERS)
            return None

        return await self.child_run("referrers", parent, body)

    async def test_empty_tag_list(self, parent: Results, repo: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.TAG_LIST)) is not None:
                r.test_skip(res, err, "", API_.TAG_LIST)
                return mark(SKIP, err)
            _, err = await r.api.tag_list(r.reg, repo, save_output(res.output))
            if err is not None:
                r.test_fail(res, err, "", API_.TAG_LIST)
                return mark(FAIL, err)
            r.test_pass(res, "", API_.TAG_LIST)
            return None

        return await self.child_run("tag list", parent, body)

    # ---------------------------------------------------------------- HEAD

    async def test_head(self, parent: Results, td_name: str, repo: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            td = r.data[td_name]
            errs: list[Optional[CErr]] = []
            for tag, dig in r.shuffled(list(td.tags.items())):
                if (err := await r.test_head_manifest_tag(res, td_name, repo, tag, dig, *td.pull_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to send head request for manifest by tag {tag}", causes=[err]))
            for i, dig in enumerate(td.man_order):
                if (err := await r.test_head_manifest_digest(res, td_name, repo, dig, *td.pull_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to send head request for manifest {i}, digest {dig}", causes=[err]))
            for dig in r.shuffled(list(td.blobs)):
                if (err := await r.test_head_blob(res, td_name, repo, dig, *td.pull_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to send head request for blob {dig}", causes=[err]))
            return join(errs)

        return await self.child_run("head", parent, body)

    async def test_head_blob(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        if get_flags(opts).get("SkipPullTest"):
            return None

        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.BLOB_HEAD)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_HEAD)
                return mark(SKIP, err)
            o = [save_output(res.output)]
            if r.config.blobs_digest_header:
                o.append(with_flag("RequireDigestHeader"))
            if (err := await r.api.blob_head_exists(r.reg, repo, dig, r.data[td_name], *o)) is not None:
                r.test_fail(res, err, td_name, API_.BLOB_HEAD)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.BLOB_HEAD)
            return None

        return await self.child_run("blob-head", parent, body)

    async def _manifest_read(
        self, parent: Results, name: str, api: API_, td_name: str, repo: str, ref: str, dig: str, opts: tuple, head: bool
    ) -> Optional[CErr]:
        if get_flags(opts).get("SkipPullTest"):
            return None
        td = self.data[td_name]

        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(api)) is not None:
                r.data_status[td_name] = r.data_status[td_name].set(Status.SKIP)
                r.test_skip(res, err, td_name, api)
                return mark(SKIP, err)
            o = [*opts, save_output(res.output)]
            if r.config.manifests_digest_header:
                o.append(with_flag("RequireDigestHeader"))
            fn = r.api.manifest_head_exists if head else r.api.manifest_get_exists
            if (err := await fn(r.reg, repo, ref, dig, td, *o)) is not None:
                r.test_fail(res, err, td_name, api)
                return mark(FAIL, err)
            r.test_pass(res, td_name, api)
            return None

        return await self.child_run(name, parent, body)

    async def test_head_manifest_digest(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        return await self._manifest_read(parent, "manifest-head-by-digest", API_.MANIFEST_HEAD_DIGEST, td_name, repo, dig, dig, opts, True)

    async def test_head_manifest_tag(self, parent: Results, td_name: str, repo: str, tag: str, dig: str, *opts: Opt) -> Optional[CErr]:
        return await self._manifest_read(parent, "manifest-head-by-tag", API_.MANIFEST_HEAD_TAG, td_name, repo, tag, dig, opts, True)

    # ---------------------------------------------------------------- tag list

    async def test_list(self, parent: Results, td_name: str, repo: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.TAG_LIST)) is not None:
                r.test_skip(res, err, td_name, API_.TAG_LIST)
                return mark(SKIP, err)
            tag_list, err = await r.api.tag_list(r.reg, repo, save_output(res.output))
            if err is not None:
                r.test_fail(res, err, td_name, API_.TAG_LIST)
                return mark(FAIL, err)
            errs: list[CErr] = []
            for tag in r.shuffled(list(r.data[td_name].tags)):
                if tag not in tag_list["tags"]:
                    errs.append(errorf(f"missing tag {tag!r} from listing", FAIL))
            if len(tag_list["tags"]) >= 2:
                sorted_tags = sorted(tag_list["tags"])
                end = len(sorted_tags) // 2
                last = sorted_tags[end - 1]
                partial, err = await r.api.tag_list(r.reg, repo, save_output(res.output), with_url_param("last", last))
                if err is not None:
                    r.test_fail(res, err, td_name, API_.TAG_LIST)
                    return mark(FAIL, err)
                for tag in sorted_tags[:end]:
                    if tag in partial["tags"]:
                        errs.append(errorf(f"tag {tag!r} returned when last set to {last!r}", FAIL))
                for tag in sorted_tags[end:]:
                    if tag not in partial["tags"]:
                        errs.append(errorf(f"tag {tag!r} missing when last set to {last!r}", FAIL))
            if errs:
                r.test_fail(res, join(errs), td_name, API_.TAG_LIST)
                return join(errs)
            r.test_pass(res, td_name, API_.TAG_LIST)
            return None

        return await self.child_run("tag-list", parent, body)

    # ---------------------------------------------------------------- manifest errors

    async def test_manifest_errors(self, parent: Results, repo: str) -> Optional[CErr]:
        errs: list[Optional[CErr]] = []

        async def missing(r: Runner, res: Results) -> Optional[CErr]:
            async def by_digest(r: Runner, res: Results) -> Optional[CErr]:
                if (err := r.api_require(API_.MANIFEST_GET_DIGEST)) is not None:
                    r.test_skip(res, err, "", API_.MANIFEST_GET_DIGEST)
                    return mark(SKIP, err)
                dig = digest_of(secrets.token_bytes(1024))
                if (err := await r.api.manifest_get_req(r.reg, repo, dig, dig, None, expect_status(404), save_output(res.output))) is not None:
                    r.test_fail(res, err, "", API_.MANIFEST_GET_DIGEST)
                    return mark(FAIL, err)
                r.test_pass(res, "", API_.MANIFEST_GET_DIGEST)
                return None

            async def by_tag(r: Runner, res: Results) -> Optional[CErr]:
                if (err := r.api_require(API_.MANIFEST_GET_TAG)) is not None:
                    r.test_skip(res, err, "", API_.MANIFEST_GET_TAG)
                    return mark(SKIP, err)
                tag = "missing-" + rand_text().lower()[:20]
                if (err := await r.api.manifest_get_req(r.reg, repo, tag, "", None, expect_status(404), save_output(res.output))) is not None:
                    r.test_fail(res, err, "", API_.MANIFEST_GET_TAG)
                    return mark(FAIL, err)
                r.test_pass(res, "", API_.MANIFEST_GET_TAG)
                return None

            return join([await r.child_run("by-digest", res, by_digest), await r.child_run("by-tag", res, by_tag)])

        errs.append(await self.child_run("missing-manifest", parent, missing))

        async def invalid_digest(r: Runner, res: Results) -> Optional[CErr]:
            ierrs: list[Optional[CErr]] = []
            td_name = "invalid-manifest-digest"
            r.data[td_name] = TestData("Invalid Manifest Digest")
            r.data_status.setdefault(td_name, Status.UNKNOWN)
            td = r.data[td_name]
            man_dig = td.gen_manifest_full(gen_with_layer_count(1))
            for dig in r.shuffled(list(td.blobs)):
                ierrs.append(await r.test_push_blob_any(res, td_name, repo, dig))

            async def put(r: Runner, res: Results) -> Optional[CErr]:
                if (err := r.api_require(API_.MANIFEST_PUT_DIGEST)) is not None:
                    r.data_status[td_name] = r.data_status[td_name].set(Status.SKIP)
                    r.test_skip(res, err, td_name, API_.MANIFEST_PUT_DIGEST)
                    return mark(SKIP, err)
                if (err := await r.api.manifest_put(r.reg, repo, "sha256:baddigeststring", man_dig, td, r.config.referrer, None, with_flag("ExpectBadDigest"), save_output(res.output))) is not None:
                    r.test_fail(res, err, td_name, API_.MANIFEST_PUT_DIGEST)
                    return mark(FAIL, err)
                r.test_pass(res, td_name, API_.MANIFEST_PUT_DIGEST)
                return None

            ierrs.append(await r.child_run("manifest-put", res, put))

            async def get(r: Runner, res: Results) -> Optional[CErr]:
                if (err := r.api_require(API_.MANIFEST_GET_DIGEST)) is not None:
                    r.data_status[td_name] = r.data_status[td_name].set(Status.SKIP)
                    r.test_skip(res, err, td_name, API_.MANIFEST_GET_DIGEST)
                    return mark(SKIP, err)
                if (err := await r.api.manifest_get_req(r.reg, repo, "sha256:baddigeststring", man_dig, td, expect_status(404, 400), save_output(res.output))) is not None:
                    r.test_fail(res, err, td_name, API_.MANIFEST_GET_DIGEST)
                    return mark(FAIL, err)
                r.test_pass(res, td_name, API_.MANIFEST_GET_DIGEST)
                return None

            ierrs.append(await r.child_run("manifest-get", res, get))
            ierrs.append(await r.test_delete(res, td_name, repo))
            return join(ierrs)

        errs.append(await self.child_run("invalid-digest-format", parent, invalid_digest))
        return join(errs)

    # ---------------------------------------------------------------- ping

    async def test_ping(self, parent: Results) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.PING)) is not None:
                r.test_skip(res, err, "", API_.PING)
                return mark(SKIP, err)
            if (err := await r.api.ping_req(r.reg, save_output(res.output))) is not None:
                r.test_fail(res, err, "", API_.PING)
                return mark(FAIL, err)
            r.test_pass(res, "", API_.PING)
            return None

        return await self.child_run("ping", parent, body)

    # ---------------------------------------------------------------- pull

    async def test_pull(self, parent: Results, td_name: str, repo: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            td = r.data[td_name]
            errs: list[Optional[CErr]] = []
            for tag, dig in r.shuffled(list(td.tags.items())):
                if (err := await r.test_pull_manifest_tag(res, td_name, repo, tag, dig, *td.pull_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to pull manifest by tag {tag}", causes=[err]))
            for i, dig in enumerate(td.man_order):
                if (err := await r.test_pull_manifest_digest(res, td_name, repo, dig, *td.pull_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to pull manifest {i}, digest {dig}", causes=[err]))
            for dig in r.shuffled(list(td.blobs)):
                if (err := await r.test_pull_blob(res, td_name, repo, dig, *td.pull_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to pull blob {dig}", causes=[err]))
            return join(errs)

        return await self.child_run("pull", parent, body)

    async def test_pull_blob(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        if get_flags(opts).get("SkipPullTest"):
            return None

        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.BLOB_GET_FULL)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_GET_FULL)
                return mark(SKIP, err)
            o = [*opts, save_output(res.output)]
            if r.config.blobs_digest_header:
                o.append(with_flag("RequireDigestHeader"))
            if (err := await r.api.blob_get_exists_full(r.reg, repo, dig, r.data[td_name], *o)) is not None:
                r.test_fail(res, err, td_name, API_.BLOB_GET_FULL)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.BLOB_GET_FULL)
            return None

        return await self.child_run("blob-get", parent, body)

    async def test_pull_manifest_digest(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        return await self._manifest_read(parent, "manifest-by-digest", API_.MANIFEST_GET_DIGEST, td_name, repo, dig, dig, opts, False)

    async def test_pull_manifest_tag(self, parent: Results, td_name: str, repo: str, tag: str, dig: str, *opts: Opt) -> Optional[CErr]:
        return await self._manifest_read(parent, "manifest-by-tag", API_.MANIFEST_GET_TAG, td_name, repo, tag, dig, opts, False)

    # ---------------------------------------------------------------- push

    async def test_push(self, parent: Results, td_name: str, repo: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            td = r.data[td_name]
            errs: list[Optional[CErr]] = []
            for dig in r.shuffled(list(td.blobs)):
                if (err := await r.test_push_blob_any(res, td_name, repo, dig, *td.push_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to push blob {dig}", causes=[err]))
            for i, dig in enumerate(td.man_order):
                if (err := await r.test_push_manifest_digest(res, td_name, repo, dig, *td.push_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to push manifest {i}, digest {dig}", causes=[err]))
            for tag, dig in r.shuffled(list(td.tags.items())):
                if (err := await r.test_push_manifest_tag(res, td_name, repo, tag, dig, *td.push_opts.get(dig, []))) is not None:
                    errs.append(CErr(f"failed to push manifest tag {tag}", causes=[err]))
            return join(errs)

        return await self.child_run("push", parent, body)

    async def test_push_blob_any(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        if (err := self.api_require(API_.BLOB_PUSH)) is not None:
            return mark(SKIP, err)
        algo = dig.split(":", 1)[0]
        by_algo = self.blob_apis_tested_by_algo.setdefault(algo, set())
        apis: list[API_] = []
        for a in BLOB_APIS:  # first try untested APIs
            if a not in self.blob_apis_tested:
                apis.append(a)
        for a in BLOB_APIS:  # then untested with a given algorithm
            if a not in by_algo and a not in apis:
                apis.append(a)
        for a in BLOB_APIS:  # next use APIs that are known successful
            if self.api_status[a] == Status.PASS and a not in apis:
                apis.append(a)
        for a in BLOB_APIS:  # lastly use APIs in preferred order
            if a not in apis:
                apis.append(a)
        errs: list[Optional[CErr]] = []
        for a in apis:
            if a == API_.BLOB_POST_PUT:
                err = await self.test_push_blob_post_put(parent, td_name, repo, dig, *opts)
            elif a == API_.BLOB_POST_ONLY:
                err = await self.test_push_blob_post_only(parent, td_name, repo, dig, *opts)
            elif a == API_.BLOB_PATCH_STREAM:
                err = await self.test_push_blob_patch_stream(parent, td_name, repo, dig, *opts)
            else:
                err = await self.test_push_blob_patch_chunked(parent, td_name, repo, dig, *opts)
            self.blob_apis_tested.add(a)
            by_algo.add(a)
            if err is None:
                return None
            errs.append(err)
        return join(errs)

    async def test_push_blob_mount(self, parent: Results, td_name: str, repo: str, repo2: str, dig: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.BLOB_MOUNT_SOURCE)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_MOUNT_SOURCE)
                return mark(SKIP, err)
            if (err := await r.api.blob_mount(r.reg, repo, repo2, dig, r.data[td_name], save_output(res.output))) is not None:
                r.test_fail(res, err, td_name, API_.BLOB_MOUNT_SOURCE)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.BLOB_MOUNT_SOURCE)
            return None

        return await self.child_run("blob-mount", parent, body)

    async def test_push_blob_mount_anonymous(self, parent: Results, td_name: str, repo: str, dig: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.BLOB_MOUNT_ANONYMOUS)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_MOUNT_ANONYMOUS)
                return mark(SKIP, err)
            if (err := await r.api.blob_mount(r.reg, repo, "", dig, r.data[td_name], save_output(res.output))) is not None:
                r.test_fail(res, err, td_name, API_.BLOB_MOUNT_ANONYMOUS)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.BLOB_MOUNT_ANONYMOUS)
            return None

        return await self.child_run("blob-mount-anonymous", parent, body)

    async def test_push_blob_mount_missing(self, parent: Results, td_name: str, repo: str, repo2: str, dig: str) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.BLOB_MOUNT_SOURCE)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_MOUNT_SOURCE)
                return mark(SKIP, err)
            err = await r.api.blob_mount(r.reg, repo, repo2, dig, r.data[td_name], save_output(res.output))
            if err is None or not err.is_(UNSUPPORTED):
                if err is None:
                    err = errorf("blob mount of missing blob incorrectly succeeded")
                r.test_fail(res, err, td_name, API_.BLOB_MOUNT_SOURCE)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.BLOB_MOUNT_SOURCE)
            return None

        return await self.child_run("blob-mount", parent, body)

    async def test_push_blob_post_cancel(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.BLOB_PUSH, API_.BLOB_CANCEL)) is not None:
                r.test_skip(res, err, td_name, API_.BLOB_PUSH, API_.BLOB_CANCEL)
                return mark(SKIP, err)
            if (err := await r.api.blob_post_cancel(r.reg, repo, dig, r.data[td_name], *opts, save_output(res.output))) is not None:
                r.test_fail(res, err, td_name, API_.BLOB_PUSH, API_.BLOB_CANCEL)
                return mark(FAIL, err)
            r.test_pass(res, td_name, API_.BLOB_PUSH, API_.BLOB_CANCEL)
            return None

        return await self.child_run("blob-post-cancel", parent, body)

    async def _push_blob(self, parent: Results, name: str, api: API_, fn: Callable, td_name: str, repo: str, dig: str, opts: tuple) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(api)) is not None:
                r.test_skip(res, err, td_name, api)
                return mark(SKIP, err)
            o = [*opts, save_output(res.output)]
            if r.config.blobs_digest_header:
                o.append(with_flag("RequireDigestHeader"))
            if (err := await fn(r.reg, repo, dig, r.data[td_name], *o)) is not None:
                r.test_fail(res, err, td_name, api)
                return mark(FAIL, err)
            r.test_pass(res, td_name, api, API_.BLOB_PUSH)
            return None

        return await self.child_run(name, parent, body)

    async def test_push_blob_post_put(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        return await self._push_blob(parent, "blob-post-put", API_.BLOB_POST_PUT, self.api.blob_post_put, td_name, repo, dig, opts)

    async def test_push_blob_post_only(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        return await self._push_blob(parent, "blob-post-only", API_.BLOB_POST_ONLY, self.api.blob_post_only, td_name, repo, dig, opts)

    async def test_push_blob_patch_chunked(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        return await self._push_blob(parent, "blob-patch-chunked", API_.BLOB_PATCH_CHUNKED, self.api.blob_patch_chunked, td_name, repo, dig, opts)

    async def test_push_blob_patch_stream(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        return await self._push_blob(parent, "blob-patch-stream", API_.BLOB_PATCH_STREAM, self.api.blob_patch_stream, td_name, repo, dig, opts)

    async def test_push_manifest_digest(self, parent: Results, td_name: str, repo: str, dig: str, *opts: Opt) -> Optional[CErr]:
        async def body(r: Runner, res: Results) -> Optional[CErr]:
            td = r.data[td_name]
            apis = [API_.MANIFEST_PUT_DIGEST]
            resp = Ref()
            put_opts: list[Opt] = [return_response(resp)]
            if detect_subject(td.manifests[dig]) is not None:
                apis.append(API_.MANIFEST_PUT_SUBJECT)
            flags = get_flags(opts)
            expect_tags: list[str] = []
            if flags.get("TagParam"):
                apis.append(API_.MANIFEST_PUT_TAG_PARAM)
                for tag, d in r.shuffled(list(td.tags.items())):
                    if d == dig:
                        put_opts.append(with_url_param("tag", tag))
                        expect_tags.append(tag)
            for a in apis:
                if (err := r.api_require(a)) is not None:
                    r.data_status[td_name] = r.data_status[td_name].set(Status.SKIP)
                    r.test_skip(res, err, td_name, a)
                    return mark(SKIP, err)
            o = [*opts, save_output(res.output)]
            if r.config.manifests_digest_header:
                o.append(with_flag("RequireDigestHeader"))
            if (err := await r.api.manifest_put(r.reg, repo, dig, dig, td, r.config.referrer, put_opts, *o)) is not None:
                r.test_fail(res, err, td_name, *apis)
                return mark(FAIL, err)
            if expect_tags:
                terrs: list[CErr] = []
                headers = resp.v.headers if resp.v is not None else []
                vals = [v for k, v in headers if k.lower() == "oci-tag"]
                for tag in expect_tags:
                    if any(tag == s.strip() for v in vals for s in v.split(",")):
                        td.tag_pushed[tag] = True
                    else:
                        terrs.append(errorf(f"header missing OCI-Tag: {tag}", UNSUPPORTED))
                if terrs:
                    r.test_fail(res, join(terrs), td_name, API_.MANIFEST_PUT_TAG_PARAM)
                    return mark(FAIL, join(terrs))
            r.test_pass(res, td_name, *apis)
            return None

        return await self.child_run("manifest-by-digest", parent, body)

    async def test_push_manifest_tag(self, parent: Results, td_name: str, repo: str, tag: str, dig: str, *opts: Opt) -> Optional[CErr]:
        td = self.data[td_name]
        if td.tag_pushed.get(tag):
            return None  # tag already pushed (likely as a tag parameter in the digest push)
        apis: list[API_] = []
        if detect_subject(td.manifests[dig]) is not None:
            apis.append(API_.MANIFEST_PUT_SUBJECT)

        async def body(r: Runner, res: Results) -> Optional[CErr]:
            if (err := r.api_require(API_.MANIFEST_PUT_TAG)) is not None:
                r.data_status[td_name] = r.data_status[td_name].set(Status.SKIP)
                r.test_skip(res, err, td_name, API_.MANIFEST_PUT_TAG)
                return mark(SKIP, err)
            apis.append(API_.MANIFEST_PUT_TAG)
            o = [*opts, save_output(res.output)]
            if r.config.manifests_digest_header:
                o.append(with_flag("RequireDigestHeader"))
            if (err := await r.api.manifest_put(r.reg, repo, tag, dig, td, r.config.referrer, None, *o)) is not None:
                r.test_fail(res, err, td_name, *apis)
                return mark(FAIL, err)
            td.tag_pushed[tag] = True
            r.test_pass(res, td_name, *apis)
            return None

        return await self.child_run("manifest-by-tag", parent, body)

    # ---------------------------------------------------------------- referrers

    async def test_referrers(self, parent: Results, td_name: str, repo: str) -> Optional[CErr]:
        if not self.data[td_name].referrers:
            return None

        def match(resp_d: dict[str, Any], goal: Descriptor) -> bool:
            return (
                resp_d["digest"] == goal.digest
                and resp_d["mediaType"] == goal.media_type
                and resp_d["size"] == goal.size
                and resp_d["artifactType"] == goal.artifact_type
                and map_contains_all(resp_d["annotations"], goal.annotations)
            )

        async def body(r: Runner, res: Results) -> Optional[CErr]:
            errs: list[CErr] = []
            for subj, goals in r.shuffled(list(r.data[td_name].referrers.items())):
                if (err := r.api_require(API_.REFERRERS)) is not None:
                    r.data_status[td_name] = r.data_status[td_name].set(Status.SKIP)
                    r.test_skip(res, err, td_name, API_.REFERRERS)
                    return mark(SKIP, err)
                rl, err = await r.api.referrers_list(r.reg, repo, subj, save_output(res.output))
                if err is not None:
                    errs.append(err)
                else:
                    for goal in goals:
                        if not any(match(d, goal) for d in rl["manifests"]):
                            errs.append(errorf(f"entry missing from referrers list, subject {subj}, referrer {goal}", FAIL))
                ats = list(dict.fromkeys(g.artifact_type for g in goals))
                for at in r.shuffled(ats):
                    filters = Ref("")
                    rl, err = await r.api.referrers_list(
                        r.reg, repo, subj, save_output(res.output), with_url_param("artifactType", at), return_header("OCI-Filters-Applied", filters)
                    )
                    if err is not None:
                        errs.append(err)
                        continue
                    applied = any(f.strip() == "artifactType" for f in filters.v.split(","))
                    if not applied:
                        errs.append(errorf("registry does not set the expected OCI-Filters-Applied header for the artifactType", UNSUPPORTED))
                    for goal in goals:
                        if (not applied or goal.artifact_type == at) and not any(match(d, goal) for d in rl["manifests"]):
                            errs.append(errorf(f"entry missing from referrers list, subject {subj}, referrer {goal}", FAIL))
                    if applied:
                        # verify no other entries are returned
                        for d in rl["manifests"]:
                            if d["artifactType"] != at:
                                errs.append(errorf(f"referrers filter for artifactType {at} included descriptor {d}", ERROR))
            if errs:
                r.test_fail(res, join(errs), td_name, API_.REFERRERS)
                return mark(FAIL, join(errs))
            r.test_pass(res, td_name, API_.REFERRERS)
            return None

        return await self.child_run("referrers", parent, body)

    # ---------------------------------------------------------------- bookkeeping

    async def child_run(self, name: str, parent: Results, fn: RunFn) -> Optional[CErr]:
        res = Results(name, parent)
        parent.children.append(res)
        try:
            err = await fn(self, res)
        except Exception:  # a bug in the port: report it as an engine error, keep going
            err = errorf("internal error in the conformance port:\n" + traceback.format_exc())
        res.stop = time.time()
        if err is not None and not err.is_(FAIL) and not err.is_(SKIP) and not err.is_(DISABLED):
            res.errs.append(err)
            res.status = res.status.set(Status.ERROR)
            res.counts[Status.ERROR] += 1
        for i in range(6):
            parent.counts[i] += res.counts[i]
        parent.status = parent.status.set(res.status)
        return err

    def _track(self, s: Status, td_name: str, apis: tuple[API_, ...]) -> None:
        if td_name != "":
            self.data_status[td_name] = self.data_status.get(td_name, Status.UNKNOWN).set(s)
        for a in apis:
            self.api_status[a] = self.api_status[a].set(s)

    def test_skip(self, res: Results, err: CErr, td_name: str, *apis: API_) -> None:
        s = Status.SKIP
        if err.is_(ERROR):
            s = Status.ERROR
        elif err.is_(FAIL):
            s = Status.FAIL
        elif err.is_(DISABLED):
            s = Status.DISABLED
        res.status = res.status.set(s)
        res.counts[s] += 1
        self._track(s, td_name, apis)
        res.output.append(f"{res.name}: skipping test:\n  " + str(err).replace("\n", "\n  ") + "\n")

    def test_fail(self, res: Results, err: CErr, td_name: str, *apis: API_) -> None:
        s = Status.FAIL
        if err.is_(ERROR):
            s = Status.ERROR
        elif err.is_(DISABLED):
            s = Status.DISABLED
        elif err.is_(UNSUPPORTED):
            s = Status.SKIP
        res.status = res.status.set(s)
        res.counts[s] += 1
        res.errs.append(err)
        self._track(s, td_name, apis)

    def test_pass(self, res: Results, td_name: str, *apis: API_) -> None:
        res.status = res.status.set(Status.PASS)
        res.counts[Status.PASS] += 1
        self._track(Status.PASS, td_name, apis)

    def api_require(self, *apis: API_) -> Optional[CErr]:
        c = self.config
        errs: list[CErr] = []
        for a in apis:
            disabled = False
            if a == API_.PING:
                disabled = not c.ping
            elif a == API_.TAG_LIST:
                disabled = not c.tags_list
            elif a in (API_.MANIFEST_HEAD_TAG, API_.MANIFEST_HEAD_DIGEST, API_.MANIFEST_GET_TAG, API_.MANIFEST_GET_DIGEST, API_.BLOB_HEAD, API_.BLOB_GET_FULL, API_.BLOB_GET_RANGE):
                disabled = not c.pull
            elif a in (API_.MANIFEST_PUT_TAG, API_.MANIFEST_PUT_DIGEST, API_.MANIFEST_PUT_SUBJECT, API_.BLOB_PUSH, API_.BLOB_POST_ONLY, API_.BLOB_POST_PUT, API_.BLOB_PATCH_CHUNKED, API_.BLOB_PATCH_STREAM, API_.BLOB_MOUNT_SOURCE):
                disabled = not c.push
            elif a == API_.MANIFEST_PUT_TAG_PARAM:
                disabled = not c.push or not c.manifests_tag_param
            elif a == API_.BLOB_CANCEL:
                disabled = not c.blobs_upload_cancel
            elif a == API_.BLOB_MOUNT_ANONYMOUS:
                disabled = not c.push or not c.blobs_mount_anonymous
            elif a == API_.TAG_DELETE:
                disabled = not c.tags_delete
            elif a == API_.TAG_DELETE_ATOMIC:
                disabled = not c.tags_delete or not c.tags_atomic
            elif a == API_.MANIFEST_DELETE:
                disabled = not c.manifests_delete
            elif a == API_.MANIFEST_DELETE_ATOMIC:
                disabled = not c.manifests_atomic
            elif a == API_.BLOB_DELETE:
                disabled = not c.blobs_delete
            elif a == API_.BLOB_DELETE_ATOMIC:
                disabled = not c.blobs_atomic
            elif a == API_.REFERRERS:
                disabled = not c.referrer
            else:
                return errorf(f"APIRequire check is missing for state {a}", ERROR)
            if disabled:
                errs.append(errorf(f"api {a} is disabled in the configuration", DISABLED))
        return join(errs)

    # ---------------------------------------------------------------- report

    def totals(self) -> dict[str, int]:
        c = self.results.counts
        return {
            "Disabled": c[Status.DISABLED],
            "Skip": c[Status.SKIP],
            "Pass": c[Status.PASS],
            "FAIL": c[Status.FAIL],
            "Error": c[Status.ERROR],
            "Total": sum(c[1:]),
        }

    def overall(self) -> Status:
        return self.results.status

    def report(self, show_skips: bool = True, max_output: int = 6000) -> str:
        """Like ``runner.Report``: result, counts, API and data conformance,
        then each failing (and, optionally, skipped) leaf with its errors and
        HTTP transcript."""
        lines = [f"OCI Conformance Result: {self.results.status}  (seed {self.seed}, spec {self.config.version})"]
        for k, v in self.totals().items():
            lines.append(f"  {k:.<30}: {v:10d}")
        lines.append("API conformance:")
        for a in API_:
            lines.append(f"  {str(a):.<30}: {str(self.api_status[a]):>10}")
        lines.append("Data conformance:")
        for name in sorted(self.data):
            lines.append(f"  {self.data[name].name:.<30}: {str(self.data_status.get(name, Status.UNKNOWN)):>10}")
        for res in self.results.walk():
            if res.children:
                continue
            if res.status >= Status.FAIL or (show_skips and res.status == Status.SKIP):
                lines.append("")
                lines.append(f"[{res.status}] {res.name}")
                for e in res.errs:
                    lines.append("  - " + str(e).replace("\n", "\n    "))
                if res.status >= Status.FAIL:
                    out = "".join(res.output)
                    if len(out) > max_output:
                        out = "[...]\n" + out[-max_output:]
                    lines.append(out)
        return "\n".join(lines)
