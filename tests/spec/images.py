"""Builds the content the spec matrix pushes: blobs, descriptors, image manifests, indexes, artifacts.

Written from the OCI image spec (descriptor, manifest, index, artifact and ``subject`` fields). Every
builder takes the variant's digest algorithm, so one behaviour pushes sha256 or sha512 content alike.
A manifest's own digest is what the registry computes (sha256, its canonical algorithm) unless it is
pushed by a digest of another algorithm, hence :meth:`Manifest.digest_as`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any, Iterable, Mapping

import attr

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_NONDISTRIBUTABLE_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

#: The OCI image spec's empty descriptor content: ``{}``.
EMPTY_JSON = b"{}"


def digest_of(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


@attr.s(auto_attribs=True, frozen=True)
class Blob:
    data: bytes
    media_type: str
    algorithm: str

    @property
    def digest(self) -> str:
        return digest_of(self.data, self.algorithm)

    def descriptor(self, **fields: Any) -> dict[str, Any]:
        """The blob's descriptor, with extra descriptor fields (``annotations``, ``urls``, ``data``...)."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **fields}


@attr.s(auto_attribs=True, frozen=True)
class Manifest:
    """A manifest or index as pushed (exact bytes) and the blobs it needs in the repository first."""

    body: bytes
    media_type: str
    blobs: tuple[Blob, ...] = ()
    children: tuple["Manifest", ...] = ()  # an index's manifests, to push before it

    @property
    def digest(self) -> str:
        """The digest the registry reports (``Docker-Content-Digest``): sha256 of the bytes."""
        return digest_of(self.body, "sha256")

    def digest_as(self, algorithm: str) -> str:
        return digest_of(self.body, algorithm)

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)

    def descriptor(self, **fields: Any) -> dict[str, Any]:
        """A sha256 descriptor of this manifest (as an index or ``subject`` names it)."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body), **fields}


def encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode()


def config_blob(algorithm: str, media_type: str = OCI_CONFIG) -> Blob:
    content = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"nonce": os.urandom(8).hex()}},
    }
    return Blob(encode(content), media_type, algorithm)


def layer_blob(algorithm: str, size: int = 2048, media_type: str = OCI_LAYER) -> Blob:
    return Blob(random_bytes(size), media_type, algorithm)


def empty_blob(algorithm: str) -> Blob:
    return Blob(EMPTY_JSON, OCI_EMPTY, algorithm)


def image(
    algorithm: str,
    layer_sizes: Iterable[int] = (2048, 5000),
    *,
    config: Blob | None = None,
    layers: Iterable[Blob] | None = None,
    layer_descriptors: Iterable[Mapping[str, Any]] = (),
    **fields: Any,
) -> Manifest:
    """An OCI image manifest with fresh random layers (or ``layers``); ``fields`` are added to the
    document (``annotations``, ``artifactType``, ``subject``, or fields of no meaning to the spec).
    ``layer_descriptors`` are appended as given, for layers the registry must not ask for."""
    config = config or config_blob(algorithm)
    chosen = list(layers) if layers is not None else [layer_blob(algorithm, size) for size in layer_sizes]
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in chosen] + [dict(d) for d in layer_descriptors],
        **fields,
    }
    return Manifest(encode(document), OCI_MANIFEST, blobs=(config, *chosen))


def artifact(algorithm: str, artifact_type: str, subject: Manifest | None = None, **fields: Any) -> Manifest:
    """An artifact as the image spec recommends: ``artifactType``, the empty config, one blob."""
    extra: dict[str, Any] = {"artifactType": artifact_type, **fields}
    if subject is not None:
        extra["subject"] = subject.descriptor()
    payload = Blob(random_bytes(300), "application/vnd.example.payload", algorithm)
    return image(algorithm, config=empty_blob(algorithm), layers=[payload], **extra)


def index(manifests: Iterable[Manifest], **fields: Any) -> Manifest:
    """An OCI image index of ``manifests`` (images or indexes: nesting is allowed)."""
    children = tuple(manifests)
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            child.descriptor(platform={"architecture": f"arch{n}", "os": "linux"}) for n, child in enumerate(children)
        ],
        **fields,
    }
    return Manifest(encode(document), OCI_INDEX, children=children)


def docker_image(algorithm: str) -> Manifest:
    """A Docker image manifest v2 schema 2 (registries serve it next to OCI)."""
    config = config_blob(algorithm, DOCKER_CONFIG)
    layer = layer_blob(algorithm, 1500, DOCKER_LAYER)
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    }
    return Manifest(encode(document), DOCKER_MANIFEST, blobs=(config, layer))


def inline_data(blob: Blob) -> dict[str, Any]:
    """``blob``'s descriptor carrying its content in the ``data`` field (base64)."""
    return blob.descriptor(data=base64.b64encode(blob.data).decode())
