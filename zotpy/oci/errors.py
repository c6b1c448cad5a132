"""The OCI Distribution error vocabulary.

Every failure a client can see is a :class:`RegistryError` carrying one of the
spec's codes; the HTTP layer renders it as ``{"errors": [...]}`` JSON. Raising
it from any layer (storage included) is how a clean 4xx/5xx replaces a
traceback.
"""

from __future__ import annotations

from typing import Any

import attrs

# code -> (HTTP status, default message), from the distribution spec's table.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    # distribution's, for a malformed ``n``:
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    # zotpy's own, for failures the spec has no code for:
    "RANGE_INVALID": (416, "requested range not satisfiable"),
    "UNAVAILABLE": (503, "service unavailable"),
    "UNKNOWN": (500, "internal error"),
}


@attrs.define(eq=False)
class RegistryError(Exception):
    """A failure with an OCI error code, an HTTP status and an optional detail."""

    code: str
    message: str = ""
    detail: Any = None
    status: int = 0
    headers: dict[str, str] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        default_status, default_message = ERROR_CODES[self.code]
        if not self.status:
            self.status = default_status
        if not self.message:
            self.message = default_message
        super().__init__(self.code, self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (f" ({self.detail!r})" if self.detail is not None else "")

    def body(self) -> dict[str, Any]:
        """The spec's error document for this failure."""
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}
