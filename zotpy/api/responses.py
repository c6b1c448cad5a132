"""Writing replies: JSON documents, empty replies with headers, and OCI error documents."""

from __future__ import annotations

import json
from typing import Any, Mapping

from twisted.web.iweb import IRequest

from zotpy.oci.errors import RegistryError

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")


def set_headers(request: IRequest, headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        request.setHeader(name, value)


def reply(request: IRequest, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> bytes:
    """Set status, headers and an explicit Content-Length; HEAD gets the length and no body."""
    request.setResponseCode(status)
    set_headers(request, headers or {})
    request.setHeader("Content-Length", str(len(body)))
    return b"" if request.method == b"HEAD" else body


def reply_json(request: IRequest, status: int, document: Any, headers: Mapping[str, str] | None = None) -> bytes:
    request.setHeader("Content-Type", "application/json")
    return reply(request, status, json.dumps(document).encode(), headers)


def reply_error(request: IRequest, error: RegistryError) -> bytes:
    """The spec's error document; HEAD replies carry the status and headers alone."""
    request.setHeader("Content-Type", "application/json")
    return reply(request, error.status, json.dumps(error.body()).encode(), error.headers)
