"""The search API's resolvers over this member's store and metadata.

Each query field is one method taking zot's arguments and returning zot's result type as a dict
(:mod:`zotpy.search.summaries`). Listings over every repository (``global`` fields) cover the
repositories this member owns (``owns``): alone that is all of them; in a cluster each member
answers for its own and the receiving member merges (:mod:`zotpy.search.cluster`). Fields about
one repository are answered by its owner. ``may_read`` (access control) hides what the caller
may not read: a repository they may not read is one that does not exist.

Listings sort first on what the repository metadata says (names, times, counts) and build the
full summaries of the page only, so a page of 10 out of 1,000 repositories reads 10 repositories'
images, not 1,000.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import attrs
from twisted.internet.defer import ensureDeferred, gatherResults

from zotpy.meta.details import DetailsReader
from zotpy.meta.model import RepositoryMeta
from zotpy.oci.digest import is_digest_reference
from zotpy.oci.errors import RegistryError
from zotpy.oci.names import validate_name
from zotpy.search import pages
from zotpy.search.pages import Page, image_name, page_info, repo_name
from zotpy.search.summaries import RepositoryView, rfc3339

Item = dict[str, Any]
#: Repositories whose metadata is read at once by a listing.
PARALLEL_READS = 32
#: How old a repository's metadata a search may answer from when nothing was pushed, pulled or
#: deleted there since (:meth:`zotpy.meta.keeper.MetaKeeper.recent`): listings read every
#: repository; and how old the walk of the storage that lists them (:mod:`zotpy.search.listing`).
SEARCH_METADATA_AGE = 5.0
MayRead = Callable[[str], bool]

#: Fields answered from every member's repositories; the others name one repository.
GLOBAL_FIELDS = frozenset(
    {"GlobalSearch", "RepoListWithNewestImage", "ImageListForDigest", "BaseImageList", "DerivedImageList"}
)
REPOSITORY_FIELDS = frozenset({"ImageList", "ExpandedRepoInfo", "Image", "Referrers"})
#: Each field's default order when ``requestedPage.sortBy`` is not given.
DEFAULT_SORT = {
    "GlobalSearch": pages.RELEVANCE,
    "RepoListWithNewestImage": pages.UPDATE_TIME,
    "ImageList": pages.UPDATE_TIME,
    "ImageListForDigest": pages.UPDATE_TIME,
    "BaseImageList": pages.UPDATE_TIME,
    "DerivedImageList": pages.UPDATE_TIME,
}


class SearchError(Exception):
    """A resolver's refusal (not found, bad argument): a GraphQL error with this message, status 200."""


def everyone(repository: str) -> bool:
    return True


def split_image(image: str) -> tuple[str, str]:
    """``repo:tag`` or ``repo@digest`` -> (repo, reference)."""
    if "@" in image:
        repo, _, reference = image.partition("@")
    else:
        repo, _, reference = image.rpartition(":")
    if not repo or not reference:
        raise SearchError(f"{image!r} is not an image: write repository:tag or repository@digest")
    return repo, reference


def repository_of(field: str, args: dict[str, Any]) -> str:
    """The repository a repository-scoped field names."""
    if field == "Image":
        return split_image(args["image"])[0]
    return str(args["repo"])


def relevance(query: str) -> Callable[[str], int]:
    """zot's Rank: how early ``query`` appears in a name (0 = a prefix); names without it never match."""
    lowered = query.lower()
    return lambda name: name.lower().find(lowered)


def sort_repos(items: list[Item], sort_by: str) -> list[Item]:
    return pages.sort(items, sort_by, repo_name, lambda item: item.get("Rank") or 0)


def image_rank(tag_query: str) -> Callable[[Item], int]:
    rank = relevance(tag_query)
    return lambda item: max(rank(item.get("Tag") or ""), 0)


def sort_images(items: list[Item], sort_by: str, tag_query: str = "") -> list[Item]:
    return pages.sort(items, sort_by, image_name, image_rank(tag_query))


