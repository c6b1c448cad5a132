"""Port of ``conformance/api.go`` (distribution-spec ``main``): the request
helpers and the response checks they apply, plus ``errors.go``.

Go's option closures are kept: an :class:`Opt` has a request function, a
response function, an output sink and flags; :meth:`API.do` runs all request
functions, sends, then runs every response function and joins the errors.
Go error wrapping (``%w`` with the sentinel errors) is modelled by
:class:`CErr` and its ``kinds``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable, Iterable, Optional, Sequence
from urllib.parse import parse_qsl, quote_plus, urljoin, urlsplit, urlunsplit

import attr

from .client import GoHTTPClient, RequestError

# --- errors.go -------------------------------------------------------------

DISABLED = "API is disabled by user configuration"
SKIP = "API test was skipped"
ERROR = "API test encountered an internal error"
FAIL = "API test with a known failure"
UNSUPPORTED = "registry does not support the requested API"


class CErr(Exception):
    """A Go error: a message, the sentinel errors it wraps, and wrapped causes."""

    def __init__(self, msg: str, kinds: Iterable[str] = (), causes: Iterable[Optional["CErr"]] = ()) -> None:
        super().__init__(msg)
        self.msg = msg
        self.kinds = frozenset(kinds)
        self.causes = tuple(c for c in causes if c is not None)

    def is_(self, kind: str) -> bool:
        """``errors.Is(err, sentinel)``."""
        return kind in self.kinds or any(c.is_(kind) for c in self.causes)

    def __str__(self) -> str:
        return self.msg


def errorf(msg: str, *kinds: str) -> CErr:
    """``fmt.Errorf("msg%.0w", sentinel...)``: the sentinels add no text."""
    return CErr(msg, kinds)


def wrap(prefix: str, err: CErr, *kinds: str) -> CErr:
    """``fmt.Errorf("prefix: %w", err)``."""
    return CErr(f"{prefix}: {err}", kinds, [err])


def mark(kind: str, err: CErr) -> CErr:
    """``fmt.Errorf("%.0w%w", sentinel, err)``."""
    return CErr(str(err), [kind], [err])


def join(errs: Sequence[Optional[CErr]]) -> Optional[CErr]:
    """``errors.Join``: nil when there is nothing to join."""
    real = [e for e in errs if e is not None]
    if not real:
        return None
    return CErr("\n".join(str(e) for e in real), (), real)


def one_or_join(errs: list[CErr]) -> Optional[CErr]:
    if len(errs) == 1:
        return errs[0]
    return join(errs)


# --- media types (testdata.go) ------------------------------------------------

MT_EXAMPLE_CONF1 = "application/vnd.example.oci.conformance.v1"
MT_EXAMPLE_CONF2 = "application/vnd.example.oci.conformance.v2"
MT_OCTET_STREAM = "application/octet-stream"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_IMAGE = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_PRE = "application/vnd.oci.image.layer.v1."
MT_OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MT_OCI_LAYER_ND_GZ = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_OCI_EMPTY_JSON = "application/vnd.oci.empty.v1+json"

#: config.go ``chunkMin``
CHUNK_MIN = 1024

EMPTY_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# --- URL helpers (net/url semantics) -----------------------------------------


def _go_query_escape(s: str) -> str:
    return quote_plus(s, safe="")


def query_encode(pairs: list[tuple[str, str]]) -> str:
    """``url.Values.Encode``: keys sorted, values in insertion order."""
    by_key: dict[str, list[str]] = {}
    for k, v in pairs:
        by_key.setdefault(k, []).append(v)
    return "&".join(f"{_go_query_escape(k)}={_go_query_escape(v)}" for k in sorted(by_key) for v in by_key[k])


def query_set(u: str, key: str, val: str) -> str:
    """``qa := u.Query(); qa.Set(key, val); u.RawQuery = qa.Encode()``."""
    parts = urlsplit(u)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != key]
    pairs.append((key, val))
    return urlunsplit(parts._replace(query=query_encode(pairs)))


def query_add(u: str, key: str, val: str) -> str:
    """``params := u.Query(); params.Add(key, val); u.RawQuery = params.Encode()``."""
    parts = urlsplit(u)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    pairs.append((key, val))
    return urlunsplit(parts._replace(query=query_encode(pairs)))


def url_parse_ref(base: str, ref: str) -> str:
    """``base.Parse(ref)`` (resolve a Location)."""
    return urljoin(base, ref)


# --- request / response models ---------------------------------------------------


class Ref:
    """A Go pointer target for ``apiReturn*`` options."""

    def __init__(self, v: Any = None) -> None:
        self.v = v


class Req:
    def __init__(self) -> None:
        self.method = "GET"
        self.url: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.body: bytes | None = None
        self.content_length: int | None = None


class Resp:
    """The ``*http.Response`` seen by response functions.  The body is a
    reader: :meth:`read_all` consumes it, as ``io.ReadAll`` would."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, body_error: str | None = None) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        self._pos = 0
        self.body_error = body_error

    def read_error(self) -> Optional[CErr]:
        """The error ``io.ReadAll(resp.Body)`` would return (a truncated body)."""
        if self.body_error:
            return errorf(self.body_error)
        return None

    def values(self, key: str) -> list[str]:
        low = key.lower()
        return [v for k, v in self.headers if k.lower() == low]

    def get(self, key: str) -> str:
        vals = self.values(key)
        return vals[0] if vals else ""

    def read_all(self) -> bytes:
        data = self._body[self._pos :]
        self._pos = len(self._body)
        return data

    def replace_body(self, data: bytes) -> None:
        self._body = data
        self._pos = 0


