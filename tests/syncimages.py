"""Small deterministic images for the sync tests: single-platform manifests, multi-arch indexes (OCI
index or Docker manifest list, two platforms), referrers; pushed into an ImageStore directly or into
any registry over the OCI API (monolithic blob uploads, manifests by digest then by tag)."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import attrs
import treq
from treq.client import HTTPClient

from tests.integration.ocilayout import pseudo_random_bytes
from zotpy.oci.digest import parse_digest
from zotpy.oci.manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from zotpy.storage.imagestore import ImageStore

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
PLATFORMS = ("linux/amd64", "linux/arm64")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@attrs.frozen
class Manifest:
    media_type: str
    body: bytes

    @property
    def digest(self) -> str:
        return sha256(self.body)


@attrs.frozen
class SyncImage:
    """``top`` is what a tag names; ``children`` are pushed (by digest) before it."""

    top: Manifest
    blobs: dict[str, bytes]
    children: tuple[Manifest, ...] = ()

    @property
    def digest(self) -> str:
        return self.top.digest

    @property
    def media_type(self) -> str:
        return self.top.media_type


def single(name: str, platform: str = "linux/amd64", docker: bool = False, layer_sizes: tuple[int, ...] = (600, 3000),
           subject: Manifest | None = None, artifact_type: str | None = None) -> SyncImage:
    os_name, architecture = platform.split("/")
    config = _json({"architecture": architecture, "os": os_name, "rootfs": {"type": "layers", "diff_ids": []},
                    "config": {"Labels": {"name": name}}})
    layers = [pseudo_random_bytes(f"{name}/{platform}/{index}", size) for index, size in enumerate(layer_sizes)]
    blobs = {sha256(blob): blob for blob in [config, *layers]}
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": DOCKER_LAYER if docker else OCI_LAYER, "digest": sha256(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    if subject is not None:
        manifest["subject"] = {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.body)}
    if artifact_type is not None:
        manifest["artifactType"] = artifact_type
    return SyncImage(Manifest(manifest["mediaType"], _json(manifest)), blobs)


def multi_arch(name: str, docker: bool = False, platforms: tuple[str, ...] = PLATFORMS) -> SyncImage:
    """An OCI index (or a Docker manifest list) of one image per platform."""
    children = [single(name, platform, docker=docker) for platform in platforms]
    index = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST if docker else OCI_INDEX,
        "manifests": [
            {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": len(child.top.body),
                "platform": {"os": platform.split("/")[0], "architecture": platform.split("/")[1]},
            }
            for child, platform in zip(children, platforms)
        ],
    }
    blobs: dict[str, bytes] = {}
    for child in children:
        blobs.update(child.blobs)
    return SyncImage(Manifest(index["mediaType"], _json(index)), blobs, tuple(child.top for child in children))


def signature_for(image: SyncImage, name: str = "sig") -> SyncImage:
    """An artifact manifest whose subject is ``image`` (what a signer would push)."""
    return single(name, layer_sizes=(100,), subject=image.top, artifact_type="application/vnd.example.signature")


async def push_to_store(store: ImageStore, repo: str, image: SyncImage, tag: str | None) -> None:
    for digest, blob in image.blobs.items():
        await store.put_blob(repo, parse_digest(digest), io.BytesIO(blob))
    for child in image.children:
        await store.put_manifest(repo, child.digest, child.body, child.media_type)
    await store.put_manifest(repo, tag or image.digest, image.top.body, image.media_type)


async def push_http(client: HTTPClient, base: str, repo: str, image: SyncImage, tag: str | None,
                    headers: dict[str, str] | None = None) -> None:
    """Push over the OCI API (works against docker-registry, zot and zotpy)."""
    extra = {key: [value] for key, value in (headers or {}).items()}

    async def expect(response: Any, codes: tuple[int, ...], what: str) -> None:
        body = await treq.content(response)
        if response.code not in codes:
            raise AssertionError(f"{what}: {response.code} {body[:300]!r}")

    for digest, blob in image.blobs.items():
        head = await client.head(f"{base}/v2/{repo}/blobs/{digest}", headers=extra)
        await treq.content(head)
        if head.code == 200:
            continue
        started = await client.post(f"{base}/v2/{repo}/blobs/uploads/", headers=extra)
        await expect(started, (202,), f"start upload to {repo}")
        location = started.headers.getRawHeaders(b"location")[0].decode()
        if location.startswith("/"):
            location = base + location
        separator = "&" if "?" in location else "?"
        put = await client.put(f"{location}{separator}digest={digest}", data=blob,
                               headers={"Content-Type": ["application/octet-stream"], **extra})
        await expect(put, (201,), f"blob {digest} to {repo}")
    for manifest in [*image.children, image.top]:
        reference = tag if manifest is image.top and tag else manifest.digest
        put = await client.put(f"{base}/v2/{repo}/manifests/{reference}", data=manifest.body,
                               headers={"Content-Type": [manifest.media_type], **extra})
        await expect(put, (201,), f"manifest {repo}:{reference}")
