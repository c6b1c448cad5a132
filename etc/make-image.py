#!/usr/bin/env python3
"""Write a tiny OCI image layout to push, so the README's examples need no Docker Hub.

    python3 etc/make-image.py DIR [TAG]      # then: skopeo copy oci:DIR:TAG docker://...

The image has one layer holding /hello.txt, a config for linux/amd64 and a manifest; TAG
(default ``v1``) is recorded in DIR/index.json, as ``skopeo copy oci:DIR:TAG`` expects. Running
it twice gives the same digests (fixed timestamps and owners), so a second push is a no-op.
Standard library only: it runs before ``pip install``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 1_700_000_000  # fixed mtime: the same bytes on every run


def _blob(layout: str, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _layer_tar(text: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entry = tarfile.TarInfo("hello.txt")
        entry.size, entry.mtime, entry.mode = len(text), EPOCH, 0o644
        tar.addfile(entry, io.BytesIO(text))
    return raw.getvalue()


def _json(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def make_image(layout: str, tag: str) -> str:
    """Write the layout; return the manifest's digest."""
    tar = _layer_tar(b"hello from a tiny OCI image\n")
    layer = _blob(layout, gzip.compress(tar, mtime=EPOCH), "application/vnd.oci.image.layer.v1.tar+gzip")
    config = _blob(
        layout,
        _json({
            "architecture": "amd64",
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
        }),
        "application/vnd.oci.image.config.v1+json",
    )
    manifest = _blob(
        layout,
        _json({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [layer],
        }),
        "application/vnd.oci.image.manifest.v1+json",
    )
    with open(os.path.join(layout, "oci-layout"), "w") as stream:
        json.dump({"imageLayoutVersion": "1.0.0"}, stream)
    index_path = os.path.join(layout, "index.json")
    manifests = []
    if os.path.exists(index_path):  # keep the layout's other tags
        with open(index_path) as stream:
            manifests = [
                entry for entry in json.load(stream).get("manifests", [])
                if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag
            ]
    manifests.append({**manifest, "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(index_path, "w") as stream:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests}, stream, indent=2)
    return manifest["digest"]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1].startswith("-"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    layout, tag = argv[1], argv[2] if len(argv) == 3 else "v1"
    digest = make_image(layout, tag)
    print(f"oci:{layout}:{tag} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