@attr.s(auto_attribs=True)
class Opt:
    req_fn: Optional[Callable[[Req], Optional[CErr]]] = None
    resp_fn: Optional[Callable[[Resp], Optional[CErr]]] = None
    out: Optional[list] = None
    flags: dict = attr.Factory(dict)


def get_flags(opts: Iterable[Opt]) -> dict[str, bool]:
    ret: dict[str, bool] = {}
    for o in opts:
        ret.update(o.flags)
    return ret


# --- option constructors -------------------------------------------------------------


def with_and(opts: Sequence[Opt]) -> Opt:
    req_fns = [o.req_fn for o in opts if o.req_fn is not None]
    resp_fns = [o.resp_fn for o in opts if o.resp_fn is not None]
    ret = Opt()
    for o in opts:
        if o.out is not None:
            ret.out = o.out
    if len(req_fns) == 1:
        ret.req_fn = req_fns[0]
    elif req_fns:

        def req_all(r: Req) -> Optional[CErr]:
            return one_or_join([e for e in (fn(r) for fn in req_fns) if e is not None])

        ret.req_fn = req_all
    if len(resp_fns) == 1:
        ret.resp_fn = resp_fns[0]
    elif resp_fns:

        def resp_all(r: Resp) -> Optional[CErr]:
            errs = []
            for fn in resp_fns:
                e = fn(r)
                if e is not None:
                    errs.append(e)
            return one_or_join(errs)

        ret.resp_fn = resp_all
    return ret


def with_or(*opt_lists: Sequence[Opt]) -> Opt:
    """Succeeds when every response function of any one list succeeds."""

    def resp_fn(resp: Resp) -> Optional[CErr]:
        errs_or = []
        for opts in opt_lists:
            errs_resp = []
            for o in opts:
                if o.resp_fn is not None:
                    e = o.resp_fn(resp)
                    if e is not None:
                        errs_resp.append(e)
            if not errs_resp:
                return None
            errs_or.append(join(errs_resp))
        return wrap("response did not match any condition", join(errs_or) or CErr(""))

    return Opt(resp_fn=resp_fn)


def with_flag(flag: str) -> Opt:
    return Opt(flags={flag: True})


def with_method(method: str) -> Opt:
    def fn(r: Req) -> None:
        r.method = method

    return Opt(req_fn=fn)


def with_url(u: str) -> Opt:
    def fn(r: Req) -> None:
        r.url = u

    return Opt(req_fn=fn)


def with_url_param(key: str, val: str) -> Opt:
    def fn(r: Req) -> Optional[CErr]:
        if r.url is None:
            return errorf("URL must be set before adding a parameter")
        r.url = query_add(r.url, key, val)
        return None

    return Opt(req_fn=fn)


def with_content_length(n: int) -> Opt:
    def fn(r: Req) -> None:
        r.content_length = n

    return Opt(req_fn=fn)


def with_header_add(key: str, value: str) -> Opt:
    def fn(r: Req) -> None:
        r.headers.append((key, value))

    return Opt(req_fn=fn)


def with_body(body: bytes) -> Opt:
    def fn(r: Req) -> None:
        r.body = body

    return Opt(req_fn=fn)


def _print_body(b: bytes) -> str:
    if not b:
        return "--- Empty body ---"
    try:
        text = b.decode("utf-8")
        if all(ch.isprintable() or ch in "\r\n\t" for ch in text[:4096]):
            out = text[:4096]
            if len(b) > 4096:
                out += f"\n--- Truncated body from {len(b)} to 4096 bytes ---"
            return out
    except UnicodeDecodeError:
        pass
    return f"--- Output of application/octet-stream not supported, {len(b)} bytes not shown ---"


