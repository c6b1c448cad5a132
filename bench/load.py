"""The load client: pushes and pulls images over the OCI distribution API with a concurrency setting.

A push goes as a client's would: for each blob a HEAD first (a blob the registry has is not sent
again), then an upload, monolithic (POST, then PUT ``?digest=`` with the bytes) or chunked (POST,
PATCHes with ``Content-Range``, then an empty PUT ``?digest=``), and last the manifest PUT. A pull
GETs the manifest by tag and every blob it names, and checks the SHA-256 of every byte received.
``concurrency`` workers take whole images from one queue, each on its own keep-alive connection.

What it measures per phase: images/s, blob MB/s (10^6 bytes), latencies of manifest GET/PUT, blob
GET and blob upload (POST to the final PUT), and errors by operation and status.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from typing import Any, Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import attrs

from bench.common import percentile
from bench.wire import Connection, ConnectionFailed, Reply, path_of

MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"


@attrs.frozen
class Blob:
    digest: str
    data: memoryview

    @property
    def size(self) -> int:
        return len(self.data)


@attrs.frozen
class Image:
    repo: str
    tag: str
    config: Blob
    layers: tuple[Blob, ...]
    manifest: bytes
    digest: str

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


def make_images(prefix: str, repos: int, images: int, layers: int, layer_size: int) -> list[Image]:
    """``repos`` x ``images`` images of ``layers`` random layers each (fresh random bytes: every
    call gives blobs no registry has yet), repositories ``<prefix>/repo<k>``, tags ``v<i>``."""
    pool = memoryview(os.urandom(repos * images * layers * layer_size))
    result = []
    position = 0
    for r in range(repos):
        for i in range(images):
            blobs = []
            for _ in range(layers):
                data = pool[position : position + layer_size]
                position += layer_size
                blobs.append(Blob("sha256:" + hashlib.sha256(data).hexdigest(), data))
            repo = f"{prefix}/repo{r}"
            config_bytes = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Labels": {"bench": f"{repo}:v{i}"}},
                    "rootfs": {"type": "layers", "diff_ids": [blob.digest for blob in blobs]},
                },
                sort_keys=True,
            ).encode()
            config = Blob("sha256:" + hashlib.sha256(config_bytes).hexdigest(), memoryview(config_bytes))
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_TYPE_MANIFEST,
                    "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": config.digest, "size": config.size},
                    "layers": [
                        {"mediaType": MEDIA_TYPE_LAYER, "digest": blob.digest, "size": blob.size} for blob in blobs
                    ],
                },
                sort_keys=True,
            ).encode()
            digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            result.append(Image(repo, f"v{i}", config, tuple(blobs), manifest, digest))
    return result


class Failed(Exception):
    """One step of an image's push or pull went wrong (already counted)."""


@attrs.define
class Phase:
    """What one push or pull phase saw."""

    name: str
    images: int = 0
    failed_images: int = 0
    blob_bytes: int = 0
    seconds: float = 0.0
    latencies: dict[str, list[float]] = attrs.field(factory=lambda: defaultdict(list))
    errors: Counter[str] = attrs.field(factory=Counter)
    skipped_blobs: int = 0

    def expect(self, operation: str, reply: Reply, *statuses: int) -> Reply:
        if reply.status not in statuses:
            self.errors[f"{operation} {reply.status}"] += 1
            raise Failed(f"{operation}: {reply.status} {reply.body[:300]!r}")
        return reply

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "images": self.images,
            "failed_images": self.failed_images,
            "seconds": round(self.seconds, 4),
            "images_per_s": round(self.images / self.seconds, 2) if self.seconds else 0.0,
            "blob_MBps": round(self.blob_bytes / self.seconds / 1e6, 2) if self.seconds else 0.0,
            "errors": dict(self.errors),
        }
        if self.skipped_blobs:
            out["skipped_blobs"] = self.skipped_blobs
        for operation, samples in sorted(self.latencies.items()):
            out[f"{operation}_ms"] = {
                "n": len(samples),
                "p50": round(percentile(samples, 0.50) * 1000, 3),
                "p95": round(percentile(samples, 0.95) * 1000, 3),
                "p99": round(percentile(samples, 0.99) * 1000, 3),
            }
        return out


async def _timed(phase: Phase, operation: str, step: Awaitable[Reply]) -> Reply:
    started = time.perf_counter()
    reply = await step
    phase.latencies[operation].append(time.perf_counter() - started)
    return reply