@attrs.define(eq=False)
class SearchEngine:
    repositories: Callable[[], Awaitable[list[str]]]
    metadata: Callable[[str], Awaitable[RepositoryMeta]]
    details: DetailsReader
    owns: Callable[[str], bool] = everyone

    async def resolve(self, field: str, args: dict[str, Any], may_read: MayRead = everyone) -> Any:
        if field not in GLOBAL_FIELDS and field not in REPOSITORY_FIELDS:  # a member's part names any field
            raise SearchError(f"{field} is not implemented by zotpy")
        method = getattr(self, f"_{field}")
        try:
            return await method(args, may_read)
        except pages.PageError as error:
            raise SearchError(str(error)) from None

    # -- helpers ------------------------------------------------------------------------------------

    async def view(self, repo: str, may_read: MayRead) -> RepositoryView:
        try:
            validate_name(repo)
        except RegistryError:
            raise SearchError(f"{repo!r} is not a repository name") from None
        meta = await self.metadata(repo) if may_read(repo) else RepositoryMeta(repo)
        if not meta.images:
            raise SearchError(f"repository not found: {repo}")
        return RepositoryView(meta, self.details.describe)

    async def own_views(self, may_read: MayRead) -> list[RepositoryView]:
        """Every repository this member answers for that the caller may read and that holds an
        image. Their metadata is read :data:`PARALLEL_READS` at a time: each read is a trip to
        the storage's thread pool (or to S3), and one after another they add up to the latency."""
        names = [repo for repo in await self.repositories() if self.owns(repo) and may_read(repo)]
        views = []
        for start in range(0, len(names), PARALLEL_READS):
            batch = names[start : start + PARALLEL_READS]
            metas = await gatherResults([ensureDeferred(self.metadata(repo)) for repo in batch], consumeErrors=True)
            views += [RepositoryView(meta, self.details.describe) for meta in metas if meta.images]
        return views

    async def repo_page(
        self, views: list[RepositoryView], page: Page, rank: Callable[[str], int], wanted: Callable[[Item], bool] | None
    ) -> tuple[int, list[Item]]:
        by_name = {view.meta.name: view for view in views}
        if wanted is None:  # sort on the metadata alone, then build the page
            ordered = sort_repos([view.light(rank(view.meta.name)) for view in views], page.sort_by)
            chosen = page.cut(ordered)
            return len(ordered), [await by_name[item["Name"]].repo_summary(item["Rank"]) for item in chosen]
        full = [await view.repo_summary(rank(view.meta.name)) for view in views]
        matching = sort_repos([item for item in full if wanted(item)], page.sort_by)
        return len(matching), page.cut(matching)

    async def image_page(
        self,
        candidates: list[tuple[RepositoryView, str]],
        page: Page,
        tag_query: str = "",
        keep: Callable[[Item], bool] | None = None,
    ) -> tuple[int, list[Item]]:
        """Tagged images (view, tag), sorted and cut; summaries built for the page only (for all
        of them when ``keep`` must look at them first)."""
        if keep is not None:
            full = [await view.image_summary(tag, view.tags[tag]) for view, tag in candidates]
            ordered = sort_images([item for item in full if keep(item)], page.sort_by, tag_query)
            return len(ordered), page.cut(ordered)
        light = {}
        for view, tag in candidates:
            image = view.tags[tag]
            light[(view.meta.name, tag)] = (view, {
                "RepoName": view.meta.name, "Tag": tag, "Digest": image.digest,
                "LastUpdated": rfc3339(image.pushed_at), "DownloadCount": image.pull_count,
            })
        ordered = sort_images([item for _, item in light.values()], page.sort_by, tag_query)
        results = []
        for item in page.cut(ordered):
            view, _ = light[(item["RepoName"], item["Tag"])]
            results.append(await view.image_summary(item["Tag"], view.tags[item["Tag"]]))
        return len(ordered), results

    # -- global fields ------------------------------------------------------------------------------

    async def _GlobalSearch(self, args: dict[str, Any], may_read: MayRead) -> Item:
        query = (args.get("query") or "").strip()
        page = Page.parse(args.get("requestedPage"), DEFAULT_SORT["GlobalSearch"])
        wanted = _filter(args.get("filter"))
        views = await self.own_views(may_read)
        if ":" in query:  # repo:tag -> the tags of that repository containing the tag part
            repo, _, tag_query = query.partition(":")
            rank = relevance(tag_query)
            candidates = [
                (view, tag) for view in views if view.meta.name == repo
                for tag in view.tags if rank(tag) >= 0
            ]
            keep = None if wanted is None else lambda image: _image_wanted(image, args.get("filter") or {})
            total, images = await self.image_page(candidates, page, tag_query, keep)
            return {"Page": page_info(total, images), "Images": images, "Repos": [], "Layers": []}
        rank = relevance(query)
        views = [view for view in views if rank(view.meta.name) >= 0]
        total, repos = await self.repo_page(views, page, rank, wanted)
        return {"Page": page_info(total, repos), "Images": [], "Repos": repos, "Layers": []}

    async def _RepoListWithNewestImage(self, args: dict[str, Any], may_read: MayRead) -> Item:
        page = Page.parse(args.get("requestedPage"), DEFAULT_SORT["RepoListWithNewestImage"])
        total, repos = await self.repo_page(await self.own_views(may_read), page, lambda name: 0, None)
        return {"Page": page_info(total, repos), "Results": repos}

    async def _ImageListForDigest(self, args: dict[str, Any], may_read: MayRead) -> Item:
        wanted = str(args["id"]).lower()
        if ":" not in wanted:
            wanted = "sha256:" + wanted
        page = Page.parse(args.get("requestedPage"), DEFAULT_SORT["ImageListForDigest"])
        candidates = []
        for view in await self.own_views(may_read):
            for tag, image in view.tags.items():
                details, manifests = await view.manifests(image)
                digests = {image.digest}
                for child, _ in manifests:
                    digests.add(child.digest)
                    digests.update(layer.digest for layer in child.layers)
                    if child.config_digest:
                        digests.add(child.config_digest)
                if wanted in digests:
                    candidates.append((view, tag))
        total, images = await self.image_page(candidates, page)
        return {"Page": page_info(total, images), "Results": images}

    async def layers_of(self, args: dict[str, Any], may_read: MayRead) -> list[list[str]]:
        """The layer lists of ``args["image"]`` (one per manifest; only ``args["digest"]``'s when given)."""
        if args.get("layers") is not None:  # worked out by the member that fanned out
            return [list(layers) for layers in args["layers"]]
        repo, reference = split_image(args["image"])
        view = await self.view(repo, may_read)
        image = view.meta.images.get(reference) if is_digest_reference(reference) else view.tags.get(reference)
        if image is None:
            raise SearchError(f"image not found: {args['image']}")
        _, manifests = await view.manifests(image)
        return [
            [layer.digest for layer in details.layers] for details, _ in manifests
            if not args.get("digest") or details.digest == args["digest"]
        ]

    async def _related(self, args: dict[str, Any], may_read: MayRead, field: str) -> Item:
        page = Page.parse(args.get("requestedPage"), DEFAULT_SORT[field])
        targets = [layers for layers in await self.layers_of(args, may_read) if layers]
        candidates = []
        for view in await self.own_views(may_read):
            for tag, image in view.tags.items():
                _, manifests = await view.manifests(image)
                for details, _ in manifests:
                    mine = [layer.digest for layer in details.layers]
                    if mine and any(_relates(field, mine, target) for target in targets):
                        candidates.append((view, tag))
                        break
        total, images = await self.image_page(candidates, page)
        return {"Page": page_info(total, images), "Results": images}

    async def _BaseImageList(self, args: dict[str, Any], may_read: MayRead) -> Item:
        return await self._related(args, may_read, "BaseImageList")

    async def _DerivedImageList(self, args: dict[str, Any], may_read: MayRead) -> Item:
        return await self._related(args, may_read, "DerivedImageList")

    # -- fields about one repository ----------------------------------------------------------------

    async def _ImageList(self, args: dict[str, Any], may_read: MayRead) -> Item:
        page = Page.parse(args.get("requestedPage"), DEFAULT_SORT["ImageList"])
        view = await self.view(args["repo"], may_read)
        total, images = await self.image_page([(view, tag) for tag in view.tags], page)
        return {"Page": page_info(total, images), "Results": images}

    async def _ExpandedRepoInfo(self, args: dict[str, Any], may_read: MayRead) -> Item:
        view = await self.view(args["repo"], may_read)
        images = [await view.image_summary(tag, image) for tag, image in sorted(view.tags.items())]
        return {"Images": images, "Summary": await view.repo_summary()}

    async def _Image(self, args: dict[str, Any], may_read: MayRead) -> Item:
        repo, reference = split_image(args["image"])
        view = await self.view(repo, may_read)
        if is_digest_reference(reference):
            image = view.meta.images.get(reference)
            tag = next((t for t, i in sorted(view.tags.items()) if image is not None and i.digest == image.digest), None)
        else:
            image, tag = view.tags.get(reference), reference
        if image is None:
            raise SearchError(f"image not found: {args['image']}")
        return await view.image_summary(tag, image)

    async def _Referrers(self, args: dict[str, Any], may_read: MayRead) -> list[Item]:
        try:
            view = await self.view(args["repo"], may_read)
        except SearchError:
            return []  # zot: no repository, no referrers
        return await view.referrer_list(args["digest"], args.get("type") or None)