def expect_body(expected: bytes) -> Opt:
    def fn(resp: Resp) -> Optional[CErr]:
        if (e := resp.read_error()) is not None:
            return wrap("failed to read body", e)
        received = resp.read_all()
        resp.replace_body(received)
        if expected == received:
            return None
        return errorf(f"body contents mismatch, expected {_print_body(expected)}, received {_print_body(received)}")

    return Opt(resp_fn=fn)


def expect_header(key: str, val: str) -> Opt:
    def fn(resp: Resp) -> Optional[CErr]:
        cur = resp.values(key)
        if val == "":
            if not cur:
                return errorf(f"missing header {key!r}")
        elif val not in cur:
            return errorf(f"header value mismatch for {key!r}, expected {val!r}, received {cur!r}")
        return None

    return Opt(resp_fn=fn)


def expect_status(*codes: int) -> Opt:
    def fn(resp: Resp) -> Optional[CErr]:
        if resp.status in codes:
            return None
        return errorf(f"unexpected status code, expected one of {list(codes)}, received {resp.status}")

    return Opt(resp_fn=fn)


def return_header(key: str, ref: Ref) -> Opt:
    def fn(resp: Resp) -> None:
        cur = resp.get(key)
        if cur != "":
            ref.v = cur

    return Opt(resp_fn=fn)


def return_json_body(ref: Ref, decoder: Callable[[Any], Any]) -> Opt:
    """``json.NewDecoder(resp.Body).Decode(data)``; ``decoder`` converts the
    parsed value into the Go struct, raising ValueError on a type mismatch."""

    def fn(resp: Resp) -> Optional[CErr]:
        if (e := resp.read_error()) is not None:
            return e
        raw = resp.read_all()
        text = raw.decode("utf-8", "replace").lstrip(" \t\r\n")
        if not text:
            return errorf("EOF")
        try:
            val, _ = json.JSONDecoder().raw_decode(text)
        except ValueError as e:
            return errorf(f"invalid character in JSON body: {e}")
        try:
            ref.v = decoder(val)
        except (ValueError, TypeError) as e:
            return errorf(f"json: {e}")
        return None

    return Opt(resp_fn=fn)


def return_response(ref: Ref) -> Opt:
    def fn(resp: Resp) -> None:
        ref.v = resp

    return Opt(resp_fn=fn)


def return_status(ref: Ref) -> Opt:
    def fn(resp: Resp) -> None:
        ref.v = resp.status

    return Opt(resp_fn=fn)


def save_output(out: list) -> Opt:
    return Opt(out=out)


# --- JSON decoders (Go structs) --------------------------------------------------------


def decode_descriptor(d: Any) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ValueError("cannot unmarshal into Go struct field of type v1.Descriptor")
    out: dict[str, Any] = {}
    for key in ("mediaType", "digest", "artifactType"):
        v = d.get(key)
        if v is not None and not isinstance(v, str):
            raise ValueError(f"cannot unmarshal {key} into string")
        out[key] = v or ""
    size = d.get("size", 0)
    if size is None:
        size = 0
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValueError("cannot unmarshal size into int64")
    out["size"] = size
    ann = d.get("annotations")
    if ann is not None:
        if not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values()):
            raise ValueError("cannot unmarshal annotations into map[string]string")
    out["annotations"] = ann or {}
    data = d.get("data")
    if data is not None:
        if not isinstance(data, str):
            raise ValueError("cannot unmarshal data into []byte")
        base64.b64decode(data, validate=True)
    return out


def decode_index(v: Any) -> dict[str, Any]:
    """Into ``image.Index``: mediaType, schemaVersion, manifests."""
    if v is None:
        return {"mediaType": "", "schemaVersion": 0, "manifests": []}
    if not isinstance(v, dict):
        raise ValueError("cannot unmarshal into Go value of type v1.Index")
    mt = v.get("mediaType")
    if mt is not None and not isinstance(mt, str):
        raise ValueError("cannot unmarshal mediaType into string")
    sv = v.get("schemaVersion", 0)
    if sv is None:
        sv = 0
    if not isinstance(sv, int) or isinstance(sv, bool):
        raise ValueError("cannot unmarshal schemaVersion into int")
    mans = v.get("manifests")
    if mans is None:
        mans = []
    if not isinstance(mans, list):
        raise ValueError("cannot unmarshal manifests into []v1.Descriptor")
    return {"mediaType": mt or "", "schemaVersion": sv, "manifests": [decode_descriptor(m) for m in mans]}


def decode_tag_list(v: Any) -> dict[str, Any]:
    """Into ``specs.TagList``."""
    if v is None:
        return {"name": "", "tags": []}
    if not isinstance(v, dict):
        raise ValueError("cannot unmarshal into Go value of type v1.TagList")
    name = v.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError("cannot unmarshal name into string")
    tags = v.get("tags")
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("cannot unmarshal tags into []string")
    return {"name": name or "", "tags": tags}


