"""The distribution API's URL grammar, once: every route with its pattern, methods and kind.

The Klein app (:mod:`zotpy.api.registry`) registers its handlers on these patterns; the cluster's
test for what belongs to a repository's owner, the site's early manifest size limit, the choice of
upload bodies that are streamed, the access log, the metrics and access control all ask
:func:`match` instead of keeping their own copies of the grammar. A request is matched once: the
answer is kept on the request (:func:`match_request`).

The kind of a request says what it does to a repository, for whoever maps routes to something
else (access-control actions, the fast read path, metrics): :data:`READ_BY_DIGEST`,
:data:`READ_BY_TAG`, :data:`WRITE`, :data:`UPLOAD`, :data:`LISTING`, or :data:`BASE` for ``/v2/``.
"""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import unquote_to_bytes

import attrs

from zotpy.oci.digest import is_digest_reference
from zotpy.oci.errors import RegistryError
from zotpy.oci.names import validate_name

BASE = "base"
LISTING = "listing"
READ_BY_DIGEST = "read-by-digest"
READ_BY_TAG = "read-by-tag"
WRITE = "write"
UPLOAD = "upload"

#: A method whose kind depends on the reference: a manifest read by digest or by tag.
_BY_REFERENCE = "by-reference"

_PARAMETER = re.compile(r"<(?:(?P<converter>path):)?(?P<name>\w+)>")


def _regex(pattern: str) -> re.Pattern[str]:
    """Klein's (werkzeug's) pattern as a regular expression: ``<path:x>`` takes slashes, ``<x>`` not."""
    parts, end = [], 0
    for parameter in _PARAMETER.finditer(pattern):
        parts.append(re.escape(pattern[end : parameter.start()]))
        body = ".+" if parameter.group("converter") == "path" else "[^/]+"
        parts.append(f"(?P<{parameter.group('name')}>{body})")
        end = parameter.end()
    parts.append(re.escape(pattern[end:]))
    return re.compile("".join(parts))


@attrs.frozen(eq=False)  # each route is one object: compared and hashed by identity
class Route:
    """One route of the API. ``pattern`` is Klein's; ``kinds`` maps each method the API serves to
    its kind; ``forwarded`` lists the methods a cluster member relays to the repository's owner
    (exactly zot's list, 17 method/route pairs)."""

    name: str
    pattern: str
    kinds: Mapping[str, str]
    forwarded: frozenset[str] = frozenset()
    regex: re.Pattern[str] = attrs.field(init=False)

    @regex.default
    def _compile(self) -> re.Pattern[str]:
        return _regex(self.pattern)

    @property
    def methods(self) -> list[str]:
        return list(self.kinds)


def _route(name: str, pattern: str, kinds: Mapping[str, str], forwarded: str = "") -> Route:
    return Route(name, pattern, kinds, frozenset(forwarded.split()))


# HEAD is served wherever GET is (werkzeug adds it), but zot forwards it on manifests and blobs only.
BASE_ROUTE = _route("base", "/v2/", {"GET": BASE, "HEAD": BASE})
CATALOG = _route("catalog", "/v2/_catalog", {"GET": LISTING, "HEAD": LISTING})
TAGS = _route("tags", "/v2/<path:name>/tags/list", {"GET": LISTING, "HEAD": LISTING}, "GET OPTIONS")
MANIFEST = _route(
    "manifest", "/v2/<path:name>/manifests/<reference>",
    {"GET": _BY_REFERENCE, "HEAD": _BY_REFERENCE, "PUT": WRITE, "DELETE": WRITE}, "HEAD GET PUT DELETE OPTIONS",
)
UPLOAD_START = _route("upload-start", "/v2/<path:name>/blobs/uploads/", {"POST": UPLOAD}, "POST")
UPLOAD_SESSION = _route(
    "upload", "/v2/<path:name>/blobs/uploads/<session>",
    {"GET": UPLOAD, "HEAD": UPLOAD, "PATCH": UPLOAD, "PUT": UPLOAD, "DELETE": UPLOAD}, "GET PATCH PUT DELETE",
)
BLOB = _route(
    "blob", "/v2/<path:name>/blobs/<digest>", {"GET": READ_BY_DIGEST, "HEAD": READ_BY_DIGEST, "DELETE": WRITE},
    "HEAD GET DELETE",
)
REFERRERS = _route("referrers", "/v2/<path:name>/referrers/<digest>", {"GET": LISTING, "HEAD": LISTING}, "GET OPTIONS")

#: In the order they are tried: the upload routes before the blob route they would otherwise match.
ROUTES = (BASE_ROUTE, CATALOG, TAGS, MANIFEST, UPLOAD_START, UPLOAD_SESSION, BLOB, REFERRERS)

#: Routes an extension serves in front of the Klein app (not in :data:`ROUTES`, the app's table):
#: zot's search API (:mod:`zotpy.search`), read-only, filtered to what the caller may read.
SEARCH = _route("search", "/v2/_zot/ext/search", {"GET": LISTING, "POST": LISTING})
EXTENSION_ROUTES = (SEARCH,)

#: The routes whose upload bodies may be streamed (:mod:`zotpy.api.streaming`).
UPLOAD_ROUTES = frozenset({UPLOAD_START, UPLOAD_SESSION})


@attrs.frozen
class Match:
    """What a request's method and path are: the route, the repository (a valid name, or None for
    routes without one and names outside the grammar), the other parameters, and the kind (None
    for a method the route does not serve)."""

    route: Route
    method: str
    repository: str | None
    params: Mapping[str, str]
    kind: str | None

    @property
    def forwarded(self) -> bool:
        """Whether the repository's owner must serve it (never for an invalid name: refused locally)."""
        return self.repository is not None and self.method in self.route.forwarded


def match(method: bytes | str, path: bytes | str) -> Match | None:
    """The route ``method path`` (``path`` as on the request line, without its query) falls on;
    None for no route.

    The path is percent-decoded first, exactly as the Klein app sees it (twisted.web unquotes each
    segment; werkzeug does not unquote again): ``/v2/team%2Fapp/tags/list`` is served as
    ``team/app``, so its owner, its access-control action and its metrics must be ``team/app``'s
    too, or a cluster would serve it on the wrong replica. Bytes that are not UTF-8 read as U+FFFD,
    as the app reads them too (:mod:`zotpy.api.paths`)."""
    try:
        text = unquote_to_bytes(path).decode("utf-8", "replace")  # as the app reads it (zotpy.api.paths)
        verb = method.decode("ascii") if isinstance(method, bytes) else method
    except UnicodeDecodeError:
        return None
    for route in ROUTES + EXTENSION_ROUTES:
        found = route.regex.fullmatch(text)
        if found is None:
            continue
        params = found.groupdict()
        repository = params.pop("name", None)
        if repository is not None:
            try:
                validate_name(repository)
            except RegistryError:
                repository = None
        kind = route.kinds.get(verb)
        if kind == _BY_REFERENCE:
            kind = READ_BY_DIGEST if is_digest_reference(params["reference"]) else READ_BY_TAG
        return Match(route, verb, repository, params, kind)
    return None


def match_request(request: object) -> Match | None:
    """:func:`match` for a request's method and path, worked out once per request: kept in its
    ``route_match`` (declared by :class:`~zotpy.api.site.RegistryRequest`; other requests, as in
    unit tests, are matched each time)."""
    cached = getattr(request, "route_match", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    found = match(request.method, request.path)  # type: ignore[attr-defined]
    if hasattr(request, "route_match"):
        request.route_match = found  # type: ignore[attr-defined]
    return found
