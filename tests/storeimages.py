"""Images pushed straight into an :class:`ImageStore` (no HTTP): what metadata and lifecycle tests
start from."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from zotpy.oci.digest import parse_digest
from zotpy.storage.imagestore import ImageStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


async def put_blob(store: ImageStore, repo: str, data: bytes) -> str:
    await store.put_blob(repo, parse_digest(digest(data)), io.BytesIO(data))
    return digest(data)


async def push_image(
    store: ImageStore, repo: str, reference: str, layers: list[bytes], subject: bytes | None = None
) -> tuple[str, bytes]:
    """Push blobs and a manifest listing them (with ``subject``: a referrer of that manifest);
    the manifest's digest and bytes."""
    config = encode({"architecture": "amd64", "os": "linux", "layers": len(layers), "ref": reference})
    for blob in [config, *layers]:
        await put_blob(store, repo, blob)
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
    }
    if subject is not None:
        document["subject"] = descriptor(OCI_MANIFEST, subject)
        document["artifactType"] = "application/vnd.example.sbom"
    body = encode(document)
    await store.put_manifest(repo, reference, body, OCI_MANIFEST)
    return digest(body), body


async def push_index(store: ImageStore, repo: str, reference: str, children: list[bytes]) -> tuple[str, bytes]:
    body = encode(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, c) for c in children]}
    )
    await store.put_manifest(repo, reference, body, OCI_INDEX)
    return digest(body), body
