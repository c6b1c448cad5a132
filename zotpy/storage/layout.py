"""zot's on-storage layout: where things live, and the ``index.json`` document.

A repository is an OCI image layout: ``<repo>/oci-layout``, ``<repo>/index.json``
(every manifest of the repository, tags in the ``org.opencontainers.image.ref.name``
annotation), ``<repo>/blobs/<alg>/<hex>`` and upload sessions in
``<repo>/.uploads/<uuid>``. The same relative paths are used on disk and in a
bucket, so an operator's existing zot storage works unchanged.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import attrs

from zotpy.oci.digest import Digest, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.oci.manifest import REF_NAME_ANNOTATION

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
EMPTY_INDEX = b'{"schemaVersion":2,"manifests":[]}'


def layout_path(repo: str) -> str:
    return f"{repo}/oci-layout"


def index_path(repo: str) -> str:
    return f"{repo}/index.json"


def blob_path(repo: str, digest: Digest) -> str:
    return f"{repo}/blobs/{digest.algorithm}/{digest.encoded}"


def upload_path(repo: str, session: str) -> str:
    return f"{repo}/.uploads/{session}"


@attrs.frozen
class IndexEntry:
    """One descriptor of ``index.json``: a manifest, tagged or not."""

    media_type: str
    digest: Digest
    size: int
    tag: str | None
    # Anything else zot (or an operator's tool) wrote: kept verbatim on rewrite.
    extra: dict[str, Any] = attrs.field(factory=dict, eq=False)

    def to_json(self) -> dict[str, Any]:
        document = dict(self.extra)
        document.update(mediaType=self.media_type, digest=str(self.digest), size=self.size)
        annotations = dict(document.get("annotations") or {})
        annotations.pop(REF_NAME_ANNOTATION, None)
        if self.tag is not None:
            annotations[REF_NAME_ANNOTATION] = self.tag
        if annotations:
            document["annotations"] = annotations
        else:
            document.pop("annotations", None)
        return document


@attrs.define
class RepositoryIndex:
    """The parsed ``index.json`` of one repository, edited in memory then written back whole."""

    entries: list[IndexEntry]
    extra: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, data: bytes, repo: str) -> RepositoryIndex:
        """Parse an index.json; ``"manifests": null`` (as zot writes it) is an empty list."""
        try:
            document = json.loads(data)
            manifests = document.get("manifests") or []
            entries = [_entry(item) for item in manifests]
        except (ValueError, AttributeError, TypeError, KeyError, RegistryError) as error:
            raise RegistryError(
                "UNAVAILABLE",
                "the repository's index.json is corrupt",
                detail={"repository": repo, "error": str(error)[:300]},
                status=500,
            ) from None
        extra = {k: v for k, v in document.items() if k != "manifests"}
        return cls(entries, extra)

    def serialize(self) -> bytes:
        document = {"schemaVersion": 2, **self.extra}
        document["manifests"] = [entry.to_json() for entry in self.entries]
        return json.dumps(document, separators=(",", ":")).encode()

    def tags(self) -> list[str]:
        return sorted({entry.tag for entry in self.entries if entry.tag is not None})

    def by_tag(self, tag: str) -> IndexEntry | None:
        return next((entry for entry in self.entries if entry.tag == tag), None)

    def by_digest(self, digest: Digest) -> IndexEntry | None:
        return next((entry for entry in self.entries if entry.digest == digest), None)

    def manifests(self) -> Iterator[IndexEntry]:
        """One entry per distinct manifest digest."""
        seen: set[Digest] = set()
        for entry in self.entries:
            if entry.digest not in seen:
                seen.add(entry.digest)
                yield entry

    def add(self, media_type: str, digest: Digest, size: int, tag: str | None) -> bool:
        """Record a manifest (and point ``tag`` at it); False when nothing changed.

        A tag moved away from a manifest leaves that manifest recorded untagged, so
        it stays pullable by digest (as in distribution) until it is deleted.
        """
        if tag is None:
            if self.by_digest(digest) is not None:
                return False
            self.entries.append(IndexEntry(media_type, digest, size, None))
            return True
        current = self.by_tag(tag)
        if current is not None and current.digest == digest:
            return False
        if current is not None:
            position = self.entries.index(current)
            still_listed = any(e.digest == current.digest for e in self.entries if e is not current)
            if still_listed:
                del self.entries[position]
            else:
                self.entries[position] = attrs.evolve(current, tag=None)
        untagged = next((e for e in self.entries if e.digest == digest and e.tag is None), None)
        if untagged is not None:
            self.entries[self.entries.index(untagged)] = attrs.evolve(untagged, tag=tag, media_type=media_type)
        else:
            self.entries.append(IndexEntry(media_type, digest, size, tag))
        return True

    def remove_tag(self, tag: str) -> bool:
        """Drop a tag; its manifest stays recorded (untagged) if nothing else lists it."""
        current = self.by_tag(tag)
        if current is None:
            return False
        position = self.entries.index(current)
        if any(e.digest == current.digest for e in self.entries if e is not current):
            del self.entries[position]
        else:
            self.entries[position] = attrs.evolve(current, tag=None)
        return True

    def remove_digest(self, digest: Digest) -> bool:
        """Drop a manifest and every tag pointing at it."""
        kept = [entry for entry in self.entries if entry.digest != digest]
        removed = len(kept) != len(self.entries)
        self.entries = kept
        return removed


def _entry(item: dict[str, Any]) -> IndexEntry:
    annotations = item.get("annotations") or {}
    extra = {k: v for k, v in item.items() if k not in ("mediaType", "digest", "size")}
    return IndexEntry(
        media_type=item["mediaType"],
        digest=parse_digest(item["digest"]),
        size=int(item["size"]),
        tag=annotations.get(REF_NAME_ANNOTATION),
        extra=extra,
    )
