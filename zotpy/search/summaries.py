"""zot's result types (ImageSummary, ManifestSummary, RepoSummary, Referrer) built from zotpy's
repository metadata (:mod:`zotpy.meta.model`: tags, push and pull history, sizes) and each image's
immutable details (:mod:`zotpy.meta.details`: config, layers, platform, history, annotations).

Results are plain dicts keyed by the GraphQL field names: the executor reads them as they are, and
a member's part travels to the member that merges as JSON without translation.

Times: ``LastUpdated`` is when the manifest was pushed (zotpy's metadata), the same as
``PushTimestamp``; zot takes it from the config's ``created``, which reproducible builds set to
1970 and artifacts lack. The config's times are in each manifest's ``History``.
"""

from __future__ import annotations

import re
import time
from typing import Any, Awaitable, Callable

from zotpy.meta.details import Child, ImageDetails
from zotpy.meta.model import ImageMeta, RepositoryMeta

Describe = Callable[[str, str, str], Awaitable[ImageDetails]]
Item = dict[str, Any]

#: Artifact types of signatures (cosign, notation): an image with such a referrer is signed.
SIGNATURE_TOOLS = {
    "application/vnd.dev.cosign.artifact.sig.v1+json": "cosign",
    "application/vnd.cncf.notary.signature": "notation",
}
#: cosign's tag scheme (``sha256-<hex>.sig`` and its attestations): signatures, not images to list.
COSIGN_TAG = re.compile(r"^sha256-[0-9a-f]{64}\.(sig|att|sbom)$")

_ANNOTATION = "org.opencontainers.image."
#: ImageSummary fields read from the OCI annotations (or the config's labels of the same name).
DESCRIPTIVE_FIELDS = {
    "Description": "description", "Licenses": "licenses", "Title": "title", "Source": "source",
    "Documentation": "documentation", "Vendor": "vendor", "Authors": "authors",
}


def rfc3339(seconds: float | None) -> str | None:
    """zot's ``Time`` scalar (RFC 3339, UTC): fixed width, so the strings sort as the times do."""
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def listed_tags(meta: RepositoryMeta) -> dict[str, ImageMeta]:
    """Tag -> image, without cosign's signature tags."""
    return {tag: image for tag, image in meta.tagged().items() if not COSIGN_TAG.match(tag)}


def manifest_bytes(image: ImageMeta) -> int:
    return image.size - sum(image.parts.values())


