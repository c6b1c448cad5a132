"""Which access-control action each registry route needs, as zot maps them.

zot decides by method: GET and HEAD read, POST/PUT/PATCH create, DELETE deletes; a manifest PUT
over a tag that already exists (other than ``latest``) is an update; a cross-repository mount
(``POST .../blobs/uploads/?mount=D&from=R``) also needs read on ``R``. ``/v2/`` needs only
authentication and the catalog is filtered instead of refused.

Kept in this one module so it can be switched to the API's route table once that exists.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import attrs

from zotpy.oci.digest import is_digest_reference
from zotpy.oci.errors import RegistryError
from zotpy.oci.names import validate_name

BASE = "base"
CATALOG = "catalog"
REPOSITORY = "repository"
OTHER = "other"

_ROUTES = [
    re.compile(r"/v2/(?P<name>.+)/tags/list"),
    re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)"),
    re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?:[^/]+)?"),
    re.compile(r"/v2/(?P<name>.+)/blobs/[^/]+"),
    re.compile(r"/v2/(?P<name>.+)/referrers/[^/]+"),
]
_BY_METHOD = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "create", "PATCH": "create", "DELETE": "delete"}


@attrs.frozen
class Need:
    """What a request needs. ``kind`` is one of :data:`BASE`, :data:`CATALOG`, :data:`REPOSITORY`
    (then ``repository`` and ``action`` are set) or :data:`OTHER` (authentication only: the API
    answers 404 or 405). ``tag`` is set for a manifest PUT by tag that is an update when the tag
    exists; ``mount_from`` for a mount, which also needs read there."""

    kind: str
    repository: str = ""
    action: str = ""
    tag: str | None = None
    mount_from: str | None = None


def need(method: bytes, path: bytes, args: dict[bytes, list[bytes]]) -> Need:
    """What ``method path`` needs. The path is percent-decoded first, as the API's router decodes it:
    ``/v2/team%2Fapp/tags/list`` is served as ``team/app`` and must be authorized as ``team/app``."""
    try:
        text, verb = unquote_to_bytes(path).decode("utf-8"), method.decode("ascii")
    except UnicodeDecodeError:
        return Need(OTHER)
    if text in ("/v2/", "/v2"):
        return Need(BASE)
    if text == "/v2/_catalog":
        return Need(CATALOG)
    action = _BY_METHOD.get(verb)
    if action is None:
        return Need(OTHER)
    for pattern in _ROUTES:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        try:
            repository = validate_name(match.group("name"))
        except RegistryError:
            return Need(OTHER)
        reference = match.groupdict().get("reference")
        tag = None
        if verb == "PUT" and reference is not None and not is_digest_reference(reference) and reference != "latest":
            tag = reference
        mount_from = None
        if verb == "POST" and args.get(b"mount") and args.get(b"from"):
            try:
                mount_from = validate_name(args[b"from"][0].decode("utf-8"))
            except (UnicodeDecodeError, RegistryError):
                mount_from = None  # the API refuses or ignores a bad source; nothing to read there
        return Need(REPOSITORY, repository, action, tag, mount_from)
    return Need(OTHER)


#: The Docker token actions of zot's access-control actions.
_TOKEN_ACTIONS = {"read": "pull", "create": "push", "update": "push", "delete": "delete"}


def token_scopes(need: Need) -> list[tuple[str, str, str]]:
    """What a bearer token must grant for ``need``, as ``(type, name, action)``."""
    if need.kind == CATALOG:
        return [("registry", "catalog", "*")]
    if need.kind != REPOSITORY:
        return []
    scopes = [("repository", need.repository, _TOKEN_ACTIONS[need.action])]
    if need.mount_from is not None:
        scopes.append(("repository", need.mount_from, "pull"))
    return scopes


def scope_text(need: Need) -> str | None:
    """The challenge's ``scope`` for ``need``: ``repository:NAME:pull,push`` for writes (a client
    pushing also pulls), several scopes separated by spaces; None when nothing is needed."""
    texts = []
    for kind, name, action in token_scopes(need):
        if action == "push":
            action = "pull,push"
        texts.append(f"{kind}:{name}:{action}")
    return " ".join(texts) or None
