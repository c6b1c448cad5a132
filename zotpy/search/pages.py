"""zot's ``PageInput``: sorting and cutting a result list, the same way on one member and across many.

Every list the search API returns is sorted by a total order (the criterion, then the name, then
the tag), so a member's first ``offset + limit`` items hold every item of the cluster-wide page
that member contributes: the receiving member asks each for that many, merges, sorts once more
and cuts, and the page is exactly the page one registry holding everything would return.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import attrs

RELEVANCE = "RELEVANCE"
UPDATE_TIME = "UPDATE_TIME"
ALPHABETIC_ASC = "ALPHABETIC_ASC"
ALPHABETIC_DSC = "ALPHABETIC_DSC"
STARS = "STARS"
DOWNLOADS = "DOWNLOADS"

Item = dict[str, Any]


class PageError(ValueError):
    """A page zot refuses (a negative limit or offset); its text is the GraphQL error's message."""


@attrs.frozen
class Page:
    """``limit`` 0 means every item (zot: an absent or zero limit does not paginate)."""

    offset: int = 0
    limit: int = 0
    sort_by: str = RELEVANCE

    @classmethod
    def parse(cls, value: dict[str, Any] | None, default_sort: str) -> Page:
        value = value or {}
        offset, limit = value.get("offset") or 0, value.get("limit") or 0
        if limit < 0:
            raise PageError("pagination: limit must be a non-negative integer")
        if offset < 0:
            raise PageError("pagination: offset must be a non-negative integer")
        return cls(offset, limit, value.get("sortBy") or default_sort)

    def widened(self) -> Page:
        """What to ask each member for: the first ``offset + limit`` items in the same order."""
        return Page(0, 0 if self.limit == 0 else self.offset + self.limit, self.sort_by)

    def to_input(self) -> dict[str, Any]:
        return {"offset": self.offset, "limit": self.limit, "sortBy": self.sort_by}

    def cut(self, items: list[Item]) -> list[Item]:
        end = None if self.limit == 0 else self.offset + self.limit
        return items[self.offset : end]


def repo_name(item: Item) -> tuple[str, ...]:
    return (item.get("Name") or "",)


def image_name(item: Item) -> tuple[str, ...]:
    return (item.get("RepoName") or "", item.get("Tag") or "", item.get("Digest") or "")


def sort(
    items: Iterable[Item], sort_by: str, name: Callable[[Item], tuple[str, ...]], rank: Callable[[Item], int]
) -> list[Item]:
    """``items`` in ``sort_by``'s order; ties by ``name`` ascending (so the order is total)."""
    ordered = sorted(items, key=name)
    if sort_by == ALPHABETIC_DSC:
        ordered.reverse()
    elif sort_by == RELEVANCE:
        ordered.sort(key=rank)
    elif sort_by == UPDATE_TIME:  # newest first; never updated last
        ordered.sort(key=lambda item: item.get("LastUpdated") or "", reverse=True)
    elif sort_by == STARS:
        ordered.sort(key=lambda item: item.get("StarCount") or 0, reverse=True)
    elif sort_by == DOWNLOADS:
        ordered.sort(key=lambda item: item.get("DownloadCount") or 0, reverse=True)
    return ordered


def page_info(total: int, items: list[Item]) -> dict[str, int]:
    return {"TotalCount": total, "ItemCount": len(items)}