class RepositoryView:
    """One repository's metadata with the lookups the summaries need, its images' details read once."""

    def __init__(self, meta: RepositoryMeta, describe: Describe) -> None:
        self.meta = meta
        self._describe = describe
        self.referrers: dict[str, list[ImageMeta]] = {}
        for image in meta.images.values():
            if image.subject is not None:
                self.referrers.setdefault(image.subject, []).append(image)
        self.tags = listed_tags(meta)

    async def details(self, digest: str, media_type: str) -> ImageDetails:
        return await self._describe(self.meta.name, digest, media_type)

    # -- referrers and signatures ----------------------------------------------------------------

    async def referrer_list(self, digest: str, types: list[str] | None = None) -> list[Item]:
        result = []
        for image in sorted(self.referrers.get(digest, []), key=lambda i: i.digest):
            details = await self.details(image.digest, image.media_type)
            if types and details.artifact_type not in types:
                continue
            result.append(
                {
                    "MediaType": image.media_type,
                    "ArtifactType": details.artifact_type,
                    "Size": manifest_bytes(image),
                    "Digest": image.digest,
                    "Annotations": [{"Key": k, "Value": v} for k, v in sorted(details.annotations.items())],
                }
            )
        return result

    async def signatures(self, digest: str) -> list[Item]:
        found = []
        for referrer in await self.referrer_list(digest):
            tool = SIGNATURE_TOOLS.get(referrer["ArtifactType"] or "")
            if tool is not None:
                found.append({"Tool": tool, "IsTrusted": False, "Author": ""})
        algorithm, _, hexdigest = digest.partition(":")
        if f"{algorithm}-{hexdigest}.sig" in self.meta.tagged():
            found.append({"Tool": "cosign", "IsTrusted": False, "Author": ""})
        return found

    # -- summaries --------------------------------------------------------------------------------

    async def manifest_summary(self, details: ImageDetails, image: ImageMeta | None, child: Child | None) -> Item:
        """One image manifest: ``image`` is its metadata (None for an index's child not in the
        repository's metadata), ``child`` its entry in an index (whose platform is the fallback)."""
        signatures = await self.signatures(details.digest)
        os = details.os or (child.os if child else None)
        arch = details.arch or (child.arch if child else None)
        size = image.size if image is not None else (child.size if child else 0)
        history = [
            {
                "Layer": None if entry.layer is None else {"Size": str(entry.layer.size), "Digest": entry.layer.digest},
                "HistoryDescription": {
                    "Created": entry.created, "CreatedBy": entry.created_by, "Author": entry.author,
                    "Comment": entry.comment, "EmptyLayer": entry.empty_layer,
                },
            }
            for entry in details.history
        ]
        return {
            "Digest": details.digest,
            "ConfigDigest": details.config_digest,
            "LastUpdated": rfc3339(image.pushed_at) if image is not None else None,
            "Size": str(size),
            "IsSigned": bool(signatures),
            "SignatureInfo": signatures,
            "Platform": {"Os": os, "Arch": arch},
            "DownloadCount": image.pull_count if image is not None else 0,
            "Layers": [{"Size": str(layer.size), "Digest": layer.digest} for layer in details.layers],
            "History": history,
            "Vulnerabilities": None,
            "Referrers": await self.referrer_list(details.digest),
            "ArtifactType": details.artifact_type,
        }

    async def manifests(self, image: ImageMeta) -> tuple[ImageDetails, list[tuple[ImageDetails, Item]]]:
        """The image's details, and each manifest it stands for (itself, or an index's children)."""
        details = await self.details(image.digest, image.media_type)
        if not details.is_index:
            return details, [(details, await self.manifest_summary(details, image, None))]
        found = []
        for child in details.children:
            child_details = await self.details(child.digest, child.media_type)
            found.append((child_details, await self.manifest_summary(child_details, self.meta.images.get(child.digest), child)))
        return details, found

    async def image_summary(self, tag: str | None, image: ImageMeta) -> Item:
        details, manifests = await self.manifests(image)
        size = image.size
        if details.is_index:  # the index itself, and every child's manifest and blobs
            size = manifest_bytes(image) + sum(
                self.meta.images[child.digest].size if child.digest in self.meta.images else child.size
                for child in details.children
            )
        described: dict[str, str] = {}
        for child_details, _ in reversed(manifests):
            described.update(child_details.labels)
            described.update(child_details.annotations)
        described.update(details.labels)
        described.update(details.annotations)
        signatures = await self.signatures(image.digest)
        summary: Item = {
            "RepoName": self.meta.name,
            "Tag": tag,
            "Digest": image.digest,
            "MediaType": image.media_type,
            "Manifests": [summary for _, summary in manifests],
            "Size": str(size),
            "DownloadCount": image.pull_count + sum(m["DownloadCount"] for _, m in manifests if m["Digest"] != image.digest),
            "LastPullTimestamp": rfc3339(image.last_pulled_at),
            "PushTimestamp": rfc3339(image.pushed_at),
            "LastUpdated": rfc3339(image.pushed_at),
            "IsSigned": bool(signatures) or any(m["IsSigned"] for _, m in manifests),
            "SignatureInfo": signatures,
            "Labels": None,
            "Vulnerabilities": None,
            "Referrers": await self.referrer_list(image.digest),
            "IsDeletable": False,
        }
        for field, key in DESCRIPTIVE_FIELDS.items():
            summary[field] = described.get(_ANNOTATION + key)
        return summary

    async def repo_summary(self, rank: int = 0) -> Item:
        platforms: dict[tuple[Any, Any], Item] = {}
        vendors: set[str] = set()
        signed = False
        for tag, image in sorted(self.tags.items()):
            details, manifests = await self.manifests(image)
            for _, manifest in manifests:
                platform = manifest["Platform"]
                if platform["Os"] or platform["Arch"]:
                    platforms.setdefault((platform["Os"], platform["Arch"]), platform)
                signed = signed or manifest["IsSigned"]
            vendor = details.annotations.get(_ANNOTATION + "vendor")
            if vendor:
                vendors.add(vendor)
        newest = self.newest()
        return {
            "Name": self.meta.name,
            "LastUpdated": rfc3339(self.meta.last_updated),
            "Size": str(self.meta.size),
            "Platforms": [platforms[key] for key in sorted(platforms, key=lambda k: (k[0] or "", k[1] or ""))],
            "Vendors": sorted(vendors),
            "NewestImage": None if newest is None else await self.image_summary(*newest),
            "DownloadCount": self.meta.download_count,
            "StarCount": 0,
            "IsBookmarked": False,
            "IsStarred": False,
            "Rank": rank,
            # not in zot's schema: read by filters, dropped by the executor
            "_signed": signed,
        }

    def newest(self) -> tuple[str, ImageMeta] | None:
        """The most recently pushed tagged image and its (first) tag."""
        if not self.tags:
            return None
        tag, image = max(self.tags.items(), key=lambda item: (item[1].pushed_at, item[0]))
        return tag, image

    def light(self, rank: int = 0) -> Item:
        """What sorting a repository needs, without reading any image."""
        return {
            "Name": self.meta.name, "LastUpdated": rfc3339(self.meta.last_updated),
            "DownloadCount": self.meta.download_count, "StarCount": 0, "Rank": rank,
        }
