"""A known set of images for the search API's tests: a base image and images derived from it, a
multi-arch index, referrers (an SBOM and a signature), an artifact with ``artifactType``.

Pushed through a :class:`Pusher`: straight into an ImageStore (unit tests) or over HTTP to any
replica of a cluster (integration tests), so both check the same facts.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

import attrs

from tests.storeimages import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, descriptor, digest, encode

SBOM_TYPE = "application/spdx+json"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
DOC_TYPE = "application/vnd.example.doc.v1"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
ANNOTATION = "org.opencontainers.image."


class Pusher(Protocol):
    async def blob(self, repo: str, data: bytes) -> None: ...

    async def manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> None: ...


@attrs.define
class Pushed:
    """What was pushed: manifest digest and bytes, config digest, layers (digest, size)."""

    digest: str
    body: bytes
    config: str | None = None
    layers: list[tuple[str, int]] = attrs.field(factory=list)


LAYER = {name: f"layer {name} ".encode() * (10 + i) for i, name in enumerate("abcdefg")}


async def image(
    pusher: Pusher, repo: str, tag: str, layers: str, arch: str = "amd64", annotations: dict[str, str] | None = None
) -> Pushed:
    history = [{"created": "2024-01-0%dT00:00:00Z" % (i + 1), "created_by": f"ADD {name}"} for i, name in enumerate(layers)]
    history.insert(1, {"created": "2024-01-01T12:00:00Z", "created_by": "ENV x=1", "empty_layer": True})
    config = encode(
        {"architecture": arch, "os": "linux", "created": "2024-02-01T00:00:00Z", "history": history,
         "config": {"Labels": {ANNOTATION + "title": f"{repo} title"}}, "rootfs": {"type": "layers"}}
    )
    await pusher.blob(repo, config)
    for name in layers:
        await pusher.blob(repo, LAYER[name])
    document: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, LAYER[name]) for name in layers],
    }
    if annotations:
        document["annotations"] = annotations
    body = encode(document)
    await pusher.manifest(repo, tag, body, OCI_MANIFEST)
    return Pushed(digest(body), body, digest(config), [(digest(LAYER[n]), len(LAYER[n])) for n in layers])


async def artifact(
    pusher: Pusher, repo: str, reference: str, artifact_type: str, payload: bytes,
    subject: Pushed | None = None, annotations: dict[str, str] | None = None,
) -> Pushed:
    await pusher.blob(repo, b"{}")
    await pusher.blob(repo, payload)
    document: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": descriptor(EMPTY_CONFIG, b"{}"), "layers": [descriptor("application/octet-stream", payload)],
    }
    if subject is not None:
        document["subject"] = descriptor(OCI_MANIFEST, subject.body)
    if annotations:
        document["annotations"] = annotations
    body = encode(document)
    await pusher.manifest(repo, reference if subject is None else digest(body), body, OCI_MANIFEST)
    return Pushed(digest(body), body, digest(b"{}"), [(digest(payload), len(payload))])


async def index(pusher: Pusher, repo: str, tag: str, children: list[tuple[Pushed, str]]) -> Pushed:
    body = encode(
        {
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                descriptor(OCI_MANIFEST, child.body, platform={"os": "linux", "architecture": arch})
                for child, arch in children
            ],
            "annotations": {ANNOTATION + "description": "multi-arch"},
        }
    )
    await pusher.manifest(repo, tag, body, OCI_INDEX)
    return Pushed(digest(body), body)


@attrs.define
class Catalogue:
    base: Pushed
    app_v1: Pushed
    app_v2: Pushed
    amd64: Pushed
    arm64: Pushed
    multi: Pushed
    sbom: Pushed
    signature: Pushed
    doc: Pushed


async def push_all(pusher: Pusher, tick: Callable[[], Awaitable[None]]) -> Catalogue:
    """The whole set, in push order (``tick`` between pushes, so push times differ):
    ``library/alpine:3.19`` (layers a b), ``team/app:v1`` (a b c) and ``:v2`` (a b c d), both derived
    from alpine; ``multi:latest`` an index of amd64 (e) and arm64 (f); an SBOM and a cosign signature
    referring to ``team/app:v1``; ``docs:guide`` an artifact with ``artifactType``."""
    base = await image(
        pusher, "library/alpine", "3.19", "ab",
        annotations={ANNOTATION + "description": "a small base", ANNOTATION + "vendor": "Alpine", ANNOTATION + "licenses": "MIT"},
    )
    await tick()
    app_v1 = await image(pusher, "team/app", "v1", "abc")
    await tick()
    app_v2 = await image(pusher, "team/app", "v2", "abcd", annotations={ANNOTATION + "vendor": "Team"})
    await tick()
    amd64 = await image(pusher, "multi", "amd64-only", "e")
    arm64 = await image(pusher, "multi", "arm64-only", "f", arch="arm64")
    multi = await index(pusher, "multi", "latest", [(amd64, "amd64"), (arm64, "arm64")])
    await tick()
    sbom = await artifact(pusher, "team/app", "", SBOM_TYPE, b"spdx", app_v1, {ANNOTATION + "title": "sbom"})
    signature = await artifact(pusher, "team/app", "", SIGNATURE_TYPE, b"sig", app_v1)
    await tick()
    doc = await artifact(pusher, "docs", "guide", DOC_TYPE, b"# guide", annotations={ANNOTATION + "title": "Guide"})
    return Catalogue(base, app_v1, app_v2, amd64, arm64, multi, sbom, signature, doc)
