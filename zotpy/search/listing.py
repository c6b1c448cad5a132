"""The repositories a search lists, without walking the storage on every request.

Walking the layout (or listing the bucket) for every search costs more than the rest of a
GlobalSearch over 1,000 repositories. The walk's answer is kept for ``max_age`` seconds, joined
with every repository the metadata keeper has seen an event for since the replica started, so a
repository pushed through this replica is listed at once. A global search lists only the
repositories this member owns, and their pushes all reach this member's keeper, so what the kept
walk can miss for ``max_age`` is a repository written behind the keeper's back (another worker
process, an offline copy). A repository listed after its deletion is harmless: it holds no image,
and the search skips it.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import attrs


@attrs.define(eq=False)
class RecentListing:
    walk: Callable[[], Awaitable[list[str]]]
    seen: Callable[[], set[str]]
    clock: Any  # IReactorTime
    max_age: float
    _kept: tuple[list[str], float] | None = attrs.field(default=None, init=False)

    async def repositories(self) -> list[str]:
        now = self.clock.seconds()
        if self._kept is None or now - self._kept[1] > self.max_age:
            self._kept = (await self.walk(), now)
        return sorted(set(self._kept[0]) | self.seen())
