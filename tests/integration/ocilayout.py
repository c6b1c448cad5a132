"""Build small, deterministic OCI image layouts for integration tests.

:func:`build_image` writes a complete OCI image layout (the directory format
of the OCI image spec, readable by ``skopeo copy oci:DIR:TAG ...``) using only
the standard library: an ``oci-layout`` marker, an ``index.json`` naming the
tag, and under ``blobs/sha256/`` the gzip-compressed tar layers, a valid image
config and an image manifest.

Everything is deterministic: tar entries have fixed owners and mtimes, the
gzip header has a fixed mtime and no file name, and JSON is serialised with
sorted keys, so calling :func:`build_image` twice with the same arguments
gives byte-identical blobs and therefore the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from typing import Any, Mapping, Sequence

import attr

#: Media types used in the layout.
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

#: Annotation holding the tag in an OCI layout's ``index.json``.
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

#: Fixed timestamp (2023-11-14T22:13:20Z) for tar entries and the gzip header.
FIXED_MTIME = 1_700_000_000
FIXED_CREATED = "2023-11-14T22:13:20Z"


@attr.s(auto_attribs=True, frozen=True)
class Descriptor:
    """An OCI content descriptor for a blob written to the layout."""

    mediaType: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        """The descriptor as it appears in a manifest or index."""
        return {"mediaType": self.mediaType, "digest": self.digest, "size": self.size}


@attr.s(auto_attribs=True, frozen=True)
class OCIImage:
    """What :func:`build_image` wrote.

    :ivar path: the layout directory (use ``f"oci:{path}:{tag}"`` with skopeo).
    :ivar tag: the tag recorded in ``index.json``.
    :ivar manifest_digest: ``sha256:...`` digest of the manifest bytes.
    :ivar manifest_bytes: the exact manifest bytes stored in the layout.
    :ivar config_digest: ``sha256:...`` digest of the image config blob.
    :ivar layer_digests: ``sha256:...`` digests of the compressed layer blobs,
        in manifest order.
    :ivar diff_ids: ``sha256:...`` digests of the uncompressed layer tars, as
        listed in the config's ``rootfs.diff_ids``.
    :ivar manifest: the manifest descriptor (as listed in ``index.json``).
    :ivar config: the config descriptor.
    :ivar layers: the layer descriptors.
    """

    path: str
    tag: str
    manifest_digest: str
    manifest_bytes: bytes
    config_digest: str
    layer_digests: tuple[str, ...]
    diff_ids: tuple[str, ...]
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]

    def reference(self) -> str:
        """The skopeo transport reference ``oci:PATH:TAG`` for this image."""
        return f"oci:{self.path}:{self.tag}"


def sha256_digest(data: bytes) -> str:
    """Return the OCI digest string (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` deterministically (sorted keys, compact separators)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def make_tar(files: Mapping[str, bytes]) -> bytes:
    """Return an uncompressed, deterministic tar archive holding ``files``.

    ``files`` maps relative paths (``"etc/app/conf"``) to contents. Parent
    directories are added as entries of their own; everything is owned by
    root with fixed modes and mtimes, entries sorted by name.
    """
    dirs: set[str] = set()
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries: list[tuple[str, bytes | None]] = [(d, None) for d in dirs]
        entries += list(files.items())
        for name, content in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.type = tarfile.REGTYPE
                info.mode = 0o644
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def gzip_deterministic(data: bytes) -> bytes:
    """Gzip ``data`` with a fixed header (mtime, no file name) and level 6."""
    buf = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=buf, compresslevel=6, mtime=FIXED_MTIME
    ) as gz:
        gz.write(data)
    return buf.getvalue()


def pseudo_random_bytes(seed: str, size: int) -> bytes:
    """``size`` deterministic, incompressible bytes derived from ``seed``."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def default_layer_files(index: int, name: str, payload_size: int = 4096) -> dict[str, bytes]:
    """The few files put in layer number ``index`` (0-based) of image ``name``.

    ``payload_size`` is the size of ``layer<N>/data.bin``, filled with
    incompressible bytes, so the compressed layer is a little larger than
    that: use a few MiB to exercise streaming uploads.
    """
    return {
        f"layer{index}/README": f"layer {index} of {name}\n".encode(),
        f"layer{index}/data.bin": pseudo_random_bytes(f"{name}/{index}", payload_size),
        f"etc/{name}/layer{index}.conf": f"[layer]\nindex = {index}\n".encode(),
    }


def _write_blob(blobs_dir: str, data: bytes) -> str:
    digest = sha256_digest(data)
    path = os.path.join(blobs_dir, digest.split(":", 1)[1])
    with open(path, "wb") as f:
        f.write(data)
    return digest


def build_image(
    path: str,
    tag: str = "v1",
    layers: int | Sequence[Mapping[str, bytes]] = 3,
    name: str = "app",
    annotations: Mapping[str, str] | None = None,
) -> OCIImage:
    """Write a multi-layer OCI image layout into directory ``path``.

    :param path: the layout directory; created if missing. If it already holds
        a layout, the new image is added to its ``index.json`` (replacing any
        entry with the same tag).
    :param tag: the tag, stored as ``org.opencontainers.image.ref.name``.
    :param layers: either a number of layers, each filled by
        :func:`default_layer_files`, or explicit per-layer file mappings.
    :param name: a name mixed into file contents, the config and the
        manifest annotations; different names give different digests.
    :param annotations: extra manifest annotations.
    :return: an :class:`OCIImage` with the digests of what was written.
    """
    if isinstance(layers, int):
        layer_files = [default_layer_files(i, name) for i in range(layers)]
    else:
        layer_files = [dict(files) for files in layers]
    if not layer_files:
        raise ValueError("an image needs at least one layer")

    blobs_dir = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs_dir, exist_ok=True)

    layer_descs: list[Descriptor] = []
    diff_ids: list[str] = []
    history: list[dict[str, Any]] = []
    for i, files in enumerate(layer_files):
        tar_bytes = make_tar(files)
        diff_ids.append(sha256_digest(tar_bytes))
        blob = gzip_deterministic(tar_bytes)
        digest = _write_blob(blobs_dir, blob)
        layer_descs.append(Descriptor(MEDIA_TYPE_LAYER_GZIP, digest, len(blob)))
        history.append(
            {
                "created": FIXED_CREATED,
                "created_by": f"ocilayout: add layer {i} ({len(files)} files)",
                "comment": f"zotpy test image {name}",
            }
        )

    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": FIXED_CREATED,
        "author": "zotpy tests",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": {"org.zotpy.test.name": name},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    config_bytes = canonical_json(config)
    config_digest = _write_blob(blobs_dir, config_bytes)
    config_desc = Descriptor(MEDIA_TYPE_CONFIG, config_digest, len(config_bytes))

    manifest_annotations = {"org.opencontainers.image.title": name}
    manifest_annotations.update(annotations or {})
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [d.to_json() for d in layer_descs],
        "annotations": manifest_annotations,
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = _write_blob(blobs_dir, manifest_bytes)
    manifest_desc = Descriptor(MEDIA_TYPE_MANIFEST, manifest_digest, len(manifest_bytes))

    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)

    index_path = os.path.join(path, "index.json")
    entries: list[dict[str, Any]] = []
    if os.path.exists(index_path):
        with open(index_path) as f:
            entries = [
                m
                for m in json.load(f).get("manifests", [])
                if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
            ]
    entry = manifest_desc.to_json()
    entry["annotations"] = {REF_NAME_ANNOTATION: tag}
    entries.append(entry)
    with open(index_path, "wb") as f:
        f.write(
            canonical_json(
                {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": entries}
            )
        )

    return OCIImage(
        path=path,
        tag=tag,
        manifest_digest=manifest_digest,
        manifest_bytes=manifest_bytes,
        config_digest=config_digest,
        layer_digests=tuple(d.digest for d in layer_descs),
        diff_ids=tuple(diff_ids),
        manifest=manifest_desc,
        config=config_desc,
        layers=tuple(layer_descs),
    )


def read_index(path: str) -> dict[str, Any]:
    """Load ``index.json`` of the OCI layout (or zot repository) at ``path``."""
    with open(os.path.join(path, "index.json")) as f:
        return json.load(f)


def tagged_manifest_digest(path: str, tag: str) -> str | None:
    """The digest that ``index.json`` at ``path`` records for ``tag``, if any."""
    for m in read_index(path).get("manifests", []):
        if m.get("annotations", {}).get(REF_NAME_ANNOTATION) == tag:
            return m["digest"]
    return None


def read_blob(path: str, digest: str) -> bytes:
    """Read blob ``digest`` (``sha256:<hex>``) from the layout at ``path``."""
    algo, hexdigest = digest.split(":", 1)
    with open(os.path.join(path, "blobs", algo, hexdigest), "rb") as f:
        return f.read()
