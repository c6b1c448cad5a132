"""Manifest media types, parsing and the structural checks a registry makes on PUT.

The registry stores manifests byte for byte as pushed; parsing here only
extracts what the registry must check (referenced blobs and manifests) and
index (``subject``, ``artifactType``, annotations for the referrers API).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from zotpy.oci.digest import Digest, parse_digest
from zotpy.oci.errors import RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES

MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# The annotation under which OCI image layouts (and zot's index.json) record a tag.
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@attrs.frozen
class Descriptor:
    """The parts of an OCI content descriptor the registry acts on."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    annotations: dict[str, str] | None = attrs.field(default=None, eq=False)
    #: An index entry's ``platform`` (os, architecture, variant...), for the search API's listing.
    platform: dict[str, str] | None = attrs.field(default=None, eq=False)

    @property
    def is_foreign(self) -> bool:
        """Non-distributable layers live elsewhere and need not exist in the registry."""
        return bool(self.urls) or "nondistributable" in self.media_type or "foreign" in self.media_type


@attrs.frozen
class Manifest:
    """A parsed manifest or index, and the facts about it the registry keeps."""

    media_type: str
    config: Descriptor | None
    references: tuple[Descriptor, ...]  # layers of an image manifest, child manifests of an index
    subject: Descriptor | None
    artifact_type: str | None  # for the referrers API: artifactType, else the config's media type
    annotations: dict[str, str] | None = attrs.field(eq=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def required_blobs(self) -> list[Descriptor]:
        """Blobs that must be in the repository before this image manifest is accepted."""
        if self.is_index:
            return []
        blobs = [self.config] if self.config is not None else []
        return blobs + [layer for layer in self.references if not layer.is_foreign]

    def required_manifests(self) -> list[Descriptor]:
        """Child manifests that must be in the repository before this index is accepted."""
        return list(self.references) if self.is_index else []


def too_large(size: int | None) -> RegistryError:
    """The 413 for a manifest over :data:`MAX_MANIFEST_BYTES` (size None: it was still arriving)."""
    detail = {"limit": MAX_MANIFEST_BYTES} if size is None else {"size": size, "limit": MAX_MANIFEST_BYTES}
    return RegistryError("SIZE_INVALID", "manifest too large", detail=detail, status=413)


def _invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail=detail or None)


def _descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType is missing or not a string")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest is missing or not a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size is missing or not a non-negative integer")
    try:
        parsed = parse_digest(digest)
    except RegistryError as error:
        raise _invalid(f"{where}.digest: {error.message}", digest=digest[:200]) from None
    urls = value.get("urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}.urls is not a list of strings")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}.artifactType is not a string")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{where}.platform is not an object")
    platform = {k: v for k, v in (platform or {}).items() if isinstance(k, str) and isinstance(v, str)} or None
    return Descriptor(media_type, parsed, size, tuple(urls), artifact_type, _annotations(value, where), platform)


def _annotations(value: dict[str, Any], where: str) -> dict[str, str] | None:
    annotations = value.get("annotations")
    if annotations is None:
        return None
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise _invalid(f"{where}.annotations is not a string map")
    return annotations


def _choose_media_type(declared: str | None, content_type: str | None) -> str:
    """The manifest's type: its ``mediaType`` field and the request's Content-Type must agree."""
    header = (content_type or "").split(";")[0].strip().lower() or None
    if header in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1:
        raise _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if declared is not None and header in MANIFEST_TYPES and header != declared:
        raise _invalid(
            "the manifest's mediaType does not match the Content-Type header",
            mediaType=declared,
            contentType=header,
        )
    media_type = declared if declared is not None else header
    if media_type not in MANIFEST_TYPES:
        raise _invalid(
            "unsupported manifest media type",
            mediaType=media_type,
            supported=sorted(MANIFEST_TYPES),
        )
    return media_type


def parse_manifest(body: bytes, content_type: str | None) -> Manifest:
    """Parse a pushed manifest; raise ``MANIFEST_INVALID`` naming the first structural fault."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise _invalid(f"manifest is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise _invalid("manifest is not a JSON object")
    if document.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2", schemaVersion=document.get("schemaVersion"))
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType is not a string")
    media_type = _choose_media_type(declared, content_type)

    config = None
    if media_type in INDEX_TYPES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("an index must have a manifests list")
        references = tuple(_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries))
    else:
        config = _descriptor(document.get("config"), "config")
        layers = document.get("layers", [])
        if not isinstance(layers, list):
            raise _invalid("layers is not a list")
        references = tuple(_descriptor(e, f"layers[{i}]") for i, e in enumerate(layers))

    subject = None
    if document.get("subject") is not None:
        subject = _descriptor(document["subject"], "subject")
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType is not a string")
    if artifact_type is None and config is not None:
        artifact_type = config.media_type
    return Manifest(
        media_type=media_type,
        config=config,
        references=references,
        subject=subject,
        artifact_type=artifact_type,
        annotations=_annotations(document, "manifest"),
    )
