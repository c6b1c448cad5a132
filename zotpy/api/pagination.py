"""``n``/``last`` pagination shared by the tags list and the catalog."""

from __future__ import annotations

import bisect
from urllib.parse import urlencode

from zotpy.oci.errors import RegistryError


def parse_page_size(values: list[bytes] | None) -> int | None:
    """``n`` must be a non-negative integer when present."""
    if not values:
        return None
    text = values[0].decode("utf-8", "replace")
    if not text.isdigit():
        raise RegistryError(
            "PAGINATION_NUMBER_INVALID", "n must be a non-negative integer", detail={"n": text[:50]}
        )
    return int(text)


def paginate(items: list[str], n: int | None, last: str | None) -> tuple[list[str], bool]:
    """The sorted ``items`` after ``last``, at most ``n`` of them, and whether more remain."""
    start = bisect.bisect_right(items, last) if last is not None else 0
    remaining = items[start:]
    if n is None:
        return remaining, False
    return remaining[:n], len(remaining) > n


def next_link(path: str, n: int, last: str) -> str:
    """The RFC 5988 ``Link`` header value pointing at the next page."""
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'
