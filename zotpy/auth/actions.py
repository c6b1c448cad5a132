"""Which access-control action each registry route needs, as zot maps them.

The route, the repository and the reference come from the API's route table
(:mod:`zotpy.api.routes`), the one place the URL grammar lives, so access control authorizes exactly
the name the API will serve (``/v2/team%2Fapp/...`` is ``team/app``). zot decides the action by
method: reads (the table's read and listing kinds, and GET/HEAD of an upload) need ``read``;
POST/PUT/PATCH ``create``; DELETE ``delete``. A manifest PUT over a tag that already exists (other
than ``latest``) is an update; a cross-repository mount (``POST .../blobs/uploads/?mount=D&from=R``)
also needs read on ``R``. ``/v2/`` needs only authentication and the catalog is filtered instead of
refused. A request with no route or no valid name needs only authentication: the API answers 400
or 404 without touching a repository.
"""

from __future__ import annotations

from typing import Callable

import attrs

from zotpy.api import routes
from zotpy.oci.digest import is_digest_reference
from zotpy.oci.errors import RegistryError
from zotpy.oci.names import validate_name

BASE = "base"
CATALOG = "catalog"
#: zot's search API (``/v2/_zot/ext/search``): like the catalog, filtered to readable repositories.
SEARCH = "search"
REPOSITORY = "repository"
OTHER = "other"

_READ_KINDS = frozenset({routes.READ_BY_DIGEST, routes.READ_BY_TAG, routes.LISTING})
#: zot's action by method (what a route that is not a read needs).
_BY_METHOD = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "create", "PATCH": "create", "DELETE": "delete"}


@attrs.frozen
class Need:
    """What a request needs. ``kind`` is one of :data:`BASE`, :data:`CATALOG`, :data:`REPOSITORY`
    (then ``repository`` and ``action`` are set) or :data:`OTHER` (authentication only: the API
    answers 400 or 404). ``tag`` is set for a manifest PUT by tag that is an update when the
    tag exists; ``mount_from`` for a mount, which also needs read there."""

    kind: str
    repository: str = ""
    action: str = ""
    tag: str | None = None
    mount_from: str | None = None


def action(kind: str | None, method: str) -> str | None:
    """zot's action for a repository route of ``kind`` (:mod:`zotpy.api.routes`) requested with
    ``method``: ``read`` for the read and listing kinds, otherwise by method, as zot decides. A
    method the route does not serve (``kind`` None) still needs its method's action: the API answers
    405, and access control does not depend on the two grammars agreeing on that."""
    if kind in _READ_KINDS:
        return "read"
    return _BY_METHOD.get(method)


def need(found: routes.Match | None, args: dict[bytes, list[bytes]]) -> Need:
    """What a request that matched ``found`` (:func:`zotpy.api.routes.match_request`) needs;
    ``args`` is its query."""
    if found is None:
        return Need(OTHER)
    if found.route is routes.BASE_ROUTE:
        return Need(BASE)
    if found.route is routes.CATALOG:
        return Need(CATALOG)
    if found.route is routes.SEARCH:
        return Need(SEARCH)
    needed = action(found.kind, found.method)
    if found.repository is None or needed is None:
        return Need(OTHER)
    tag = None
    if found.route is routes.MANIFEST and found.method == "PUT":
        reference = found.params["reference"]
        if not is_digest_reference(reference) and reference != "latest":
            tag = reference
    mount_from = None
    if found.route is routes.UPLOAD_START and args.get(b"mount") and args.get(b"from"):
        try:
            mount_from = validate_name(args[b"from"][0].decode("utf-8"))
        except (UnicodeDecodeError, RegistryError):
            mount_from = None  # the API refuses or ignores a bad source; nothing to read there
    return Need(REPOSITORY, found.repository, needed, tag, mount_from)


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


def token_reader(grants: frozenset[tuple[str, str, str]]) -> Callable[[str], bool]:
    """Which repositories a bearer token lets its holder read (pull), for the search API's filter."""
    return lambda name: ("repository", name, "pull") in grants or ("repository", name, "*") in grants
