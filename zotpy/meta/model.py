"""What zotpy knows about each repository's images beyond the OCI layout itself.

The layout (``index.json``, ``blobs/``) says *what* is stored; retention, metrics and the search
API also need *when* and *how much*: when each manifest was pushed and last pulled, how often it
was pulled, how large each image and the repository are. These objects hold that, with the
questions those consumers ask as methods, so they never walk the layout themselves.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import attrs

#: The document's format, written into it so a later zotpy can tell an old file from a corrupt one.
META_VERSION = 1


@attrs.define
class ImageMeta:
    """One manifest of a repository (tagged or not).

    ``size`` is the image's own bytes: the manifest plus the blobs (config, layers) or child
    manifests it lists, as their descriptors declare them. Times are POSIX seconds; ``None`` for
    an image never pulled.
    """

    digest: str
    media_type: str
    size: int
    pushed_at: float
    tags: list[str] = attrs.field(factory=list)
    last_pulled_at: float | None = None
    pull_count: int = 0
    #: The digest this manifest refers to (OCI ``subject``), for referrers and retention's deleteReferrers.
    subject: str | None = None
    #: Digests of the blobs and child manifests it lists: what the repository's size counts.
    parts: dict[str, int] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ImageMeta:
        return cls(
            digest=str(value["digest"]),
            media_type=str(value["media_type"]),
            size=int(value["size"]),
            pushed_at=float(value["pushed_at"]),
            tags=[str(tag) for tag in value.get("tags") or []],
            last_pulled_at=None if value.get("last_pulled_at") is None else float(value["last_pulled_at"]),
            pull_count=int(value.get("pull_count") or 0),
            subject=value.get("subject"),
            parts={str(k): int(v) for k, v in (value.get("parts") or {}).items()},
        )


@attrs.define
class RepositoryMeta:
    """Every image of one repository, by manifest digest."""

    name: str
    images: dict[str, ImageMeta] = attrs.field(factory=dict)

    # -- the questions retention, metrics and search ask ------------------------------------------

    @property
    def size(self) -> int:
        """Bytes of the distinct blobs and manifests the repository's images use (shared layers once)."""
        sizes: dict[str, int] = {}
        for image in self.images.values():
            sizes[image.digest] = image.size - sum(image.parts.values())
            sizes.update(image.parts)
        return sum(sizes.values())

    @property
    def download_count(self) -> int:
        return sum(image.pull_count for image in self.images.values())

    @property
    def last_updated(self) -> float | None:
        """When the newest manifest was pushed; None for a repository without images."""
        return max((image.pushed_at for image in self.images.values()), default=None)

    def newest_image(self) -> ImageMeta | None:
        """The most recently pushed tagged image (the one a repository listing shows), else any."""
        tagged = [image for image in self.images.values() if image.tags]
        return max(tagged or self.images.values(), key=lambda image: (image.pushed_at, image.digest), default=None)

    def tagged(self) -> dict[str, ImageMeta]:
        """Tag -> image."""
        return {tag: image for image in self.images.values() for tag in image.tags}

    def untagged(self) -> list[ImageMeta]:
        return [image for image in self.images.values() if not image.tags]

    # -- changes, made by the owner only ----------------------------------------------------------

    def pushed(self, image: ImageMeta) -> None:
        """Record a manifest push: its tags move to it (a tag names one manifest)."""
        for other in self.images.values():
            if other.digest != image.digest:
                other.tags = [tag for tag in other.tags if tag not in image.tags]
        current = self.images.get(image.digest)
        if current is not None:  # pushed again (a new tag, or the same bytes): keep its pull history
            image.tags = sorted(set(current.tags) | set(image.tags))
            image.last_pulled_at, image.pull_count = current.last_pulled_at, current.pull_count
        self.images[image.digest] = image

    def pulled(self, digest: str, when: float, count: int = 1) -> None:
        image = self.images.get(digest)
        if image is not None:
            image.pull_count += count
            image.last_pulled_at = max(image.last_pulled_at or when, when)

    def untag(self, tag: str) -> None:
        for image in self.images.values():
            if tag in image.tags:
                image.tags.remove(tag)

    def remove(self, digests: Iterable[str]) -> None:
        for digest in digests:
            self.images.pop(digest, None)

    # -- the stored document ----------------------------------------------------------------------

    def serialize(self) -> bytes:
        document = {
            "version": META_VERSION,
            "repository": self.name,
            "images": [image.to_json() for image in sorted(self.images.values(), key=lambda i: i.digest)],
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes, name: str) -> RepositoryMeta:
        """Raises ValueError for anything that is not a document this version wrote for ``name``."""
        try:
            document = json.loads(data)
            if document.get("version") != META_VERSION or document.get("repository") != name:
                raise ValueError("another version's or another repository's metadata")
            images = [ImageMeta.from_json(item) for item in document["images"]]
        except (AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"malformed metadata: {error}") from None
        return cls(name, {image.digest: image for image in images})

