"""What an image's manifest and config say about it, for the search API and the UI.

:mod:`zotpy.meta.model` keeps what changes (tags, pushes, pulls); this module reads what never
changes once pushed: a manifest's config digest, layers, annotations and artifact type, the
config's platform, labels and history, an index's child manifests with their platforms. Both
documents are content-addressed, so what is read once is kept (by digest, in a bounded LRU) and
never read again; the search code asks :meth:`DetailsReader.describe` instead of parsing layouts.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import attrs

from zotpy.oci.digest import Digest, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import INDEX_TYPES, parse_manifest
from zotpy.storage.driver import IStorageDriver, PathNotFound
from zotpy.storage.layout import blob_path

#: Configs larger than this are not read (an artifact's "config" may be any blob): no platform, no history.
MAX_CONFIG_BYTES = 1024 * 1024
#: Images described and kept; about 2 KB each.
DEFAULT_CAPACITY = 50_000

#: Media types whose config is an image config (platform, labels, history).
IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)


@attrs.frozen
class Layer:
    digest: str
    size: int
    media_type: str


@attrs.frozen
class HistoryEntry:
    """One entry of the config's ``history``; ``layer`` is the layer it made (None for an empty one)."""

    created: str | None
    created_by: str | None
    author: str | None
    comment: str | None
    empty_layer: bool
    layer: Layer | None


@attrs.frozen
class Child:
    """An index's entry: a child manifest and the platform its descriptor declares."""

    digest: str
    media_type: str
    size: int
    os: str | None
    arch: str | None


@attrs.frozen
class ImageDetails:
    """An image manifest's or index's immutable facts (empty ones where the blob was unreadable)."""

    digest: str
    media_type: str
    config_digest: str | None = None
    config_media_type: str | None = None
    artifact_type: str | None = None
    os: str | None = None
    arch: str | None = None
    created: str | None = None
    author: str | None = None
    layers: tuple[Layer, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    annotations: dict[str, str] = attrs.field(factory=dict, eq=False)
    labels: dict[str, str] = attrs.field(factory=dict, eq=False)
    children: tuple[Child, ...] = ()
    subject: str | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _history(config: dict[str, Any], layers: tuple[Layer, ...]) -> tuple[HistoryEntry, ...]:
    """The config's history entries, each non-empty one paired with the next layer in order."""
    entries = config.get("history")
    if not isinstance(entries, list):
        return ()
    result, next_layer = [], 0
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        empty = entry.get("empty_layer") is True
        layer = None
        if not empty and next_layer < len(layers):
            layer = layers[next_layer]
            next_layer += 1
        result.append(
            HistoryEntry(
                _string(entry.get("created")), _string(entry.get("created_by")), _string(entry.get("author")),
                _string(entry.get("comment")), empty, layer,
            )
        )
    return tuple(result)


@attrs.define(eq=False)
class DetailsReader:
    """Reads and keeps :class:`ImageDetails` through the storage driver."""

    driver: IStorageDriver
    capacity: int = DEFAULT_CAPACITY
    _kept: OrderedDict[str, ImageDetails] = attrs.field(factory=OrderedDict, init=False)

    async def describe(self, repo: str, digest: str, media_type: str) -> ImageDetails:
        kept = self._kept.get(digest)
        if kept is not None:
            self._kept.move_to_end(digest)
            return kept
        details = await self._read(repo, parse_digest(digest), media_type)
        self._kept[digest] = details
        if len(self._kept) > self.capacity:
            self._kept.popitem(last=False)
        return details

    async def _read(self, repo: str, digest: Digest, media_type: str) -> ImageDetails:
        try:  # manifests were checked against MAX_MANIFEST_BYTES when pushed
            manifest = parse_manifest(await self.driver.get_content(blob_path(repo, digest)), media_type)
        except (PathNotFound, RegistryError):
            return ImageDetails(str(digest), media_type)
        subject = None if manifest.subject is None else str(manifest.subject.digest)
        annotations = dict(manifest.annotations or {})
        if manifest.is_index:
            children = []
            for entry in manifest.references:
                # An index's descriptors carry the platform; their annotations are not the image's.
                platform = entry.platform or {}
                children.append(Child(str(entry.digest), entry.media_type, entry.size, platform.get("os"), platform.get("architecture")))
            return ImageDetails(
                str(digest), manifest.media_type, artifact_type=manifest.artifact_type, annotations=annotations,
                children=tuple(children), subject=subject,
            )
        assert manifest.config is not None
        layers = tuple(Layer(str(d.digest), d.size, d.media_type) for d in manifest.references)
        config: dict[str, Any] = {}
        config_path = blob_path(repo, manifest.config.digest)
        if manifest.config.media_type in IMAGE_CONFIG_TYPES and manifest.config.size <= MAX_CONFIG_BYTES:
            try:
                # The descriptor's size is the pusher's word (a push checks that the blob exists,
                # not its size): the stored size decides whether it is read whole.
                if await self.driver.size(config_path) > MAX_CONFIG_BYTES:
                    raise ValueError("config larger than its descriptor says")
                loaded = json.loads(await self.driver.get_content(config_path))
                config = loaded if isinstance(loaded, dict) else {}
            except (PathNotFound, ValueError, UnicodeDecodeError):
                config = {}
        inner = config.get("config") if isinstance(config.get("config"), dict) else {}
        return ImageDetails(
            str(digest), manifest.media_type,
            config_digest=str(manifest.config.digest), config_media_type=manifest.config.media_type,
            artifact_type=manifest.artifact_type, os=_string(config.get("os")), arch=_string(config.get("architecture")),
            created=_string(config.get("created")), author=_string(config.get("author")),
            layers=layers, history=_history(config, layers), annotations=annotations,
            labels=_string_map(inner.get("Labels")), subject=subject,
        )