def _relates(field: str, mine: list[str], target: list[str]) -> bool:
    """Base: ``mine`` is a strict prefix of ``target``; derived: ``target`` is one of ``mine``."""
    if field == "BaseImageList":
        return len(mine) < len(target) and target[: len(mine)] == mine
    return len(target) < len(mine) and mine[: len(target)] == target


def _platform_matches(platform: Item, wanted: dict[str, Any]) -> bool:
    oses = [value for value in wanted.get("Os") or [] if value]
    arches = [value for value in wanted.get("Arch") or [] if value]
    return (not oses or platform.get("Os") in oses) and (not arches or platform.get("Arch") in arches)


def _filter(wanted: dict[str, Any] | None) -> Callable[[Item], bool] | None:
    """zot's Filter on repositories: a platform among Os x Arch; signed when HasToBeSigned."""
    if not wanted or not (wanted.get("Os") or wanted.get("Arch") or wanted.get("HasToBeSigned")):
        return None

    def keep(repo: Item) -> bool:
        if wanted.get("HasToBeSigned") and not repo.get("_signed"):
            return False
        return any(_platform_matches(platform, wanted) for platform in repo["Platforms"]) or not (
            wanted.get("Os") or wanted.get("Arch")
        )

    return keep


def _image_wanted(image: Item, wanted: dict[str, Any]) -> bool:
    if wanted.get("HasToBeSigned") and not image.get("IsSigned"):
        return False
    if not (wanted.get("Os") or wanted.get("Arch")):
        return True
    return any(_platform_matches(manifest["Platform"], wanted) for manifest in image["Manifests"])
