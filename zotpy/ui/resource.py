"""Serves the web UI: ``/`` (the page) and ``/ui/<asset>`` (its script and style), nothing else.

Why a static page with a small script rather than server-rendered templates: the page then uses the
search API exactly as any client does (the same GraphQL, the same access control, through any
replica: the search resource asks the owners), the server keeps no second rendering of the same
data, and the three files ship in the package with nothing fetched at run time and no build step.
The browser's Basic credentials (asked for by the access layer's 401 on ``/``) go with every
``fetch`` to the API, so a user sees only what they may read.

The script builds the page with DOM calls and ``textContent`` only (names, tags and annotations are
whatever a pusher wrote), and the Content-Security-Policy allows nothing but this origin's script
and style: no inline script, no other origin.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from zotpy.api.responses import reply, reply_json

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
ASSETS = {
    b"/": ("index.html", "text/html; charset=utf-8"),
    b"/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    b"/ui/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _load() -> dict[bytes, tuple[bytes, str]]:
    """The assets, read once at start (a few KB): a missing file fails the start, not a request."""
    loaded = {}
    for path, (name, content_type) in ASSETS.items():
        with open(os.path.join(STATIC, name), "rb") as stream:
            loaded[path] = (stream.read(), content_type)
    return loaded


@implementer(IResource)
@attrs.define(eq=False)
class UIResource:
    """Serves the UI's paths; every other request goes to ``local`` unchanged."""

    local: IResource
    assets: dict[bytes, tuple[bytes, str]] = attrs.field(factory=_load)
    isLeaf = True

    def render(self, request: IRequest) -> Any:
        asset = self.assets.get(request.path)
        if asset is None:
            return self.local.render(request)
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader("Allow", "GET, HEAD")
            return reply_json(request, 405, {"errors": [{"code": "UNSUPPORTED", "message": "the UI is read-only"}]})
        body, content_type = asset
        return reply(request, 200, body, {"Content-Type": content_type, "Cache-Control": "no-cache", **SECURITY_HEADERS})

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("UIResource is a leaf")
