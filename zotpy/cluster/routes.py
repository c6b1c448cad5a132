"""Which requests carry a repository name, and so belong to the repository's owner.

Exactly zot's forwarded routes (17 method/route pairs); everything else, ``/v2/``,
the catalog, health and metrics, is answered by whichever member receives it.
A name outside the OCI grammar is never forwarded: the local API refuses it.
"""

from __future__ import annotations

import re

from zotpy.oci.errors import RegistryError
from zotpy.oci.names import validate_name

_FORWARDED: list[tuple[re.Pattern[str], frozenset[str]]] = [
    (re.compile(r"/v2/(?P<name>.+)/tags/list"), frozenset({"GET", "OPTIONS"})),
    (re.compile(r"/v2/(?P<name>.+)/manifests/[^/]+"), frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS"})),
    (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/"), frozenset({"POST"})),
    (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/[^/]+"), frozenset({"GET", "PATCH", "PUT", "DELETE"})),
    (re.compile(r"/v2/(?P<name>.+)/blobs/[^/]+"), frozenset({"HEAD", "GET", "DELETE"})),
    (re.compile(r"/v2/(?P<name>.+)/referrers/[^/]+"), frozenset({"GET", "OPTIONS"})),
]


def forwarded_repository(method: bytes, path: bytes) -> str | None:
    """The repository whose owner must serve ``method path``; None when any member may answer."""
    try:
        text, verb = path.decode("ascii"), method.decode("ascii")
    except UnicodeDecodeError:
        return None
    for pattern, methods in _FORWARDED:
        match = pattern.fullmatch(text)
        if match is not None:
            if verb not in methods:
                return None
            try:
                return validate_name(match.group("name"))
            except RegistryError:
                return None
    return None
