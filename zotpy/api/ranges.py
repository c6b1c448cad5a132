"""Byte ranges: ``Range`` on blob GET and ``Content-Range`` on upload chunks."""

from __future__ import annotations

import re

from zotpy.oci.errors import RegistryError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a ``Range: bytes=...`` header asks for; None for the whole blob.

    Suffix ranges (``bytes=-500``) and open ranges (``bytes=100-``) are honoured; several
    ranges, malformed headers and ranges past the end are refused with 416.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise _unsatisfiable(header, size)
    first_text, last_text = match.groups()
    if first_text == "":
        length = int(last_text)
        if length == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(size - length, 0), size - 1
    first = int(first_text)
    last = size - 1 if last_text == "" else min(int(last_text), size - 1)
    if first >= size or (last_text != "" and int(last_text) < first):
        raise _unsatisfiable(header, size)
    return first, last


def parse_content_range(header: str | None, body_length: int | None) -> int | None:
    """The start offset of an upload chunk, checked against the body (when its length is known
    already); None when no header was sent."""
    if header is None:
        return None
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise RegistryError(
            "BLOB_UPLOAD_INVALID", "malformed Content-Range", detail={"Content-Range": header[:100]}, status=416
        )
    first, last = int(match.group(1)), int(match.group(2))
    if last < first or (body_length is not None and last - first + 1 != body_length):
        raise RegistryError(
            "BLOB_UPLOAD_INVALID",
            "Content-Range does not match the body's length",
            detail={"Content-Range": header[:100], "bodyLength": body_length},
            status=416,
        )
    return first


def _unsatisfiable(header: str, size: int) -> RegistryError:
    return RegistryError(
        "RANGE_INVALID",
        detail={"Range": header[:100], "size": size},
        headers={"Content-Range": f"bytes */{size}"},
    )
