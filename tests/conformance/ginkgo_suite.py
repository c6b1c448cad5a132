"""Port of the OCI distribution-spec conformance suite of the v1.1.x releases
(the Ginkgo suite: ``setup.go``, ``image.go``, ``00_conformance_suite_test.go``,
``01_pull_test.go``, ``02_push_test.go``, ``03_discovery_test.go``,
``04_management_test.go``; ``reporter.go`` only shapes the HTML report).

Every ``g.Specify`` becomes one spec, registered in the same order, with the
same title, the same requests and the same ``Expect``\\ s.  As in Ginkgo, a
failing ``Expect`` ends its spec and the following specs still run, on
whatever state the registry is left in.  The whole suite is a single
``g.Describe`` so Ginkgo keeps the written order.

HTTP details that a registry sees (all from reggie/resty over Go net/http):

* ``SetBody([]byte)`` goes to resty v2, which buffers it, so bodies carry a
  real ``Content-Length``; the ``Content-Length`` the tests set by hand is
  dropped by Go (it only ever equals the body length anyway, except on the
  body-less "PUT request to session URL with digest", which therefore sends
  ``Content-Length: 0``).  Requests without a body (POST, PUT, PATCH,
  DELETE) carry ``Content-Length: 0``; a GET given a body (the "400 response
  body" spec) is sent without it (resty drops GET payloads).
* reggie's transport sets ``DisableCompression``: no ``Accept-Encoding``.
* resty copies a JSON-ish ``Content-Type`` (``...+json``) into ``Accept``
  when no ``Accept`` is set.
* ``SetQueryParam`` values are appended to whatever query the ``Location``
  already had, ``&``-joined, keys sorted, values escaped (``sha256%3A...``).
* ``GetRelativeLocation`` keeps only the path and query of ``Location``; the
  request goes to the configured root URL with that path.
* User-Agent ``distribution-spec-conformance-tests``.
"""

from __future__ import annotations

import base64
import json
import random
import re
import uuid
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import quote, unquote, urlencode, urlsplit

import attr

from .client import GoHTTPClient, HTTPResponse, RequestError
from .gojson import b64, digest_of, go_json

# --- setup.go constants ------------------------------------------------------

PULL = 1 << 0
PUSH = 1 << 1
CONTENT_DISCOVERY = 1 << 2
CONTENT_MANAGEMENT = 1 << 3
NUM_WORKFLOWS = 1 << 4  # iota continues the shift: numWorkflows == 16, not 4

ENV_ROOT_URL = "OCI_ROOT_URL"
ENV_NAMESPACE = "OCI_NAMESPACE"
ENV_PULL = "OCI_TEST_PULL"
ENV_PUSH = "OCI_TEST_PUSH"
ENV_CONTENT_DISCOVERY = "OCI_TEST_CONTENT_DISCOVERY"
ENV_CONTENT_MANAGEMENT = "OCI_TEST_CONTENT_MANAGEMENT"
ENV_PUSH_EMPTY_LAYER = "OCI_SKIP_EMPTY_LAYER_PUSH_TEST"  # read by nothing but the report
ENV_BLOB_DIGEST = "OCI_BLOB_DIGEST"
ENV_MANIFEST_DIGEST = "OCI_MANIFEST_DIGEST"
ENV_TAG_NAME = "OCI_TAG_NAME"
ENV_TAG_LIST = "OCI_TAG_LIST"
ENV_HIDE_SKIPPED_WORKFLOWS = "OCI_HIDE_SKIPPED_WORKFLOWS"
ENV_DELETE_MANIFEST_BEFORE_BLOBS = "OCI_DELETE_MANIFEST_BEFORE_BLOBS"
ENV_CROSSMOUNT_NAMESPACE = "OCI_CROSSMOUNT_NAMESPACE"
ENV_AUTOMATIC_CROSSMOUNT = "OCI_AUTOMATIC_CROSSMOUNT"

EMPTY_LAYER_TEST_TAG = "emptylayer"
TEST_TAG_NAME = "tagtest0"

TITLE_PULL = "Pull"
TITLE_PUSH = "Push"
TITLE_CONTENT_DISCOVERY = "Content Discovery"
TITLE_CONTENT_MANAGEMENT = "Content Management"
SUITE_DESCRIPTION = "OCI Distribution Conformance Tests"

LAYER_BASE64 = (
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA"
)
ARTIFACT_TYPE_FILTER = "artifactType"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
MT_OCTET = "application/octet-stream"

ERROR_CODES = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
]
UNSUPPORTED = "UNSUPPORTED"

USER_AGENT = "distribution-spec-conformance-tests"


def parse_bool(value: str | None) -> tuple[bool, bool]:
    """Go's ``strconv.ParseBool``: (value, ok)."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True, True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False, True
    return False, False


@attr.s(auto_attribs=True)
class Settings:
    """What ``setup.go``'s ``init()`` reads from the environment."""

    namespace: str
    crossmount_namespace: str
    tests_to_run: int
    delete_manifest_before_blobs: bool = True
    run_automatic_crossmount_test: bool = False
    automatic_crossmount_enabled: bool = False
    hide_skipped_workflows: bool = False
    blob_digest: str = ""
    manifest_digest: str = ""
    tag_name: str = ""
    tag_list: str = ""
    seed: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], seed: int | None = None) -> "Settings":
        tests_to_run = 0
        for var, bit in (
            (ENV_PULL, PULL),
            (ENV_PUSH, PUSH),
            (ENV_CONTENT_DISCOVERY, CONTENT_DISCOVERY),
            (ENV_CONTENT_MANAGEMENT, CONTENT_MANAGEMENT),
        ):
            if parse_bool(env.get(var))[0]:
                tests_to_run |= bit
        crossmount = env.get(ENV_CROSSMOUNT_NAMESPACE, "")
        if not crossmount:
            crossmount = f"conformance-{uuid.uuid4()}"
        delete_first = True
        if ENV_DELETE_MANIFEST_BEFORE_BLOBS in env:
            delete_first = parse_bool(env[ENV_DELETE_MANIFEST_BEFORE_BLOBS])[0]
        run_auto = ENV_AUTOMATIC_CROSSMOUNT in env
        auto_enabled = parse_bool(env.get(ENV_AUTOMATIC_CROSSMOUNT, ""))[0]
        return cls(
            namespace=env.get(ENV_NAMESPACE, ""),
            crossmount_namespace=crossmount,
            tests_to_run=tests_to_run,
            delete_manifest_before_blobs=delete_first,
            run_automatic_crossmount_test=run_auto,
            automatic_crossmount_enabled=auto_enabled,
            hide_skipped_workflows=env.get(ENV_HIDE_SKIPPED_WORKFLOWS) == "1",
            blob_digest=env.get(ENV_BLOB_DIGEST, ""),
            manifest_digest=env.get(ENV_MANIFEST_DIGEST, ""),
            tag_name=env.get(ENV_TAG_NAME, ""),
            tag_list=env.get(ENV_TAG_LIST, ""),
            seed=random.randrange(1, 2**31) if seed is None else seed,
        )

    @property
    def run_pull_setup(self) -> bool:
        return not (self.tag_name and self.manifest_digest and self.blob_digest)

    @property
    def run_push_setup(self) -> bool:
        return True

    @property
    def run_content_discovery_setup(self) -> bool:
        return not self.tag_list

    @property
    def run_content_management_setup(self) -> bool:
        return True


# --- image.go ----------------------------------------------------------------


def descriptor(
    media_type: str,
    digest: str,
    size: int,
    *,
    urls: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    data: bytes | None = None,
    platform: dict[str, Any] | None = None,
    artifact_type: str = "",
    new_unspecified_field: bytes | None = None,
) -> dict[str, Any]:
    """The suite's own ``descriptor`` type: note ``newUnspecifiedField`` has no
    ``omitempty``, so every descriptor carries it (``null`` when unset)."""
    d: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if urls:
        d["urls"] = urls
    if annotations:
        d["annotations"] = {k: annotations[k] for k in sorted(annotations)}
    if data:
        d["data"] = b64(data)
    if platform is not None:
        d["platform"] = platform
    if artifact_type:
        d["artifactType"] = artifact_type
    d["newUnspecifiedField"] = None if new_unspecified_field is None else b64(new_unspecified_field)
    return d