@attrs.define
class OCIClient:
    """The OCI steps over one connection. ``chunk``: PATCH size of chunked uploads; ``mode``:
    ``monolithic``, ``chunked``, or ``mixed`` (config and even layers monolithic, odd layers chunked)."""

    connection: Connection
    chunk: int
    mode: str = "mixed"
    #: connections to where blob GETs are redirected (``storage.redirectBlobURL``), by host:port
    elsewhere: dict[str, Connection] = attrs.field(factory=dict)

    def _chunked(self, index: int) -> bool:
        return self.mode == "chunked" or (self.mode == "mixed" and index % 2 == 0 and index > 0)

    async def upload(self, phase: Phase, repo: str, blob: Blob, chunked: bool) -> None:
        http = self.connection
        reply = phase.expect("POST upload", await http.request("POST", f"/v2/{repo}/blobs/uploads/"), 202)
        location = path_of(reply.headers["location"])
        if chunked:
            for offset in range(0, blob.size, self.chunk):
                piece = blob.data[offset : offset + self.chunk]
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                }
                reply = phase.expect("PATCH upload", await http.request("PATCH", location, headers, piece), 202)
                location = path_of(reply.headers["location"])
            body: bytes | memoryview = b""
        else:
            body = blob.data
        separator = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream"}
        reply = await http.request("PUT", f"{location}{separator}digest={blob.digest}", headers, body)
        phase.expect("PUT upload", reply, 201)
        if reply.headers.get("docker-content-digest") != blob.digest:
            phase.errors["PUT upload digest"] += 1
            raise Failed(f"PUT upload: Docker-Content-Digest {reply.headers.get('docker-content-digest')}")

    async def push(self, phase: Phase, image: Image) -> None:
        http = self.connection
        for index, blob in enumerate(image.blobs):
            reply = await http.request("HEAD", f"/v2/{image.repo}/blobs/{blob.digest}")
            if phase.expect("HEAD blob", reply, 200, 404).status == 200:
                phase.skipped_blobs += 1
                continue
            started = time.perf_counter()
            await self.upload(phase, image.repo, blob, self._chunked(index))
            phase.latencies["blob_upload"].append(time.perf_counter() - started)
            phase.blob_bytes += blob.size
        headers = {"Content-Type": MEDIA_TYPE_MANIFEST}
        step = http.request("PUT", f"/v2/{image.repo}/manifests/{image.tag}", headers, image.manifest)
        reply = phase.expect("PUT manifest", await _timed(phase, "manifest_put", step), 201)
        if reply.headers.get("docker-content-digest") != image.digest:
            phase.errors["PUT manifest digest"] += 1
            raise Failed("PUT manifest: wrong Docker-Content-Digest")

    async def pull(self, phase: Phase, image: Image, by_digest: bool = False) -> None:
        http = self.connection
        reference = image.digest if by_digest else image.tag
        step = http.request("GET", f"/v2/{image.repo}/manifests/{reference}", {"Accept": MEDIA_TYPE_MANIFEST})
        reply = phase.expect("GET manifest", await _timed(phase, "manifest_get", step), 200)
        if "sha256:" + hashlib.sha256(reply.body).hexdigest() != image.digest:
            phase.errors["GET manifest digest"] += 1
            raise Failed("GET manifest: the bytes do not hash to the pushed digest")
        for descriptor in [json.loads(reply.body)["config"], *json.loads(reply.body)["layers"]]:
            await self.pull_blob(phase, image.repo, descriptor["digest"], descriptor["size"])

    async def pull_blob(self, phase: Phase, repo: str, digest: str, size: int) -> None:
        hasher = hashlib.sha256()
        step = self._get_blob(f"/v2/{repo}/blobs/{digest}", hasher.update)
        reply = phase.expect("GET blob", await _timed(phase, "blob_get", step), 200)
        if reply.length != size or "sha256:" + hasher.hexdigest() != digest:
            phase.errors["GET blob digest"] += 1
            raise Failed(f"GET blob {digest}: {reply.length} bytes hashing to sha256:{hasher.hexdigest()}")
        phase.blob_bytes += size


    async def _get_blob(self, path: str, sink: Callable[[bytes], object]) -> Reply:
        """GET a blob, following a 307 to the storage (a presigned URL) as a client does."""
        reply = await self.connection.request("GET", path, sink=sink)
        location = reply.headers.get("location") if reply.status == 307 else None
        if location is None:
            return reply
        where = urlsplit(location)
        netloc = where.netloc
        if netloc not in self.elsewhere:
            self.elsewhere[netloc] = Connection(where.hostname or "", where.port or 80)
        return await self.elsewhere[netloc].request("GET", path_of(location), sink=sink)

    def close(self) -> None:
        self.connection.close()
        for connection in self.elsewhere.values():
            connection.close()


async def run_phase(
    name: str,
    host: str,
    port: int,
    items: Sequence[Any],
    concurrency: int,
    work: Callable[[OCIClient, Phase, Any], Awaitable[None]],
    chunk: int,
    mode: str = "mixed",
    headers: Mapping[str, str] | None = None,
) -> Phase:
    """Run ``work(client, phase, item)`` over ``items`` with ``concurrency`` workers, each on its own
    connection; an item whose work raised is counted as failed, and the others go on."""
    phase = Phase(name)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        client = OCIClient(Connection(host, port, headers), chunk, mode)
        try:
            while not queue.empty():
                item = queue.get_nowait()
                try:
                    await work(client, phase, item)
                except Failed:
                    phase.failed_images += 1
                except ConnectionFailed as error:
                    phase.errors[f"connection: {str(error)[:80]}"] += 1
                    phase.failed_images += 1
                else:
                    phase.images += 1
        finally:
            client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    return phase


async def push_and_pull(
    host: str, port: int, images: Sequence[Image], concurrency: int, chunk: int, mode: str = "mixed",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    push = await run_phase("push", host, port, images, concurrency, OCIClient.push, chunk, mode, headers)
    pull = await run_phase("pull", host, port, images, concurrency, OCIClient.pull, chunk, mode, headers)
    return {"push": push.summary(), "pull": pull.summary()}
