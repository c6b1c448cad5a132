"""Which requests carry a repository name, and so belong to the repository's owner.

Exactly zot's forwarded routes (17 method/route pairs, :data:`zotpy.api.routes.ROUTES`' forwarded
methods); everything else, ``/v2/``, the catalog, health and metrics, is answered by whichever
member receives it. A name outside the OCI grammar is never forwarded: the local API refuses it.
"""

from __future__ import annotations

from zotpy.api.routes import match, match_request


def forwarded_repository(method: bytes, path: bytes) -> str | None:
    """The repository whose owner must serve ``method path``; None when any member may answer."""
    found = match(method, path)
    return found.repository if found is not None and found.forwarded else None


def request_repository(request: object) -> str | None:
    """:func:`forwarded_repository` of a request, matched once per request."""
    found = match_request(request)
    return found.repository if found is not None and found.forwarded else None