def manifest_doc(
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    *,
    media_type: str = "",
    artifact_type: str = "",
    subject: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    m: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        m["mediaType"] = media_type
    if artifact_type:
        m["artifactType"] = artifact_type
    m["config"] = config
    m["layers"] = layers
    if subject is not None:
        m["subject"] = subject
    if annotations:
        m["annotations"] = {k: annotations[k] for k in sorted(annotations)}
    return m


def index_doc(
    manifests: list[dict[str, Any]],
    *,
    media_type: str = "",
    artifact_type: str = "",
    subject: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    m: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        m["mediaType"] = media_type
    if artifact_type:
        m["artifactType"] = artifact_type
    m["manifests"] = manifests
    if subject is not None:
        m["subject"] = subject
    if annotations:
        m["annotations"] = {k: annotations[k] for k in sorted(annotations)}
    return m


# --- setup.go data -------------------------------------------------------------


@attr.s(auto_attribs=True)
class TestBlob:
    content: bytes
    content_length: str
    digest: str


def random_string(n: int) -> str:
    letters = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
    rng = random.SystemRandom()
    return "".join(rng.choice(letters) for _ in range(n))


def random_blob(size: int, seed: int) -> tuple[str, bytes]:
    """Reproducible random bytes (Go uses math/rand seeded with the Ginkgo seed)."""
    b = random.Random(seed).randbytes(size)
    return digest_of(b), b


class SetupData:
    """Everything ``setup.go``'s ``init()`` computes."""

    def __init__(self, settings: Settings) -> None:
        self.seed = settings.seed
        self.configs: list[TestBlob] = []
        for _ in range(NUM_WORKFLOWS):
            config = {
                "author": random_string(16),
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
            }
            content = go_json(config, indent=True)
            dig = settings.blob_digest or digest_of(content)
            self.configs.append(TestBlob(content, str(len(content)), dig))

        self.layer_blob_data = base64.b64decode(LAYER_BASE64)
        self.layer_blob_digest = digest_of(self.layer_blob_data)
        self.layer_blob_content_length = str(len(self.layer_blob_data))
        layers = [descriptor(MT_LAYER_GZ, self.layer_blob_digest, len(self.layer_blob_data))]

        self.manifests: list[TestBlob] = []
        for i in range(NUM_WORKFLOWS):
            m = manifest_doc(
                descriptor(
                    MT_CONFIG,
                    self.configs[i].digest,
                    len(self.configs[i].content),
                    data=self.configs[i].content,
                    new_unspecified_field=b"hello world",
                ),
                layers,
                media_type=MT_MANIFEST,
            )
            content = go_json(m, indent=True)
            dig = settings.manifest_digest or digest_of(content)
            self.manifests.append(TestBlob(content, str(len(content)), dig))

        # used in push test: no mediaType field, no layers
        empty_layer_manifest = manifest_doc(
            descriptor(
                MT_CONFIG,
                self.configs[1].digest,
                len(self.configs[1].content),
                data=self.configs[1].content,
                new_unspecified_field=b"hello world",
            ),
            [],
        )
        self.empty_layer_manifest_content = go_json(empty_layer_manifest, indent=True)
        self.empty_layer_manifest_digest = digest_of(self.empty_layer_manifest_content)

        self.nonexistent_manifest = ".INVALID_MANIFEST_NAME"
        self.invalid_manifest_content = b"blablabla"

        self.test_blob_a_digest, self.test_blob_a = random_blob(42, self.seed + 1)
        self.test_blob_a_length = str(len(self.test_blob_a))

        self.setup_chunked_blob(42)

        # referrers test data
        self.empty_json_blob = b"{}"
        self.empty_json_descriptor = descriptor(MT_EMPTY, digest_of(self.empty_json_blob), len(self.empty_json_blob))

        self.test_ref_blob_a = b"NHL Peanut Butter on my NHL bagel"
        self.test_ref_blob_a_length = str(len(self.test_ref_blob_a))
        self.test_ref_blob_a_digest = digest_of(self.test_ref_blob_a)
        self.test_ref_artifact_type_a = "application/vnd.nhl.peanut.butter.bagel"

        self.test_ref_blob_b = b"NBA Strawberry Jam on my NBA croissant"
        self.test_ref_blob_b_length = str(len(self.test_ref_blob_b))
        self.test_ref_blob_b_digest = digest_of(self.test_ref_blob_b)
        self.test_ref_artifact_type_b = "application/vnd.nba.strawberry.jam.croissant"

        self.test_annotation_key = "org.opencontainers.conformance.test"
        self.test_annotation_values: dict[str, str] = {}

        m4 = self.manifests[4].content
        m3 = self.manifests[3].content
        subject4 = descriptor(MT_MANIFEST, digest_of(m4), len(m4))
        subject3 = descriptor(MT_MANIFEST, digest_of(m3), len(m3))

        def ref_manifest(doc: dict[str, Any]) -> tuple[bytes, str]:
            content = go_json(doc, indent=True)
            dig = digest_of(content)
            if doc.get("annotations"):
                self.test_annotation_values[dig] = doc["annotations"][self.test_annotation_key]
            return content, dig

        # artifact with Subject ref using config.MediaType = artifactType
        self.refs_manifest_a_config_artifact_content, self.refs_manifest_a_config_artifact_digest = ref_manifest(
            manifest_doc(
                descriptor(self.test_ref_artifact_type_a, self.test_ref_blob_a_digest, len(self.test_ref_blob_a)),
                [self.empty_json_descriptor],
                media_type=MT_MANIFEST,
                subject=subject4,
                annotations={self.test_annotation_key: "test config a"},
            )
        )
        self.refs_manifest_b_config_artifact_content, self.refs_manifest_b_config_artifact_digest = ref_manifest(
            manifest_doc(
                descriptor(self.test_ref_artifact_type_b, self.test_ref_blob_b_digest, len(self.test_ref_blob_b)),
                [self.empty_json_descriptor],
                media_type=MT_MANIFEST,
                subject=subject4,
                annotations={self.test_annotation_key: "test config b"},
            )
        )
        # artifact with Subject ref using ArtifactType, config.MediaType = emptyJSON
        self.refs_manifest_a_layer_artifact_content, self.refs_manifest_a_layer_artifact_digest = ref_manifest(
            manifest_doc(
                self.empty_json_descriptor,
                [descriptor(self.test_ref_artifact_type_a, self.test_ref_blob_a_digest, len(self.test_ref_blob_a))],
                media_type=MT_MANIFEST,
                artifact_type=self.test_ref_artifact_type_a,
                subject=subject4,
                annotations={self.test_annotation_key: "test layer a"},
            )
        )
        self.refs_manifest_b_layer_artifact_content, self.refs_manifest_b_layer_artifact_digest = ref_manifest(
            manifest_doc(
                self.empty_json_descriptor,
                [descriptor(self.test_ref_artifact_type_b, self.test_ref_blob_b_digest, len(self.test_ref_blob_b))],
                media_type=MT_MANIFEST,
                artifact_type=self.test_ref_artifact_type_b,
                subject=subject4,
                annotations={self.test_annotation_key: "test layer b"},
            )
        )
        # same as B but based on a subject (manifests[3]) that has not been pushed; no annotations
        self.refs_manifest_c_layer_artifact_content, self.refs_manifest_c_layer_artifact_digest = ref_manifest(
            manifest_doc(
                self.empty_json_descriptor,
                [descriptor(self.test_ref_artifact_type_b, self.test_ref_blob_b_digest, len(self.test_ref_blob_b))],
                media_type=MT_MANIFEST,
                artifact_type=self.test_ref_artifact_type_b,
                subject=subject3,
            )
        )

        self.test_ref_artifact_type_index = "application/vnd.food.stand"
        a_cfg = self.refs_manifest_a_config_artifact_content
        a_lay = self.refs_manifest_a_layer_artifact_content
        self.refs_index_artifact_content, self.refs_index_artifact_digest = ref_manifest(
            index_doc(
                [
                    descriptor(MT_MANIFEST, digest_of(a_cfg), len(a_cfg)),
                    descriptor(MT_MANIFEST, digest_of(a_lay), len(a_lay)),
                ],
                media_type=MT_INDEX,
                artifact_type=self.test_ref_artifact_type_index,
                subject=subject4,
                annotations={self.test_annotation_key: "test index"},
            )
        )

        self.dummy_digest = digest_of(b"hello world")

    def setup_chunked_blob(self, size: int) -> None:
        self.test_blob_b_digest, self.test_blob_b = random_blob(size, self.seed + 2)
        half = size // 2 + 1
        self.test_blob_b_chunk1 = self.test_blob_b[:half]
        self.test_blob_b_chunk1_length = str(len(self.test_blob_b_chunk1))
        self.test_blob_b_chunk1_range = f"0-{len(self.test_blob_b_chunk1) - 1}"
        self.test_blob_b_chunk2 = self.test_blob_b[half:]
        self.test_blob_b_chunk2_length = str(len(self.test_blob_b_chunk2))
        self.test_blob_b_chunk2_range = f"{len(self.test_blob_b_chunk1)}-{len(self.test_blob_b) - 1}"


# --- spec machinery ------------------------------------------------------------


class SpecSkipped(Exception):
    """``g.Skip``."""


class SpecFailed(AssertionError):
    """A failed ``Expect``."""


@attr.s(auto_attribs=True)
class SpecResult:
    workflow: str
    container: str
    title: str
    state: str  # "passed" | "failed" | "skipped"
    failure: str = ""
    output: str = ""

    @property
    def path(self) -> str:
        return f"{self.workflow} / {self.container} / {self.title}"


class _Spec:
    """Per-spec context: the transcript of its HTTP exchanges."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.last: HTTPResponse | None = None


SpecFn = Callable[[_Spec], Awaitable[None]]


def _is_2xx(status: int) -> bool:
    return 200 <= status < 300


class Resp:
    """What the specs read from a reggie response."""

    def __init__(self, r: HTTPResponse) -> None:
        self.r = r

    def status_code(self) -> int:
        return self.r.status

    def header(self, name: str) -> str:
        return self.r.get(name)

    def body(self) -> bytes:
        return self.r.body

    def string(self) -> str:
        # resty's String() trims surrounding white space
        return self.r.body.decode("utf-8", "replace").strip()

    def get_relative_location(self) -> str:
        loc = self.r.get("Location")
        try:
            u = urlsplit(loc)
        except ValueError:
            return ""
        path = quote(unquote(u.path), safe="/$&+,:;=@-._~!'()*")
        if u.query:
            path += "?" + u.query
        return path

    def get_absolute_location(self) -> str:
        return self.r.get("Location")

    def errors(self) -> list[dict[str, Any]]:
        """reggie ``Response.Errors()``; raises ValueError where it returns an error."""
        doc = json.loads(self.string())
        if not isinstance(doc, dict):
            raise ValueError("json: cannot unmarshal into ErrorResponse")
        errs = doc.get("errors")
        if errs is None:
            errs = []
        if not isinstance(errs, list):
            raise ValueError("json: cannot unmarshal errors")
        for e in errs:
            if not isinstance(e, dict) or not isinstance(e.get("code", ""), str):
                raise ValueError("json: cannot unmarshal error info")
        if not errs:
            raise ValueError("body was valid json but could not be parsed")
        return errs


def get_tag_list(resp: Resp) -> list[str]:
    """``getTagList``: the ``tags`` of a tag list, [] if it does not parse."""
    try:
        doc = json.loads(resp.body())
        tags = unmarshal_tag_list(doc)
    except (ValueError, TypeError):
        return []
    return tags


def unmarshal_tag_list(doc: Any) -> list[str]:
    """``json.Unmarshal`` into ``TagList{Name string; Tags []string}``."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ValueError("json: cannot unmarshal into TagList")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError("json: cannot unmarshal name")
    tags = doc.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("json: cannot unmarshal tags")
    return tags


def unmarshal_index(doc: Any) -> list[dict[str, Any]]:
    """``json.Unmarshal`` into the suite's ``index`` type; returns ``Manifests``."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ValueError("json: cannot unmarshal into index")
    mans = doc.get("manifests")
    if mans is None:
        return []
    if not isinstance(mans, list):
        raise ValueError("json: cannot unmarshal manifests")
    out = []
    for d in mans:
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ValueError("json: cannot unmarshal descriptor")
        if not isinstance(d.get("size", 0), int) or isinstance(d.get("size", 0), bool):
            raise ValueError("json: cannot unmarshal size")
        for key in ("mediaType", "digest", "artifactType"):
            if d.get(key) is not None and not isinstance(d.get(key), str):
                raise ValueError(f"json: cannot unmarshal {key}")
        ann = d.get("annotations")
        if ann is not None and (not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values())):
            raise ValueError("json: cannot unmarshal annotations")
        for key in ("data", "newUnspecifiedField"):
            if d.get(key) is not None:
                if not isinstance(d[key], str):
                    raise ValueError(f"json: cannot unmarshal {key}")
                base64.b64decode(d[key], validate=True)
        out.append(d)
    return out


def expect(ok: bool, message: str) -> None:
    if not ok:
        raise SpecFailed(message)


def expect_status(resp: Resp, allowed: Callable[[int], bool] | set[int] | int, what: str) -> None:
    status = resp.status_code()
    if isinstance(allowed, int):
        good = status == allowed
    elif isinstance(allowed, set):
        good = status in allowed
    else:
        good = allowed(status)
    if not good:
        raise SpecFailed(f"Expected status {what}, got {status} ({resp.r.describe()})")


# --- the suite -----------------------------------------------------------------


class GinkgoSuite:
    """Runs the four workflows in order against ``root_url``."""

    def __init__(self, client: GoHTTPClient, root_url: str, settings: Settings, data: SetupData | None = None) -> None:
        self.client = client
        self.root_url = root_url.rstrip("/")
        self.s = settings
        self.d = data if data is not None else SetupData(settings)
        self.specs: list[tuple[str, str, str, SpecFn]] = []
        self.results: list[SpecResult] = []
        self.warnings: list[str] = []

    # -- helpers mirroring setup.go / reggie --

    def skip_if_disabled(self, test: int) -> None:
        if not (test & self.s.tests_to_run):
            raise SpecSkipped("you have skipped this test; if this is an error, check your environment variable settings")

    @staticmethod
    def run_only_if(v: bool) -> None:
        if not v:
            raise SpecSkipped("you have skipped this test.")

    @staticmethod
    def run_only_if_not(v: bool) -> None:
        if v:
            raise SpecSkipped("you have skipped this test.")

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def path(self, template: str, *, name: str | None = None, ref: str = "", digest: str = "") -> str:
        return (
            template.replace("<name>", name if name is not None else self.s.namespace)
            .replace("<reference>", ref)
            .replace("<digest>", digest)
        )

    async def do(
        self,
        t: _Spec,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> Resp:
        """``client.Do(client.NewRequest(method, path)...)``; a transport error fails the spec
        (``Expect(err).To(BeNil())``)."""
        url = self.root_url + path
        if query:
            params: dict[str, str] = {}
            for k, v in query:
                params[k] = v  # SetQueryParam replaces
            enc = urlencode(sorted(params.items()))
            url += ("&" if "?" in url else "?") + enc
        hdrs: list[tuple[str, str]] = []
        for k, v in headers or []:
            hdrs = [(hk, hv) for hk, hv in hdrs if hk.lower() != k.lower()]  # SetHeader replaces
            hdrs.append((k, v))
        ct = next((v for k, v in hdrs if k.lower() == "content-type"), "")
        if ct and not any(k.lower() == "accept" for k, _ in hdrs):
            if re.search(r"(?i:(application|text)/(json|.*\+json|json-.*)(;|$))", ct) or re.search(
                r"(?i:(application|text)/(xml|.*\+xml)(;|$))", ct
            ):
                hdrs.append(("Accept", ct))
        hdrs.append(("User-Agent", USER_AGENT))
        send_body = body if (body is not None and method not in ("GET", "HEAD", "OPTIONS")) else None
        try:
            r = await self.client.request(method, url, hdrs, send_body, framing="length", out=t.out)
        except RequestError as e:
            raise SpecFailed(f"Expected request error to be nil, got: {e}") from e
        if r.body_error:  # resty reads the whole body: a truncated one is an error
            raise SpecFailed(f"Expected request error to be nil, got: {r.body_error}")
        t.last = r
        return Resp(r)

    def specify(self, workflow: str, container: str, title: str) -> Callable[[SpecFn], SpecFn]:
        def register(fn: SpecFn) -> SpecFn:
            self.specs.append((workflow, container, title, fn))
            return fn

        return register

    # -- running --

    async def run(self) -> list[SpecResult]:
        self.build_pull()
        self.build_push()
        self.build_content_discovery()
        self.build_content_management()
        for workflow, container, title, fn in self.specs:
            t = _Spec()
            try:
                await fn(t)
            except SpecSkipped as e:
                self.results.append(SpecResult(workflow, container, title, "skipped", str(e)))
            except SpecFailed as e:
                self.results.append(SpecResult(workflow, container, title, "failed", str(e), "".join(t.out)))
            except Exception as e:  # a panic in Go: the spec fails
                self.results.append(
                    SpecResult(workflow, container, title, "failed", f"Test Panicked: {e!r}", "".join(t.out))
                )
            else:
                self.results.append(SpecResult(workflow, container, title, "passed"))
        return self.results

    # -- shared request shapes --

    async def _post_then_put_blob(self, t: _Spec, digest: str, content_length: str, content: bytes) -> Resp:
        resp = await self.do(t, "POST", self.path("/v2/<name>/blobs/uploads/"))
        return await self.do(
            t,
            "PUT",
            resp.get_relative_location(),
            query=[("digest", digest)],
            headers=[("Content-Type", MT_OCTET), ("Content-Length", content_length)],
            body=content,
        )

    async def _put_manifest(self, t: _Spec, ref: str, content: bytes, media_type: str = MT_MANIFEST) -> Resp:
        return await self.do(
            t,
            "PUT",
            self.path("/v2/<name>/manifests/<reference>", ref=ref),
            headers=[("Content-Type", media_type)],
            body=content,
        )

    # ------------------------------------------------------------------ 01 pull

    def build_pull(self) -> None:
        d, s = self.d, self.s
        W = TITLE_PULL
        state = {"tag": ""}

        @self.specify(W, "Setup", "Populate registry with test blob")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            self.run_only_if(s.run_pull_setup)
            resp = await self._post_then_put_blob(t, d.configs[0].digest, d.configs[0].content_length, d.configs[0].content)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, "Setup", "Populate registry with test blob")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            self.run_only_if(s.run_pull_setup)
            resp = await self._post_then_put_blob(t, d.configs[1].digest, d.configs[1].content_length, d.configs[1].content)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, "Setup", "Populate registry with test layer")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            self.run_only_if(s.run_pull_setup)
            resp = await self._post_then_put_blob(t, d.layer_blob_digest, d.layer_blob_content_length, d.layer_blob_data)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, "Setup", "Populate registry with test manifest")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            self.run_only_if(s.run_pull_setup)
            state["tag"] = TEST_TAG_NAME
            resp = await self._put_manifest(t, state["tag"], d.manifests[0].content)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, "Setup", "Populate registry with test manifest")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            self.run_only_if(s.run_pull_setup)
            resp = await self._put_manifest(t, d.manifests[1].digest, d.manifests[1].content)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, "Setup", "Get tag name from environment")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            self.run_only_if_not(s.run_pull_setup)
            if s.tag_name:
                state["tag"] = s.tag_name

        C = "Pull blobs"

        @self.specify(W, C, "HEAD request to nonexistent blob should result in 404 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            resp = await self.do(t, "HEAD", self.path("/v2/<name>/blobs/<digest>", digest=d.dummy_digest))
            expect_status(resp, 404, "to equal 404")

        @self.specify(W, C, "HEAD request to existing blob should yield 200")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            resp = await self.do(t, "HEAD", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[0].digest))
            expect_status(resp, 200, "to equal 200")
            h = resp.header("Docker-Content-Digest")
            if h:
                expect(h == d.configs[0].digest, f"Expected Docker-Content-Digest {h!r} to equal {d.configs[0].digest!r}")

        @self.specify(W, C, "GET nonexistent blob should result in 404 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            resp = await self.do(t, "GET", self.path("/v2/<name>/blobs/<digest>", digest=d.dummy_digest))
            expect_status(resp, 404, "to equal 404")

        @self.specify(W, C, "GET request to existing blob URL should yield 200")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            resp = await self.do(t, "GET", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[0].digest))
            expect_status(resp, 200, "to equal 200")

        C = "Pull manifests"

        @self.specify(W, C, "HEAD request to nonexistent manifest should return 404")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            resp = await self.do(t, "HEAD", self.path("/v2/<name>/manifests/<reference>", ref=d.nonexistent_manifest))
            expect_status(resp, 404, "to equal 404")

        for idx in (0, 1):

            @self.specify(W, C, f"HEAD request to manifest[{idx}] path (digest) should yield 200 response")
            async def _(t: _Spec, idx: int = idx) -> None:
                self.skip_if_disabled(PULL)
                resp = await self.do(
                    t,
                    "HEAD",
                    self.path("/v2/<name>/manifests/<digest>", digest=d.manifests[idx].digest),
                    headers=[("Accept", MT_MANIFEST)],
                )
                expect_status(resp, 200, "to equal 200")
                h = resp.header("Docker-Content-Digest")
                if h:
                    expect(
                        h == d.manifests[idx].digest,
                        f"Expected Docker-Content-Digest {h!r} to equal {d.manifests[idx].digest!r}",
                    )

        @self.specify(W, C, "HEAD request to manifest path (tag) should yield 200 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            expect(state["tag"] != "", "Expected tag not to be empty")
            resp = await self.do(
                t,
                "HEAD",
                self.path("/v2/<name>/manifests/<reference>", ref=state["tag"]),
                headers=[("Accept", MT_MANIFEST)],
            )
            expect_status(resp, 200, "to equal 200")
            h = resp.header("Docker-Content-Digest")
            if h:
                expect(h == d.manifests[0].digest, f"Expected Docker-Content-Digest {h!r} to equal {d.manifests[0].digest!r}")

        @self.specify(W, C, "GET nonexistent manifest should return 404")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            resp = await self.do(t, "GET", self.path("/v2/<name>/manifests/<reference>", ref=d.nonexistent_manifest))
            expect_status(resp, 404, "to equal 404")

        for idx in (0, 1):

            @self.specify(W, C, f"GET request to manifest[{idx}] path (digest) should yield 200 response")
            async def _(t: _Spec, idx: int = idx) -> None:
                self.skip_if_disabled(PULL)
                resp = await self.do(
                    t,
                    "GET",
                    self.path("/v2/<name>/manifests/<digest>", digest=d.manifests[idx].digest),
                    headers=[("Accept", MT_MANIFEST)],
                )
                expect_status(resp, 200, "to equal 200")

        @self.specify(W, C, "GET request to manifest path (tag) should yield 200 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            expect(state["tag"] != "", "Expected tag not to be empty")
            resp = await self.do(
                t,
                "GET",
                self.path("/v2/<name>/manifests/<reference>", ref=state["tag"]),
                headers=[("Accept", MT_MANIFEST)],
            )
            expect_status(resp, 200, "to equal 200")

        @self.specify(W, "Error codes", "400 response body should contain OCI-conforming JSON message")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            resp = await self.do(
                t,
                "GET",
                self.path("/v2/<name>/manifests/<reference>", ref="sha256:totallywrong"),
                headers=[("Content-Type", MT_MANIFEST)],
                body=d.invalid_manifest_content,
            )
            expect_status(resp, {400, 404}, "to be 400 or 404")
            if resp.status_code() == 400:
                try:
                    errs = resp.errors()
                except ValueError as e:
                    raise SpecFailed(f"Expected error body to parse as OCI errors: {e} ({resp.r.describe()})") from e
                expect(bool(errs), "Expected errors not to be empty")
                expect(
                    errs[0].get("code") in ERROR_CODES,
                    f"Expected {ERROR_CODES} to contain element {errs[0].get('code')!r}",
                )

        self._teardown_pull()

    def _teardown_pull(self) -> None:
        d, s = self.d, self.s
        W, C = TITLE_PULL, "Teardown"

        def delete_manifests() -> None:
            for idx in (0, 1):

                @self.specify(W, C, f"Delete manifest[{idx}] created in setup")
                async def _(t: _Spec, idx: int = idx) -> None:
                    self.skip_if_disabled(PULL)
                    self.run_only_if(s.run_pull_setup)
                    resp = await self.do(t, "DELETE", self.path("/v2/<name>/manifests/<digest>", digest=d.manifests[idx].digest))
                    expect_status(resp, lambda c: _is_2xx(c) or c == 405, "2xx or 405")

        if s.delete_manifest_before_blobs:
            delete_manifests()

        for idx in (0, 1):

            @self.specify(W, C, f"Delete config[{idx}] blob created in setup")
            async def _(t: _Spec, idx: int = idx) -> None:
                self.skip_if_disabled(PULL)
                self.run_only_if(s.run_pull_setup)
                resp = await self.do(t, "DELETE", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[idx].digest))
                expect_status(resp, lambda c: _is_2xx(c) or c in (404, 405), "2xx, 404 or 405")

        @self.specify(W, C, "Delete layer blob created in setup")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PULL)
            self.run_only_if(s.run_pull_setup)
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/blobs/<digest>", digest=d.layer_blob_digest))
            expect_status(resp, lambda c: _is_2xx(c) or c in (404, 405), "2xx, 404 or 405")

        if not s.delete_manifest_before_blobs:
            delete_manifests()

    # ------------------------------------------------------------------ 02 push

    def build_push(self) -> None:
        d, s = self.d, self.s
        W = TITLE_PUSH
        st: dict[str, Any] = {"last": None, "prev": None, "empty_layer_manifest_ref": ""}

        # "Setup": no setup required at this time for push tests

        C = "Blob Upload Streamed"

        @self.specify(W, C, "PATCH request with blob in body should yield 202 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "POST", self.path("/v2/<name>/blobs/uploads/"))
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")
            resp = await self.do(
                t,
                "PATCH",
                resp.get_relative_location(),
                headers=[("Content-Type", MT_OCTET)],
                body=d.test_blob_a,
            )
            expect_status(resp, 202, "to equal 202")
            st["last"] = resp

        @self.specify(W, C, "PUT request to session URL with digest should yield 201 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            expect(st["last"] is not None, "Expected lastResponse not to be nil")
            resp = await self.do(
                t,
                "PUT",
                st["last"].get_relative_location(),
                query=[("digest", d.test_blob_a_digest)],
                headers=[("Content-Type", MT_OCTET), ("Content-Length", d.test_blob_a_length)],
            )
            expect_status(resp, 201, "to equal 201")
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")

        C = "Blob Upload Monolithic"

        @self.specify(W, C, "GET nonexistent blob should result in 404 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "GET", self.path("/v2/<name>/blobs/<digest>", digest=d.dummy_digest))
            expect_status(resp, 404, "to equal 404")

        @self.specify(W, C, "POST request with digest and blob should yield a 201 or 202")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(
                t,
                "POST",
                self.path("/v2/<name>/blobs/uploads/"),
                headers=[("Content-Length", d.configs[1].content_length), ("Content-Type", MT_OCTET)],
                query=[("digest", d.configs[1].digest)],
                body=d.configs[1].content,
            )
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")
            expect_status(resp, {201, 202}, "201 or 202")
            st["last"] = resp

        @self.specify(W, C, "GET request to blob URL from prior request should yield 200 or 404 based on response code")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            expect(st["last"] is not None, "Expected lastResponse not to be nil")
            resp = await self.do(t, "GET", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[1].digest))
            if st["last"].status_code() == 202:
                expect_status(resp, 404, "to equal 404 (the monolithic POST answered 202)")
            else:
                expect_status(resp, 200, "to equal 200 (the monolithic POST answered 201)")

        @self.specify(W, C, "POST request should yield a session ID")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "POST", self.path("/v2/<name>/blobs/uploads/"))
            expect_status(resp, 202, "to equal 202")
            st["last"] = resp

        @self.specify(W, C, "PUT upload of a blob should yield a 201 Response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(
                t,
                "PUT",
                st["last"].get_relative_location(),
                headers=[("Content-Length", d.configs[1].content_length), ("Content-Type", MT_OCTET)],
                query=[("digest", d.configs[1].digest)],
                body=d.configs[1].content,
            )
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")
            expect_status(resp, 201, "to equal 201")

        @self.specify(W, C, "GET request to existing blob should yield 200 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "GET", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[1].digest))
            expect_status(resp, 200, "to equal 200")

        @self.specify(W, C, "PUT upload of a layer blob should yield a 201 Response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "POST", self.path("/v2/<name>/blobs/uploads/"))
            resp = await self.do(
                t,
                "PUT",
                resp.get_relative_location(),
                headers=[("Content-Length", d.layer_blob_content_length), ("Content-Type", MT_OCTET)],
                query=[("digest", d.layer_blob_digest)],
                body=d.layer_blob_data,
            )
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")
            expect_status(resp, 201, "to equal 201")

        @self.specify(W, C, "GET request to existing layer should yield 200 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "GET", self.path("/v2/<name>/blobs/<digest>", digest=d.layer_blob_digest))
            expect_status(resp, 200, "to equal 200")

        C = "Blob Upload Chunked"

        @self.specify(W, C, "Out-of-order blob upload should return 416")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "POST", self.path("/v2/<name>/blobs/uploads/"), headers=[("Content-Length", "0")])
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")
            # rebuild chunked blob if min size is above our chunk size
            min_size_str = resp.header("OCI-Chunk-Min-Length")
            if min_size_str:
                try:
                    min_size = int(min_size_str)
                except ValueError as e:
                    raise SpecFailed(f"Expected OCI-Chunk-Min-Length {min_size_str!r} to parse: {e}") from e
                if min_size > len(d.test_blob_b_chunk1):
                    d.setup_chunked_blob(min_size * 2 - 2)
            resp = await self.do(
                t,
                "PATCH",
                resp.get_relative_location(),
                headers=[
                    ("Content-Type", MT_OCTET),
                    ("Content-Length", d.test_blob_b_chunk2_length),
                    ("Content-Range", d.test_blob_b_chunk2_range),
                ],
                body=d.test_blob_b_chunk2,
            )
            expect_status(resp, 416, "to equal 416")

        @self.specify(W, C, "PATCH request with first chunk should return 202")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "POST", self.path("/v2/<name>/blobs/uploads/"), headers=[("Content-Length", "0")])
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")
            st["prev"] = resp
            resp = await self.do(
                t,
                "PATCH",
                resp.get_relative_location(),
                headers=[
                    ("Content-Type", MT_OCTET),
                    ("Content-Length", d.test_blob_b_chunk1_length),
                    ("Content-Range", d.test_blob_b_chunk1_range),
                ],
                body=d.test_blob_b_chunk1,
            )
            expect_status(resp, 202, "to equal 202")
            expect(
                resp.header("Range") == d.test_blob_b_chunk1_range,
                f"Expected Range {resp.header('Range')!r} to equal {d.test_blob_b_chunk1_range!r} ({resp.r.describe()})",
            )
            st["last"] = resp

        @self.specify(W, C, "Retry previous blob chunk should return 416")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(
                t,
                "PATCH",
                st["prev"].get_relative_location(),
                headers=[
                    ("Content-Type", MT_OCTET),
                    ("Content-Length", d.test_blob_b_chunk1_length),
                    ("Content-Range", d.test_blob_b_chunk1_range),
                ],
                body=d.test_blob_b_chunk1,
            )
            expect_status(resp, 416, "to equal 416")

        @self.specify(W, C, "Get on stale blob upload should return 204 with a range and location")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "GET", st["prev"].get_relative_location())
            expect_status(resp, 204, "to equal 204")
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")
            expect(
                resp.header("Range") == d.test_blob_b_chunk1_range,
                f"Expected Range {resp.header('Range')!r} to equal {d.test_blob_b_chunk1_range!r} ({resp.r.describe()})",
            )
            st["last"] = resp

        @self.specify(W, C, "PATCH request with second chunk should return 202")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(
                t,
                "PATCH",
                st["last"].get_relative_location(),
                headers=[
                    ("Content-Length", d.test_blob_b_chunk2_length),
                    ("Content-Range", d.test_blob_b_chunk2_range),
                    ("Content-Type", MT_OCTET),
                ],
                body=d.test_blob_b_chunk2,
            )
            location = resp.header("Location")
            expect_status(resp, 202, "to equal 202")
            expect(location != "", f"Expected Location not to be empty ({resp.r.describe()})")
            st["last"] = resp

        @self.specify(W, C, "PUT request with digest should return 201")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(
                t,
                "PUT",
                st["last"].get_relative_location(),
                headers=[("Content-Length", "0"), ("Content-Type", MT_OCTET)],
                query=[("digest", d.test_blob_b_digest)],
            )
            expect_status(resp, 201, "to equal 201")
            expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")

        C = "Cross-Repository Blob Mount"

        @self.specify(W, C, "Cross-mounting of a blob without the from argument should yield session id")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(
                t,
                "POST",
                self.path("/v2/<name>/blobs/uploads/", name=s.crossmount_namespace),
                query=[("mount", d.dummy_digest)],
            )
            expect_status(resp, 202, "to equal 202")
            expect(resp.get_absolute_location() != "", f"Expected Location not to be empty ({resp.r.describe()})")

        @self.specify(W, C, "POST request to mount another repository's blob should return 201 or 202")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(
                t,
                "POST",
                self.path("/v2/<name>/blobs/uploads/", name=s.crossmount_namespace),
                query=[("mount", d.test_blob_a_digest), ("from", s.namespace)],
            )
            expect_status(resp, {201, 202}, "201 or 202")
            st["last"] = resp

        @self.specify(W, C, "GET request to test digest within cross-mount namespace should return 200")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            self.run_only_if(st["last"] is not None and st["last"].status_code() == 201)
            want = f"/v2/{s.crossmount_namespace}/blobs/{d.test_blob_a_digest}"
            rel = st["last"].get_relative_location()
            expect(rel == want, f"Expected mount Location {rel!r} to equal {want!r}")
            resp = await self.do(t, "GET", rel)
            expect_status(resp, 200, "to equal 200")

        @self.specify(W, C, "Cross-mounting of nonexistent blob should yield session id")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            self.run_only_if(st["last"] is not None and st["last"].status_code() == 202)
            prefix = f"/v2/{s.crossmount_namespace}/blobs/uploads/"
            rel = st["last"].get_relative_location()
            expect(rel.startswith(prefix), f"Expected mount Location {rel!r} to have prefix {prefix!r}")

        @self.specify(W, C, "Cross-mounting without from, and automatic content discovery enabled should return a 201")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            self.run_only_if(s.run_automatic_crossmount_test)
            self.run_only_if(st["last"] is not None and st["last"].status_code() == 201)
            self.run_only_if(s.automatic_crossmount_enabled)
            resp = await self.do(
                t,
                "POST",
                self.path("/v2/<name>/blobs/uploads/", name=s.crossmount_namespace),
                query=[("mount", d.test_blob_a_digest)],
            )
            expect_status(resp, 201, "to equal 201")

        @self.specify(W, C, "Cross-mounting without from, and automatic content discovery disabled should return a 202")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            self.run_only_if(s.run_automatic_crossmount_test)
            self.run_only_if(st["last"] is not None and st["last"].status_code() == 201)
            self.run_only_if_not(s.automatic_crossmount_enabled)
            resp = await self.do(
                t,
                "POST",
                self.path("/v2/<name>/blobs/uploads/", name=s.crossmount_namespace),
                query=[("mount", d.test_blob_a_digest)],
            )
            expect_status(resp, 202, "to equal 202")

        C = "Manifest Upload"

        @self.specify(W, C, "GET nonexistent manifest should return 404")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(t, "GET", self.path("/v2/<name>/manifests/<reference>", ref=d.nonexistent_manifest))
            expect_status(resp, 404, "to equal 404")

        @self.specify(W, C, "PUT should accept a manifest upload")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            for i in range(4):
                resp = await self._put_manifest(t, f"test{i}", d.manifests[1].content)
                expect(resp.header("Location") != "", f"Expected Location not to be empty ({resp.r.describe()})")
                expect_status(resp, 201, "to equal 201")

        @self.specify(W, C, "Registry should accept a manifest upload with no layers")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self._put_manifest(t, EMPTY_LAYER_TEST_TAG, d.empty_layer_manifest_content)
            if resp.status_code() == 201:
                location = resp.header("Location")
                st["empty_layer_manifest_ref"] = location
                expect(location != "", f"Expected Location not to be empty ({resp.r.describe()})")
            else:
                self.warn(f"image manifest with no layers is not supported ({resp.r.describe()})")

        @self.specify(W, C, "GET request to manifest URL (digest) should yield 200 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            resp = await self.do(
                t,
                "GET",
                self.path("/v2/<name>/manifests/<digest>", digest=d.manifests[1].digest),
                headers=[("Accept", MT_MANIFEST)],
            )
            expect_status(resp, 200, "to equal 200")

        # Teardown
        C = "Teardown"

        def delete_manifest() -> None:
            @self.specify(W, C, "Delete manifest created in tests")
            async def _(t: _Spec) -> None:
                self.skip_if_disabled(PUSH)
                self.run_only_if(s.run_push_setup)
                resp = await self.do(t, "DELETE", self.path("/v2/<name>/manifests/<digest>", digest=d.manifests[1].digest))
                expect_status(resp, lambda c: _is_2xx(c) or c == 405, "2xx or 405")
                if st["empty_layer_manifest_ref"]:
                    resp = await self.do(
                        t,
                        "DELETE",
                        self.path("/v2/<name>/manifests/<reference>", ref=d.empty_layer_manifest_digest),
                    )
                    expect_status(resp, lambda c: _is_2xx(c) or c == 405, "2xx or 405")

        if s.delete_manifest_before_blobs:
            delete_manifest()

        @self.specify(W, C, "Delete config blob created in tests")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            self.run_only_if(s.run_push_setup)
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[1].digest))
            expect_status(resp, lambda c: _is_2xx(c) or c in (404, 405), "2xx, 404 or 405")

        @self.specify(W, C, "Delete layer blob created in setup")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(PUSH)
            self.run_only_if(s.run_push_setup)
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/blobs/<digest>", digest=d.layer_blob_digest))
            expect_status(resp, lambda c: _is_2xx(c) or c in (404, 405), "2xx, 404 or 405")

        if not s.delete_manifest_before_blobs:
            delete_manifest()

    # ------------------------------------------------------- 03 content discovery

    def build_content_discovery(self) -> None:
        d, s = self.d, self.s
        W = TITLE_CONTENT_DISCOVERY
        st: dict[str, Any] = {"num_tags": 4, "tag_list": []}

        C = "Setup"

        @self.specify(W, C, "Populate registry with test blob")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            self.run_only_if(s.run_content_discovery_setup)
            resp = await self._post_then_put_blob(t, d.configs[2].digest, d.configs[2].content_length, d.configs[2].content)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, C, "Populate registry with test layer")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            self.run_only_if(s.run_content_discovery_setup)
            resp = await self._post_then_put_blob(t, d.layer_blob_digest, d.layer_blob_content_length, d.layer_blob_data)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, C, "Populate registry with test tags")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            self.run_only_if(s.run_content_discovery_setup)
            for i in range(st["num_tags"]):
                tag = f"test{i}"
                st["tag_list"].append(tag)
                resp = await self._put_manifest(t, tag, d.manifests[2].content)
                expect_status(resp, _is_2xx, ">=200 and <300")
            try:
                resp = await self.do(t, "GET", self.path("/v2/<name>/tags/list"))
            except SpecFailed:
                st["tag_list"] = []  # getTagList of a failed request: the error is ignored
                return
            st["tag_list"] = get_tag_list(resp)

        @self.specify(W, C, "Populate registry with test tags (no push)")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            self.run_only_if_not(s.run_content_discovery_setup)
            st["tag_list"] = s.tag_list.split(",")

        @self.specify(W, C, "References setup")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            self.run_only_if(s.run_content_discovery_setup)
            expect(
                d.empty_json_descriptor["digest"]
                == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "empty JSON digest",
            )
            ok = _is_2xx
            # empty JSON blob
            resp = await self._post_then_put_blob(t, d.empty_json_descriptor["digest"], "2", d.empty_json_blob)
            expect_status(resp, ok, ">=200 and <300")
            # reference blob before the image manifest is pushed
            resp = await self._post_then_put_blob(t, d.test_ref_blob_a_digest, d.test_ref_blob_a_length, d.test_ref_blob_a)
            expect_status(resp, ok, ">=200 and <300")
            subject4 = d.manifests[4].digest
            # references manifest (config.MediaType = artifactType)
            resp = await self._put_manifest(t, d.refs_manifest_a_config_artifact_digest, d.refs_manifest_a_config_artifact_content)
            expect_status(resp, ok, ">=200 and <300")
            expect(
                resp.header("OCI-Subject") == subject4,
                f"Expected OCI-Subject {resp.header('OCI-Subject')!r} to equal {subject4!r} ({resp.r.describe()})",
            )
            # references manifest (ArtifactType, config.MediaType = emptyJSON)
            resp = await self._put_manifest(t, d.refs_manifest_a_layer_artifact_digest, d.refs_manifest_a_layer_artifact_content)
            expect_status(resp, ok, ">=200 and <300")
            expect(
                resp.header("OCI-Subject") == subject4,
                f"Expected OCI-Subject {resp.header('OCI-Subject')!r} to equal {subject4!r} ({resp.r.describe()})",
            )
            # index manifest
            resp = await self._put_manifest(t, d.refs_index_artifact_digest, d.refs_index_artifact_content, MT_INDEX)
            expect_status(resp, ok, ">=200 and <300")
            expect(
                resp.header("OCI-Subject") == subject4,
                f"Expected OCI-Subject {resp.header('OCI-Subject')!r} to equal {subject4!r} ({resp.r.describe()})",
            )
            # test blob (config[4]) and layer
            resp = await self._post_then_put_blob(t, d.configs[4].digest, d.configs[4].content_length, d.configs[4].content)
            expect_status(resp, ok, ">=200 and <300")
            resp = await self._post_then_put_blob(t, d.layer_blob_digest, d.layer_blob_content_length, d.layer_blob_data)
            expect_status(resp, ok, ">=200 and <300")
            # test manifest (the subject) by tag
            resp = await self._put_manifest(t, TEST_TAG_NAME, d.manifests[4].content)
            expect_status(resp, ok, ">=200 and <300")
            # reference blob after the image manifest is pushed
            resp = await self._post_then_put_blob(t, d.test_ref_blob_b_digest, d.test_ref_blob_b_length, d.test_ref_blob_b)
            expect_status(resp, ok, ">=200 and <300")
            resp = await self._put_manifest(t, d.refs_manifest_b_config_artifact_digest, d.refs_manifest_b_config_artifact_content)
            expect_status(resp, ok, ">=200 and <300")
            expect(
                resp.header("OCI-Subject") == subject4,
                f"Expected OCI-Subject {resp.header('OCI-Subject')!r} to equal {subject4!r} ({resp.r.describe()})",
            )
            resp = await self._put_manifest(t, d.refs_manifest_b_layer_artifact_digest, d.refs_manifest_b_layer_artifact_content)
            expect_status(resp, ok, ">=200 and <300")
            expect(
                resp.header("OCI-Subject") == subject4,
                f"Expected OCI-Subject {resp.header('OCI-Subject')!r} to equal {subject4!r} ({resp.r.describe()})",
            )
            # references manifest to a non-existent subject (manifests[3])
            resp = await self._put_manifest(t, d.refs_manifest_c_layer_artifact_digest, d.refs_manifest_c_layer_artifact_content)
            expect_status(resp, ok, ">=200 and <300")
            subject3 = d.manifests[3].digest
            expect(
                resp.header("OCI-Subject") == subject3,
                f"Expected OCI-Subject {resp.header('OCI-Subject')!r} to equal {subject3!r} ({resp.r.describe()})",
            )

        C = "Test content discovery endpoints (listing tags)"

        @self.specify(W, C, "GET request to list tags should yield 200 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            resp = await self.do(t, "GET", self.path("/v2/<name>/tags/list"))
            expect_status(resp, 200, "to equal 200")
            st["tag_list"] = get_tag_list(resp)
            st["num_tags"] = len(st["tag_list"])

        @self.specify(W, C, "GET number of tags should be limitable by `n` query parameter")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            num_results = st["num_tags"] // 2
            resp = await self.do(t, "GET", self.path("/v2/<name>/tags/list"), query=[("n", str(num_results))])
            expect_status(resp, 200, "to equal 200")
            st["tag_list"] = get_tag_list(resp)
            expect(
                len(st["tag_list"]) == num_results,
                f"Expected {len(st['tag_list'])} tags (got {st['tag_list']}) to equal n={num_results} ({resp.r.describe()})",
            )

        @self.specify(W, C, "GET start of tag is set by `last` query parameter")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            num_results = st["num_tags"] // 2
            resp = await self.do(t, "GET", self.path("/v2/<name>/tags/list"), query=[("n", str(num_results))])
            st["tag_list"] = get_tag_list(resp)
            tag_list = st["tag_list"]
            if num_results - 1 < 0 or num_results - 1 >= len(tag_list):
                raise SpecFailed(
                    f"Test Panicked: runtime error: index out of range [{num_results - 1}] with length {len(tag_list)}"
                )
            resp = await self.do(
                t,
                "GET",
                self.path("/v2/<name>/tags/list"),
                query=[("n", str(num_results)), ("last", tag_list[num_results - 1])],
            )
            expect_status(resp, 200, "to equal 200")
            # (upstream checks the first page again, not the second response)
            expect(len(tag_list) <= num_results, f"Expected len {len(tag_list)} <= {num_results}")
            expect(tag_list[num_results - 1] in tag_list, "Expected tag list to contain element")

        C = "Test content discovery endpoints (listing references)"

        async def referrers(t: _Spec, digest: str, query: list[tuple[str, str]] | None = None) -> tuple[Resp, list[dict[str, Any]]]:
            resp = await self.do(t, "GET", self.path("/v2/<name>/referrers/<digest>", digest=digest), query=query)
            expect_status(resp, 200, "to equal 200")
            ct = resp.header("Content-Type")
            expect(ct == MT_INDEX, f"Expected Content-Type {ct!r} to equal {MT_INDEX!r} ({resp.r.describe()})")
            try:
                mans = unmarshal_index(json.loads(resp.body()))
            except (ValueError, TypeError) as e:
                raise SpecFailed(f"Expected referrers body to unmarshal into an index: {e} ({resp.r.describe()})") from e
            return resp, mans

        def check_annotations(mans: list[dict[str, Any]]) -> None:
            for m in mans:
                ann = m.get("annotations") or {}
                expect(len(ann) == 1, f"Expected exactly 1 annotation on referrer {m.get('digest')}, got {ann}")
                want = d.test_annotation_values.get(str(m.get("digest")), "")
                got = ann.get(d.test_annotation_key, "")
                expect(got == want, f"Expected annotation {got!r} to equal {want!r} on referrer {m.get('digest')}")

        @self.specify(W, C, "GET request to nonexistent blob should result in empty 200 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            _, mans = await referrers(t, d.dummy_digest)
            expect(len(mans) == 0, f"Expected no referrers, got {len(mans)}")

        @self.specify(W, C, "GET request to existing blob should yield 200")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            _, mans = await referrers(t, d.manifests[4].digest)
            expect(len(mans) == 5, f"Expected 5 referrers, got {len(mans)}: {[m.get('digest') for m in mans]}")
            expect(mans[0].get("digest") != mans[1].get("digest"), "Expected first two referrers to differ")
            check_annotations(mans)

        @self.specify(W, C, "GET request to existing blob with filter should yield 200")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            resp, mans = await referrers(t, d.manifests[4].digest, [("artifactType", d.test_ref_artifact_type_a)])
            applied = resp.header("OCI-Filters-Applied")
            if applied:
                expect(len(mans) == 2, f"Expected 2 filtered referrers, got {len(mans)}: {[m.get('digest') for m in mans]}")
                expect(applied == ARTIFACT_TYPE_FILTER, f"Expected OCI-Filters-Applied {applied!r} to equal 'artifactType'")
                check_annotations(mans)
            else:
                expect(len(mans) == 5, f"Expected 5 referrers (no filter applied), got {len(mans)}")
                check_annotations(mans)
                self.warn("filtering by artifact-type is not implemented")

        @self.specify(W, C, "GET request to missing manifest should yield 200")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            _, mans = await referrers(t, d.manifests[3].digest)
            expect(len(mans) == 1, f"Expected 1 referrer, got {len(mans)}: {[m.get('digest') for m in mans]}")
            expect(
                mans[0].get("digest") == d.refs_manifest_c_layer_artifact_digest,
                f"Expected referrer {mans[0].get('digest')!r} to equal {d.refs_manifest_c_layer_artifact_digest!r}",
            )

        C = "Teardown"
        references = [
            d.refs_index_artifact_digest,
            d.manifests[2].digest,
            d.manifests[4].digest,
            d.refs_manifest_a_config_artifact_digest,
            d.refs_manifest_a_layer_artifact_digest,
            TEST_TAG_NAME,
            d.refs_manifest_b_config_artifact_digest,
            d.refs_manifest_b_layer_artifact_digest,
            d.refs_manifest_c_layer_artifact_digest,
        ]

        def delete_manifests_and_tags() -> None:
            @self.specify(W, C, "Delete created manifest & associated tags")
            async def _(t: _Spec) -> None:
                self.skip_if_disabled(CONTENT_DISCOVERY)
                self.run_only_if(s.run_content_discovery_setup)
                for ref in references:
                    resp = await self.do(t, "DELETE", self.path("/v2/<name>/manifests/<digest>", digest=ref))
                    expect_status(resp, lambda c: _is_2xx(c) or c in (404, 405), f"2xx, 405 or 404 deleting {ref}")

        if s.delete_manifest_before_blobs:
            delete_manifests_and_tags()

        @self.specify(W, C, "Delete config blob created in tests")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            self.run_only_if(s.run_content_discovery_setup)
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[2].digest))
            expect_status(resp, lambda c: _is_2xx(c) or c == 405, "2xx or 405")

        @self.specify(W, C, "Delete layer blob created in setup")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            self.run_only_if(s.run_content_discovery_setup)
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/blobs/<digest>", digest=d.layer_blob_digest))
            expect_status(resp, lambda c: _is_2xx(c) or c == 405, "2xx or 405")

        if not s.delete_manifest_before_blobs:
            delete_manifests_and_tags()

        @self.specify(W, C, "References teardown")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_DISCOVERY)
            self.run_only_if(s.run_content_discovery_setup)

            async def delete(path: str) -> None:
                resp = await self.do(t, "DELETE", path)
                expect_status(resp, lambda c: _is_2xx(c) or c in (404, 405), f"2xx, 405 or 404 for DELETE {path}")

            def man(ref: str) -> str:
                return self.path("/v2/<name>/manifests/<reference>", ref=ref)

            async def delete_refs() -> None:
                await delete(man(d.refs_index_artifact_digest))
                await delete(man(d.refs_manifest_a_config_artifact_digest))
                await delete(man(d.refs_manifest_a_layer_artifact_digest))
                await delete(self.path("/v2/<name>/manifests/<digest>", digest=d.manifests[4].digest))
                await delete(man(d.refs_manifest_b_config_artifact_digest))
                await delete(man(d.refs_manifest_b_layer_artifact_digest))

            if s.delete_manifest_before_blobs:
                await delete_refs()
            for dig in (d.configs[4].digest, d.test_ref_blob_a_digest, d.test_ref_blob_b_digest, d.empty_json_descriptor["digest"]):
                await delete(self.path("/v2/<name>/blobs/<digest>", digest=dig))
            if not s.delete_manifest_before_blobs:
                await delete_refs()

    # ------------------------------------------------------ 04 content management

    def build_content_management(self) -> None:
        d, s = self.d, self.s
        W = TITLE_CONTENT_MANAGEMENT
        default_tag_name = "tagtest0"
        st: dict[str, Any] = {"tag_to_delete": "", "num_tags": 0, "blob_delete_allowed": True}

        C = "Setup"

        @self.specify(W, C, "Populate registry with test config blob")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            self.run_only_if(s.run_content_management_setup)
            resp = await self._post_then_put_blob(t, d.configs[3].digest, d.configs[3].content_length, d.configs[3].content)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, C, "Populate registry with test layer")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            self.run_only_if(s.run_content_management_setup)
            resp = await self._post_then_put_blob(t, d.layer_blob_digest, d.layer_blob_content_length, d.layer_blob_data)
            expect_status(resp, _is_2xx, ">=200 and <300")

        @self.specify(W, C, "Populate registry with test tag")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            self.run_only_if(s.run_content_management_setup)
            st["tag_to_delete"] = default_tag_name
            resp = await self._put_manifest(t, st["tag_to_delete"], d.manifests[3].content)
            expect_status(resp, _is_2xx, ">=200 and <300")

        def tag_list_strict(resp: Resp) -> list[str]:
            try:
                return unmarshal_tag_list(json.loads(resp.string().encode()))
            except (ValueError, TypeError) as e:
                raise SpecFailed(f"Expected tag list to unmarshal: {e} ({resp.r.describe()})") from e

        @self.specify(W, C, "Check how many tags there are before anything gets deleted")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            self.run_only_if(s.run_content_management_setup)
            resp = await self.do(t, "GET", self.path("/v2/<name>/tags/list"))
            expect_status(resp, 200, "to equal 200")
            st["num_tags"] = len(tag_list_strict(resp))

        C = "Manifest delete"

        @self.specify(W, C, "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/manifests/<reference>", ref=st["tag_to_delete"]))
            expect_status(resp, {400, 202, 405}, "400, 202 or 405")
            if resp.status_code() == 400:
                try:
                    errs = resp.errors()
                except ValueError as e:
                    raise SpecFailed(f"Expected error body to parse as OCI errors: {e} ({resp.r.describe()})") from e
                expect(bool(errs), "Expected errors not to be empty")
                expect(errs[0].get("code") == UNSUPPORTED, f"Expected error code {errs[0].get('code')!r} to equal 'UNSUPPORTED'")

        @self.specify(W, C, "DELETE request to manifest (digest) should yield 202 response unless already deleted")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/manifests/<digest>", digest=d.manifests[3].digest))
            expect_status(resp, {202, 404}, "202 or 404")

        @self.specify(W, C, "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            resp = await self.do(t, "GET", self.path("/v2/<name>/manifests/<digest>", digest=d.manifests[3].digest))
            expect_status(resp, {404, 200}, "404 or 200")

        @self.specify(W, C, "GET request to tags list should reflect manifest deletion")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            resp = await self.do(t, "GET", self.path("/v2/<name>/tags/list"))
            expect_status(resp, 200, "to equal 200")
            tags = tag_list_strict(resp)
            expect(len(tags) < st["num_tags"], f"Expected {len(tags)} tags ({tags}) to be < {st['num_tags']}")

        C = "Blob delete"

        @self.specify(W, C, "DELETE request to blob URL should yield 202 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            self.run_only_if(s.run_content_management_setup)
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[3].digest))
            expect_status(resp, {202, 404, 405}, "202, 404 or 405 (config blob)")
            resp = await self.do(t, "DELETE", self.path("/v2/<name>/blobs/<digest>", digest=d.layer_blob_digest))
            expect_status(resp, {202, 404, 405}, "202, 404 or 405 (layer blob)")
            if resp.status_code() == 405:
                st["blob_delete_allowed"] = False

        @self.specify(W, C, "GET request to deleted blob URL should yield 404 response")
        async def _(t: _Spec) -> None:
            self.skip_if_disabled(CONTENT_MANAGEMENT)
            self.run_only_if(s.run_content_management_setup)
            self.run_only_if(st["blob_delete_allowed"])
            resp = await self.do(t, "GET", self.path("/v2/<name>/blobs/<digest>", digest=d.configs[3].digest))
            expect_status(resp, 404, "to equal 404")

        # Teardown: no teardown required at this time for content management tests


def format_results(results: list[SpecResult], warnings: list[str] | None = None, verbose: bool = False) -> str:
    """A text report shaped like the official one: counts, then each failure
    with its message and HTTP transcript."""
    passed = sum(r.state == "passed" for r in results)
    failed = [r for r in results if r.state == "failed"]
    skipped = sum(r.state == "skipped" for r in results)
    lines = [f"{SUITE_DESCRIPTION}: {len(results)} specs, {passed} passed, {len(failed)} failed, {skipped} skipped"]
    for r in results:
        if r.state == "failed":
            lines.append(f"  [FAIL] {r.path}")
        elif verbose:
            lines.append(f"  [{r.state}] {r.path}")
    for w in warnings or []:
        lines.append(f"  WARNING: {w}")
    for r in failed:
        lines.append("")
        lines.append("-" * 100)
        lines.append(f"[FAIL] {r.path}")
        lines.append(r.failure)
        if r.output:
            lines.append(r.output[-12000:])
    return "\n".join(lines)
