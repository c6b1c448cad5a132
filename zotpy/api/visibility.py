"""Which repositories the caller may see, as decided by a layer above the API (access control).

The catalog must list only repositories the caller may read, and must filter *before* paginating
(or pages come out short and ``Link`` lies). The access-control layer wraps this package's resource
and cannot reach into the handler, so it leaves its decision on the request; without such a layer
every repository is visible.
"""

from __future__ import annotations

from typing import Callable

from twisted.web.iweb import IRequest

_ATTRIBUTE = "zotpy_may_read"


def set_reader(request: IRequest, may_read: Callable[[str], bool]) -> None:
    setattr(request, _ATTRIBUTE, may_read)


def visible(request: IRequest, repositories: list[str]) -> list[str]:
    """``repositories`` less those the request's caller may not read (order kept)."""
    may_read: Callable[[str], bool] | None = getattr(request, _ATTRIBUTE, None)
    if may_read is None:
        return repositories
    return [name for name in repositories if may_read(name)]


def reader(request: IRequest) -> Callable[[str], bool]:
    """Whether the request's caller may read a repository (the search API filters with it)."""
    may_read: Callable[[str], bool] | None = getattr(request, _ATTRIBUTE, None)
    return may_read if may_read is not None else _everyone


def _everyone(repository: str) -> bool:
    return True