def detect_media_type(body: bytes) -> str:
    """``detectMediaType``: the body's ``mediaType``, default image manifest."""
    try:
        doc = json.loads(body)
    except ValueError:
        return MT_OCI_IMAGE
    if isinstance(doc, dict) and isinstance(doc.get("mediaType"), str):
        return doc["mediaType"]
    return MT_OCI_IMAGE


def detect_subject(body: bytes) -> Optional[dict[str, Any]]:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("subject"), dict):
        return doc["subject"]
    return None


# --- the API -----------------------------------------------------------------------


class API:
    def __init__(self, client: GoHTTPClient) -> None:
        self.client = client

    async def do(self, *opts: Opt) -> Optional[CErr]:
        errs: list[CErr] = []
        req_fns = [o.req_fn for o in opts if o.req_fn is not None]
        resp_fns = [o.resp_fn for o in opts if o.resp_fn is not None]
        out = None
        for o in opts:
            if o.out is not None:
                out = o.out
        req = Req()
        for fn in req_fns:
            e = fn(req)
            if e is not None:
                errs.append(e)
        if errs:
            return one_or_join(errs)
        if req.url is None:
            return errorf("request has no URL")
        if req.body is not None:
            framing = "length" if req.content_length else "chunked"
        else:
            framing = "length"
        try:
            r = await self.client.request(req.method, req.url, req.headers, req.body, framing=framing, out=out)
        except RequestError as e:
            return errorf(str(e))
        resp = Resp(r.status, r.headers, r.body, r.body_error)
        for fn in resp_fns:
            e = fn(resp)
            if e is not None:
                errs.append(e)
        return one_or_join(errs)

    @staticmethod
    def verify_digest(resp: Ref, dig: str, opts: Sequence[Opt]) -> Optional[CErr]:
        flags = get_flags(opts)
        headers = resp.v.headers if isinstance(resp.v, Resp) else []
        dig_header = next((v for k, v in headers if k.lower() == "docker-content-digest"), "")
        if dig_header == "" and flags.get("RequireDigestHeader"):
            return errorf("registry did not return a Docker-Content-Digest header")
        if dig_header != "" and dig != "" and dig_header != dig:
            return errorf(f"Docker-Content-Digest header value expected {dig!r}, received {dig_header!r}")
        return None

    # -- blobs --

    async def blob_delete(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        u = f"{registry}/v2/{repo}/blobs/{dig}"
        status = Ref(0)
        err = await self.do(
            with_method("DELETE"),
            with_url(u),
            expect_status(202, 404, 405),
            return_status(status),
            with_and(opts),
        )
        if err is not None:
            return wrap("blob delete failed", err)
        if status.v == 405:
            return errorf(f"registry returned status {status.v}", UNSUPPORTED)
        return None

    async def blob_get_req(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        u = f"{registry}/v2/{repo}/blobs/{dig}"
        err = await self.do(with_method("GET"), with_url(u), with_and(opts))
        if err is not None:
            return wrap("blob get failed", err)
        return None

    async def blob_get_exists_full(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        resp = Ref()
        opts = (*opts, expect_status(200), return_response(resp))
        val = td.blobs.get(dig)
        if val is not None and (len(val) > 0 or dig == EMPTY_DIGEST):
            opts = (*opts, expect_body(val), expect_header("Content-Length", str(len(val))))
        errs = [await self.blob_get_req(registry, repo, dig, td, *opts), self.verify_digest(resp, dig, opts)]
        return join(errs)

    async def blob_head_req(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        u = f"{registry}/v2/{repo}/blobs/{dig}"
        err = await self.do(with_method("HEAD"), with_url(u), with_and(opts))
        if err is not None:
            return wrap("blob head failed", err)
        return None

    async def blob_head_exists(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        resp = Ref()
        opts = (*opts, expect_status(200), expect_body(b""), return_response(resp))
        val = td.blobs.get(dig)
        if val is not None and (len(val) > 0 or dig == EMPTY_DIGEST):
            opts = (*opts, expect_header("Content-Length", str(len(val))))
        errs = [await self.blob_head_req(registry, repo, dig, td, *opts), self.verify_digest(resp, dig, opts)]
        return join(errs)

    async def blob_mount(self, registry: str, repo: str, source: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        body = td.blobs.get(dig)
        if body is None:
            return errorf(f"BlobPostPut missing expected digest to send: {dig}", ERROR)
        pairs = [("mount", dig)]
        if source != "":
            pairs.append(("from", source))
        u = f"{registry}/v2/{repo}/blobs/uploads/?" + query_encode(pairs)
        errs: list[CErr] = []
        loc = Ref("")
        status = Ref(0)
        resp = Ref()
        err = await self.do(
            with_method("POST"),
            with_url(u),
            expect_status(201, 202),
            return_header("Location", loc),
            return_status(status),
            return_response(resp),
            with_and(opts),
        )
        if err is not None:
            return wrap("blob post failed", err)
        if loc.v == "":
            return errorf("blob post did not return a location")
        if status.v == 202:
            # fallback to post+put
            u = query_set(url_parse_ref(u, loc.v), "digest", dig)
            err = await self.do(
                with_method("PUT"),
                with_url(u),
                with_content_length(len(body)),
                with_header_add("Content-Type", MT_OCTET_STREAM),
                with_body(body),
                expect_status(201),
                return_header("Location", loc),
                return_response(resp),
                with_and(opts),
            )
            if err is not None:
                return wrap("blob put failed", err)
            errs.append(errorf(f"registry returned status {status.v}, fell back to blob POST+PUT", UNSUPPORTED))
        elif status.v != 201:
            return errorf(f"blob mount returned status {status.v}")
        e = self.verify_digest(resp, dig, opts)
        if e is not None:
            return e
        e = await self.blob_verify_location(u, loc.v, body, *opts)
        if e is not None:
            return e
        return join(errs)

    async def blob_patch_chunked(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        flags = get_flags(opts)
        body = td.blobs.get(dig)
        if body is None:
            return errorf(f"BlobPatchChunked missing expected digest to send: {dig}", ERROR)
        u = f"{registry}/v2/{repo}/blobs/uploads/"
        min_str = Ref("")
        loc = Ref("")
        resp = Ref()
        err = await self.do(
            with_method("POST"),
            with_url(u),
            with_content_length(0),
            expect_status(202),
            return_header("OCI-Chunk-Min-Length", min_str),
            return_header("Location", loc),
            with_and(opts),
        )
        if err is not None:
            return wrap("blob post failed", err)
        # calc chunk size to make 3 chunks, adjust to min chunk size if specified
        chunk_size = len(body) // 3 + 1
        if min_str.v != "":
            try:
                mn = int(min_str.v)
            except ValueError as e:
                return errorf(f"parsing OCI-Chunk-Min-Length size {min_str.v!r} failed: {e}")
            if mn > chunk_size:
                chunk_size = mn
        if chunk_size < CHUNK_MIN:
            chunk_size = CHUNK_MIN
        if chunk_size > len(body):
            chunk_size = len(body)
        last_byte = -1
        while last_byte < len(body) - 1:
            if flags.get("OutOfOrderChunks"):
                if loc.v == "":
                    return errorf("blob request did not return a location")
                u = url_parse_ref(u, loc.v)
                # send an out of order chunk, skipping ahead or back to the beginning
                bad_start = last_byte + 1 + chunk_size
                if bad_start >= len(body):
                    bad_start = 0
                bad_last = min(bad_start + chunk_size - 1, len(body) - 1)
                method = "PATCH"
                if flags.get("PutLastChunk") and bad_last == len(body) - 1:
                    method = "PUT"
                    u = query_set(u, "digest", dig)
                err = await self.do(
                    with_method(method),
                    with_url(u),
                    with_content_length(bad_last - bad_start + 1),
                    with_header_add("Content-Type", MT_OCTET_STREAM),
                    with_header_add("Content-Range", f"{bad_start}-{bad_last}"),
                    with_body(body[bad_start : bad_last + 1]),
                    expect_status(416),
                    return_header("Location", loc),
                    with_and(opts),
                )
                if err is not None:
                    return wrap("blob out of order chunk", err)
                # recover with a GET request to find the new location/range
                range_header = Ref("")
                err = await self.do(
                    with_method("GET"),
                    with_url(u),
                    expect_status(204),
                    return_header("Location", loc),
                    return_header("Range", range_header),
                    with_and(opts),
                )
                if err is not None:
                    return wrap("blob chunked upload get request", err)
                rh = range_header.v
                if not rh.startswith("0-"):
                    return errorf(f"content-range header is missing the 0- prefix: {rh!r}")
                rh = rh[2:]
                try:
                    range_last = int(rh)
                except ValueError:
                    return errorf(f"content-range header could not be parsed: {rh!r}")
                if last_byte >= 0 and range_last != last_byte:
                    return errorf(f'content-range unexpected, received {rh!r}, expected "0-{last_byte}"')
            if loc.v == "":
                return errorf("blob request did not return a location")
            u = url_parse_ref(u, loc.v)
            start = last_byte + 1
            last_byte = min(start + chunk_size - 1, len(body) - 1)
            if flags.get("PutLastChunk") and last_byte == len(body) - 1:
                u = query_set(u, "digest", dig)
                chunk_opts = [with_method("PUT"), *opts]
                if flags.get("ExpectBadDigest"):
                    chunk_opts.append(expect_status(400))
                else:
                    chunk_opts += [expect_status(201), return_header("Location", loc), return_response(resp)]
            else:
                chunk_opts = [with_method("PATCH"), expect_status(202), return_header("Location", loc), *opts]
            err = await self.do(
                with_url(u),
                with_content_length(last_byte - start + 1),
                with_header_add("Content-Type", MT_OCTET_STREAM),
                with_header_add("Content-Range", f"{start}-{last_byte}"),
                with_body(body[start : last_byte + 1]),
                with_and(chunk_opts),
            )
            if err is not None:
                return wrap("blob patch failed", err)
        if not flags.get("PutLastChunk"):
            if loc.v == "":
                return errorf("blob patch did not return a location")
            u = query_set(url_parse_ref(u, loc.v), "digest", dig)
            if flags.get("ExpectBadDigest"):
                put_opts = [expect_status(400), *opts]
            else:
                put_opts = [expect_status(201), return_header("Location", loc), return_response(resp), *opts]
            err = await self.do(
                with_method("PUT"),
                with_url(u),
                with_content_length(0),
                with_header_add("Content-Type", MT_OCTET_STREAM),
                with_and(put_opts),
            )
            if err is not None:
                return wrap("blob put failed", err)
        if flags.get("ExpectBadDigest"):
            return None
        e = self.verify_digest(resp, dig, opts)
        if e is not None:
            return e
        return await self.blob_verify_location(u, loc.v, body, *opts)

    async def blob_patch_stream(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        flags = get_flags(opts)
        body = td.blobs.get(dig)
        if body is None:
            return errorf(f"BlobPatchStream missing expected digest to send: {dig}", ERROR)
        u = f"{registry}/v2/{repo}/blobs/uploads/"
        loc = Ref("")
        resp = Ref()
        err = await self.do(
            with_method("POST"),
            with_url(u),
            with_content_length(0),
            expect_status(202),
            return_header("Location", loc),
            with_and(opts),
        )
        if err is not None:
            return wrap("blob post failed", err)
        if loc.v == "":
            return errorf("blob post did not return a location")
        u = url_parse_ref(u, loc.v)
        # no Content-Length: Go sends the body chunked
        err = await self.do(
            with_method("PATCH"),
            with_url(u),
            with_header_add("Content-Type", MT_OCTET_STREAM),
            with_body(body),
            expect_status(202),
            return_header("Location", loc),
            with_and(opts),
        )
        if err is not None:
            return wrap("blob patch failed", err)
        if loc.v == "":
            return errorf("blob patch did not return a location")
        u = query_set(url_parse_ref(u, loc.v), "digest", dig)
        if flags.get("ExpectBadDigest"):
            put_opts = [expect_status(400), *opts]
        else:
            put_opts = [expect_status(201), expect_header("Location", ""), *opts]
        err = await self.do(
            with_method("PUT"),
            with_url(u),
            with_content_length(0),
            with_header_add("Content-Type", MT_OCTET_STREAM),
            return_header("Location", loc),
            return_response(resp),
            with_and(put_opts),
        )
        if err is not None:
            return wrap("blob put failed", err)
        if flags.get("ExpectBadDigest"):
            return None
        e = self.verify_digest(resp, dig, opts)
        if e is not None:
            return e
        return await self.blob_verify_location(u, loc.v, body, *opts)

    async def blob_post_cancel(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        u = f"{registry}/v2/{repo}/blobs/uploads/"
        loc = Ref("")
        err = await self.do(
            with_method("POST"), with_url(u), expect_status(202), return_header("Location", loc), with_and(opts)
        )
        if err is not None:
            return wrap("blob post failed", err)
        if loc.v == "":
            return errorf("blob post did not return a location")
        u = url_parse_ref(u, loc.v)
        err = await self.do(
            with_method("DELETE"), with_url(u), with_content_length(0), expect_status(204), with_and(opts)
        )
        if err is not None:
            return wrap("blob cancel failed", err)
        return None

    async def blob_post_only(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        flags = get_flags(opts)
        body = td.blobs.get(dig)
        if body is None:
            return errorf(f"BlobPostOnly missing expected digest to send: {dig}", ERROR)
        u = f"{registry}/v2/{repo}/blobs/uploads/?" + query_encode([("digest", dig)])
        loc = Ref("")
        resp = Ref()
        status = Ref(0)
        if flags.get("ExpectBadDigest"):
            post_opts = [expect_status(400, 202), *opts]
        else:
            post_opts = [expect_status(201, 202), expect_header("Location", ""), *opts]
        err = await self.do(
            with_method("POST"),
            with_url(u),
            with_content_length(len(body)),
            with_header_add("Content-Type", MT_OCTET_STREAM),
            with_body(body),
            return_status(status),
            return_header("Location", loc),
            return_response(resp),
            with_and(post_opts),
        )
        if err is not None:
            return wrap("blob post failed", err)
        if status.v == 202:
            # fallback to a PUT request, but track the unsupported API
            if flags.get("ExpectBadDigest"):
                put_opts = [expect_status(400), *opts]
            else:
                put_opts = [expect_status(201), return_header("Location", loc), *opts]
            u = query_set(url_parse_ref(u, loc.v), "digest", dig)
            err = await self.do(
                with_method("PUT"),
                with_url(u),
                with_content_length(len(body)),
                with_header_add("Content-Type", MT_OCTET_STREAM),
                with_body(body),
                return_header("Location", loc),
                return_response(resp),
                with_and(put_opts),
            )
            if err is not None:
                return wrap("blob post failed", err)
            return errorf("registry does not support content in the POST, fallback to PUT", UNSUPPORTED)
        if flags.get("ExpectBadDigest"):
            return None
        e = self.verify_digest(resp, dig, opts)
        if e is not None:
            return e
        return await self.blob_verify_location(u, loc.v, body, *opts)

    async def blob_post_put(self, registry: str, repo: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        flags = get_flags(opts)
        body = td.blobs.get(dig)
        if body is None:
            return errorf(f"BlobPostPut missing expected digest to send: {dig}", ERROR)
        u = f"{registry}/v2/{repo}/blobs/uploads/"
        loc = Ref("")
        resp = Ref()
        err = await self.do(
            with_method("POST"), with_url(u), expect_status(202), return_header("Location", loc), with_and(opts)
        )
        if err is not None:
            return wrap("blob post failed", err)
        if loc.v == "":
            return errorf("blob post did not return a location")
        u = query_set(url_parse_ref(u, loc.v), "digest", dig)
        if flags.get("ExpectBadDigest"):
            put_opts = [expect_status(400), *opts]
        else:
            put_opts = [expect_status(201), return_header("Location", loc), return_response(resp), *opts]
        err = await self.do(
            with_method("PUT"),
            with_url(u),
            with_content_length(len(body)),
            with_header_add("Content-Type", MT_OCTET_STREAM),
            with_body(body),
            with_and(put_opts),
        )
        if err is not None:
            return wrap("blob put failed", err)
        if flags.get("ExpectBadDigest"):
            return None
        e = self.verify_digest(resp, dig, opts)
        if e is not None:
            return e
        return await self.blob_verify_location(u, loc.v, body, *opts)

    async def blob_verify_location(self, u: str, loc: str, body: bytes, *opts: Opt) -> Optional[CErr]:
        if loc == "":
            return errorf("location header missing")
        target = url_parse_ref(u, loc)
        err = await self.do(
            with_method("GET"), with_url(target), expect_body(body), expect_status(200), with_and(opts)
        )
        if err is not None:
            return wrap("failed to verify returned location", err)
        return None

    # -- manifests --

    async def manifest_delete(self, registry: str, repo: str, ref: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        u = f"{registry}/v2/{repo}/manifests/{ref}"
        status = Ref(0)
        err = await self.do(
            with_method("DELETE"),
            with_url(u),
            expect_status(202, 404, 400, 405),
            return_status(status),
            with_and(opts),
        )
        if err is not None:
            return wrap("manifest delete failed", err)
        if status.v in (400, 405):
            return errorf(f"registry returned status {status.v}", UNSUPPORTED)
        return None

    async def manifest_get_req(self, registry: str, repo: str, ref: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        u = f"{registry}/v2/{repo}/manifests/{ref}"
        err = await self.do(
            with_method("GET"),
            with_url(u),
            with_header_add("Accept", MT_OCI_INDEX),
            with_header_add("Accept", MT_OCI_IMAGE),
            with_and(opts),
        )
        if err is not None:
            return wrap("manifest get failed", err)
        return None

    async def manifest_get_exists(self, registry: str, repo: str, ref: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        opts = (*opts, expect_status(200))
        resp = Ref()
        val = td.manifests.get(dig)
        if val:
            mt = detect_media_type(val)
            opts = (
                *opts,
                expect_body(val),
                expect_header("Content-Type", mt),
                expect_header("Content-Length", str(len(val))),
                return_response(resp),
            )
        errs = [await self.manifest_get_req(registry, repo, ref, dig, td, *opts), self.verify_digest(resp, dig, opts)]
        return join(errs)

    async def manifest_head_req(self, registry: str, repo: str, ref: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        u = f"{registry}/v2/{repo}/manifests/{ref}"
        err = await self.do(
            with_method("HEAD"),
            with_url(u),
            with_header_add("Accept", MT_OCI_INDEX),
            with_header_add("Accept", MT_OCI_IMAGE),
            with_and(opts),
        )
        if err is not None:
            return wrap("manifest head failed", err)
        return None

    async def manifest_head_exists(self, registry: str, repo: str, ref: str, dig: str, td: Any, *opts: Opt) -> Optional[CErr]:
        opts = (*opts, expect_status(200), expect_body(b""))
        resp = Ref()
        val = td.manifests.get(dig)
        if val:
            mt = detect_media_type(val)
            opts = (
                *opts,
                expect_header("Content-Type", mt),
                expect_header("Content-Length", str(len(val))),
                return_response(resp),
            )
        errs = [await self.manifest_head_req(registry, repo, ref, dig, td, *opts), self.verify_digest(resp, dig, opts)]
        return join(errs)

    async def manifest_put(
        self,
        registry: str,
        repo: str,
        ref: str,
        dig: str,
        td: Any,
        referrers_enabled: bool,
        put_opts: Sequence[Opt] | None,
        *opts: Opt,
    ) -> Optional[CErr]:
        flags = get_flags(opts)
        body = td.manifests.get(dig)
        if body is None:
            return errorf(f"ManifestPut missing expected digest to send: {dig}", ERROR)
        u = f"{registry}/v2/{repo}/manifests/{ref}"
        mt = detect_media_type(body)
        resp = Ref()
        loc = Ref("")
        popts = [*(put_opts or []), *opts]
        if flags.get("ExpectBadDigest"):
            popts = [expect_status(400), *popts]
        else:
            popts = [expect_status(201), return_header("Location", loc), *popts]
        if referrers_enabled:
            subj = detect_subject(td.manifests[dig])
            if subj is not None:
                popts.append(expect_header("OCI-Subject", str(subj.get("digest", ""))))
        errs: list[Optional[CErr]] = []
        # no Content-Length: Go sends the manifest chunked
        err = await self.do(
            with_method("PUT"),
            with_url(u),
            with_body(body),
            with_header_add("Content-Type", mt),
            return_response(resp),
            with_and(popts),
        )
        if err is not None:
            errs.append(wrap("manifest put failed", err))
        if flags.get("ExpectBadDigest"):
            return join(errs)
        headers = resp.v.headers if isinstance(resp.v, Resp) else []
        dig_header = next((v for k, v in headers if k.lower() == "docker-content-digest"), "")
        if dig_header == "" and flags.get("RequestDigestHeader"):  # sic: never set upstream
            errs.append(errorf("registry did not return a Docker-Content-Digest header"))
        if dig_header != "" and dig_header != dig:
            errs.append(errorf(f"Docker-Content-Digest header value expected {dig!r}, received {dig_header!r}"))
        if loc.v == "":
            errs.append(errorf("blob put did not return a location"))
        else:
            target = url_parse_ref(u, loc.v)
            err = await self.do(
                with_method("GET"),
                with_url(target),
                with_header_add("Accept", MT_OCI_INDEX),
                with_header_add("Accept", MT_OCI_IMAGE),
                expect_status(200),
                expect_header("Content-Type", mt),
                expect_header("Content-Length", str(len(body))),
                expect_body(body),
                with_and(opts),
            )
            if err is not None:
                errs.append(wrap("failed to verify returned location", err))
        return join(errs)

    async def ping_req(self, registry: str, *opts: Opt) -> Optional[CErr]:
        err = await self.do(with_method("GET"), with_url(f"{registry}/v2/"), with_and(opts))
        if err is not None:
            return wrap("registry ping failed", err)
        return None

    async def referrers_list(self, registry: str, repo: str, dig: str, *opts: Opt) -> tuple[dict[str, Any], Optional[CErr]]:
        rl = Ref({"mediaType": "", "schemaVersion": 0, "manifests": []})
        u = f"{registry}/v2/{repo}/referrers/{dig}"
        err = await self.do(
            with_url(u),
            expect_header("Content-Type", MT_OCI_INDEX),
            expect_status(200),
            return_json_body(rl, decode_index),
            with_and(opts),
        )
        if err is None and (rl.v["mediaType"] != MT_OCI_INDEX or rl.v["schemaVersion"] != 2):
            err = errorf("referrers response is not a valid OCI index (media type and schema version)", FAIL)
        return rl.v, err

    async def tag_list(self, registry: str, repo: str, *opts: Opt) -> tuple[dict[str, Any], Optional[CErr]]:
        tl = Ref({"name": "", "tags": []})
        u = f"{registry}/v2/{repo}/tags/list"
        err = await self.do(
            with_url(u),
            with_or([expect_status(200), return_json_body(tl, decode_tag_list)], [expect_status(404)]),
            with_and(opts),
        )
        return tl.v, err
