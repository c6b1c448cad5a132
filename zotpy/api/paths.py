"""Request paths whose percent-escapes are not UTF-8, read the way the route table reads them.

twisted.web percent-decodes each path segment into bytes; Klein then decodes them as UTF-8 and,
when that fails, answers a plain-text 400 and logs a traceback per request. zotpy reads such a path
with each undecodable byte as U+FFFD instead (:func:`zotpy.api.routes.match` does the same), a
character no name, tag, digest or session id may hold: the handlers then refuse it with the spec's
error for that part of the path (``NAME_INVALID``, ``DIGEST_INVALID``...), and the access layer and
the cluster see the same repository the API does.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer


def _readable(segment: bytes) -> bytes:
    try:
        segment.decode("utf-8")
    except UnicodeDecodeError:
        return segment.decode("utf-8", "replace").encode("utf-8")
    return segment


@implementer(IResource)
class ReadablePaths:
    """Hands ``wrapped`` (the Klein app) every request with a path it can decode."""

    isLeaf = True

    def __init__(self, wrapped: IResource) -> None:
        self.wrapped = wrapped

    def render(self, request: IRequest) -> Any:
        request.postpath = [_readable(segment) for segment in request.postpath]  # type: ignore[attr-defined]
        return self.wrapped.render(request)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("ReadablePaths is a leaf")
