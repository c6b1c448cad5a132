"""The search API across a cluster (zot issue 2434's categories), on per-member and shared storage.

Each member's metadata describes the repositories it owns, so:

- a field about one repository (``ImageList``, ``ExpandedRepoInfo``, ``Image``, ``Referrers``)
  is asked once of that repository's owner;
- a field over every repository (``GlobalSearch``, ``RepoListWithNewestImage``,
  ``ImageListForDigest``) is asked of every member at once, each answering for the repositories
  it owns, for the first ``offset + limit`` items in the requested order; the receiving member
  merges, sorts and cuts the page (exact: see :mod:`zotpy.search.pages`) and adds the totals;
- ``BaseImageList`` and ``DerivedImageList`` first ask the argument image's owner for its layers,
  then every member for the images related to them.

A member's part is asked with ``POST /v2/_zot/ext/search`` carrying ``X-Zotpy-Search-Scope: local``
and ``{"field": ..., "args": ...}``; it answers ``{"data": ...}`` or ``{"error": ...}`` from its own
repositories and never asks further. The caller's credentials go along, so each member shows only
what the caller may read. A member that does not answer makes the field an ``UNAVAILABLE`` error
naming it (:mod:`zotpy.cluster.fanout`), never a silently shorter page.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.web.iweb import IRequest

from zotpy.cluster.fanout import FanOut, MemberFailed, unavailable
from zotpy.cluster.ring import Ring
from zotpy.search import engine as resolvers
from zotpy.search.engine import GLOBAL_FIELDS, MayRead, SearchEngine, SearchError, repository_of
from zotpy.search.pages import Page, page_info

SCOPE_HEADER = b"X-Zotpy-Search-Scope"
SEARCH_PATH = "/v2/_zot/ext/search"
#: A pseudo-field members answer for each other: the layer lists of ``args["image"]``.
LAYERS_FIELD = "ImageLayers"


def part_request(field: str, args: dict[str, Any]) -> bytes:
    return json.dumps({"field": field, "args": args}).encode()


def _part(body: bytes) -> dict[str, Any]:
    reply = json.loads(body)
    if not isinstance(reply, dict) or not ("data" in reply or "error" in reply):
        raise ValueError("not a search part")
    return reply


async def local_part(engine: SearchEngine, field: str, args: dict[str, Any], may_read: MayRead) -> dict[str, Any]:
    """This member's answer to a part request, as it travels."""
    try:
        if field == LAYERS_FIELD:
            return {"data": await engine.layers_of(args, may_read)}
        return {"data": await engine.resolve(field, args, may_read)}
    except SearchError as error:
        return {"error": str(error)}


def _data(part: dict[str, Any]) -> Any:
    if "error" in part:
        raise SearchError(str(part["error"]))
    return part["data"]


@attrs.define(eq=False)
class ClusterSearch:
    engine: SearchEngine
    members: FanOut
    ring: Ring

    async def resolve(self, request: IRequest, field: str, args: dict[str, Any], may_read: MayRead) -> Any:
        if field in ("BaseImageList", "DerivedImageList") and args.get("layers") is None:
            repo = resolvers.split_image(args["image"])[0]
            layers = await self._owner(request, repo, LAYERS_FIELD, args, may_read)
            return await self._everyone(request, field, {**args, "layers": layers}, may_read)
        if field in GLOBAL_FIELDS:
            return await self._everyone(request, field, args, may_read)
        return await self._owner(request, repository_of(field, args), field, args, may_read)

    async def _owner(self, request: IRequest, repo: str, field: str, args: dict[str, Any], may_read: MayRead) -> Any:
        owner = self.ring.owner_index(repo)
        if owner == self.members.me:
            return _data(await local_part(self.engine, field, args, may_read))
        try:
            part = await self.members.ask(request, owner, SCOPE_HEADER, SEARCH_PATH, _part, part_request(field, args))
        except MemberFailed as error:
            member = self.members.members[owner]
            self.members.peer_error(member, "search")
            raise unavailable("search", {member: str(error)}) from None
        return _data(part)

    async def _everyone(self, request: IRequest, field: str, args: dict[str, Any], may_read: MayRead) -> Any:
        page = Page.parse(args.get("requestedPage"), resolvers.DEFAULT_SORT[field])
        asked = {**args, "requestedPage": page.widened().to_input()}
        body = part_request(field, asked)
        parts = await self.members.gather(
            "search",
            lambda: local_part(self.engine, field, asked, may_read),
            lambda index: self.members.ask(request, index, SCOPE_HEADER, SEARCH_PATH, _part, body),
        )
        results = [_data(part) for part in parts]
        total = sum(result["Page"]["TotalCount"] for result in results)
        if field == "GlobalSearch":
            query = (args.get("query") or "").strip()
            if ":" in query:
                images = resolvers.sort_images(
                    [image for result in results for image in result["Images"]], page.sort_by, query.partition(":")[2]
                )
                cut = page.cut(images)
                return {"Page": page_info(total, cut), "Images": cut, "Repos": [], "Layers": []}
            repos = page.cut(resolvers.sort_repos([repo for result in results for repo in result["Repos"]], page.sort_by))
            return {"Page": page_info(total, repos), "Images": [], "Repos": repos, "Layers": []}
        merged = [item for result in results for item in result["Results"]]
        if field == "RepoListWithNewestImage":
            ordered = resolvers.sort_repos(merged, page.sort_by)
        else:
            ordered = resolvers.sort_images(merged, page.sort_by)
        cut = page.cut(ordered)
        return {"Page": page_info(total, cut), "Results": cut}
