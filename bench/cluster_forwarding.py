"""What forwarding costs: pulling through the owner vs through a replica that forwards to it.

Starts a real 3-replica cluster (``twistd -n zotpy`` on 127.0.0.1-3, one port;
a local root per replica, or with ``--storage s3`` one shared SeaweedFS bucket as in
the documented deployment), pushes one small image and
one large blob to a repository, then measures from one client process:

- manifest GET latency, p50 and p99 over ``--requests`` sequential requests on a
  persistent connection, through the owner and through a non-owner (interleaved
  in blocks so both see the same machine state);
- large-blob download throughput in MiB/s (``--blob-mib``, default 256), best
  and median of ``--rounds`` downloads through each, the bytes checked once.

Prints both and the ratios (non-owner / owner). Run from the checkout::

    python bench/cluster_forwarding.py [--storage local|s3] [--requests 500] [--blob-mib 256] [--rounds 4]

The client runs on the same machine as the three replicas; on a small machine
the numbers include its CPU competition with them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet import defer, task  # noqa: E402
from twisted.web.client import FileBodyProducer  # noqa: E402
from treq import collect  # noqa: E402

from tests.integration.cluster import (  # noqa: E402
    MEDIA_TYPE_MANIFEST,
    RegistryClient,
    ZotpyCluster,
    seaweed_storage_driver,
    small_image,
    with_query,
)

REPOSITORY = "bench/forwarding"
MIB = 1024 * 1024


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def manifest_latencies(client: RegistryClient, url: str, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.http.get(url, headers={"Accept": [MEDIA_TYPE_MANIFEST]})
        await response.content()
        samples.append(time.perf_counter() - started)
        if response.code != 200:
            raise RuntimeError(f"GET {url}: {response.code}")
    return samples


async def download(client: RegistryClient, url: str, verify: str | None) -> tuple[float, int]:
    """Seconds to read the whole blob, and its size (hashing it when ``verify`` is a digest)."""
    hasher = hashlib.sha256() if verify else None
    received = 0

    def sink(data: bytes) -> None:
        nonlocal received
        received += len(data)
        if hasher is not None:
            hasher.update(data)

    started = time.perf_counter()
    response = await client.http.get(url, unbuffered=True)
    if response.code != 200:
        raise RuntimeError(f"GET {url}: {response.code} {await response.content()!r}")
    await collect(response, sink)
    elapsed = time.perf_counter() - started
    if hasher is not None and "sha256:" + hasher.hexdigest() != verify:
        raise RuntimeError(f"GET {url}: the bytes do not hash to {verify}")
    return elapsed, received


async def push_large_blob(client: RegistryClient, base: str, path: str, digest: str) -> None:
    location = await client.start_upload(base, REPOSITORY)
    with open(path, "rb") as body:
        response = await client.http.put(
            with_query(location, digest=digest),
            data=FileBodyProducer(body),
            headers={"Content-Type": ["application/octet-stream"]},
        )
        text = await response.content()
    if response.code != 201:
        raise RuntimeError(f"PUT large blob: {response.code} {text!r}")


def write_random_file(path: str, size: int) -> str:
    hasher = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 8 * MIB))
            hasher.update(chunk)
            f.write(chunk)
            remaining -= len(chunk)
    return "sha256:" + hasher.hexdigest()


def storage_driver(kind: str) -> Any:
    """``None`` (a local root per replica) or the shared SeaweedFS bucket's driver section."""
    return seaweed_storage_driver() if kind == "s3" else None


async def run(reactor: Any, options: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="zotpy-bench-")
    cluster = ZotpyCluster(workdir, storage_driver=storage_driver(options.storage))
    await cluster.start()
    client = RegistryClient(timeout=600)
    try:
        owner = cluster.owner(REPOSITORY)
        other = cluster.non_owner(REPOSITORY)
        owner_url, other_url = cluster.url(owner), cluster.url(other)
        print(f"cluster: {cluster.members}, storage {options.storage}, workdir {workdir}")
        print(f"{REPOSITORY} is owned by replica {owner} ({cluster.members[owner]}); "
              f"non-owner: replica {other} ({cluster.members[other]})")

        image = small_image(REPOSITORY)
        await client.push_image(owner_url, REPOSITORY, image, "v1")
        blob_path = os.path.join(workdir, "large.blob")
        digest = write_random_file(blob_path, options.blob_mib * MIB)
        started = time.perf_counter()
        await push_large_blob(client, owner_url, blob_path, digest)
        print(f"pushed {options.blob_mib} MiB blob to the owner in {time.perf_counter() - started:.2f}s")
        os.unlink(blob_path)

        # Manifest latency, interleaved in blocks of 50.
        path = f"/v2/{REPOSITORY}/manifests/v1"
        await manifest_latencies(client, owner_url + path, 50)  # warm-up (connections, caches)
        await manifest_latencies(client, other_url + path, 50)
        latencies: dict[str, list[float]] = {"owner": [], "non-owner": []}
        block = 50
        while len(latencies["owner"]) < options.requests:
            n = min(block, options.requests - len(latencies["owner"]))
            latencies["owner"] += await manifest_latencies(client, owner_url + path, n)
            latencies["non-owner"] += await manifest_latencies(client, other_url + path, n)

        # Large blob, alternating.
        blob = f"/v2/{REPOSITORY}/blobs/{digest}"
        speeds: dict[str, list[float]] = {"owner": [], "non-owner": []}
        for round_ in range(options.rounds):
            for label, base in (("owner", owner_url), ("non-owner", other_url)):
                seconds, size = await download(client, base + blob, digest if round_ == 0 else None)
                if size != options.blob_mib * MIB:
                    raise RuntimeError(f"{label}: read {size} bytes")
                if round_ or options.rounds == 1:  # the first round also hashes: not timed
                    speeds[label].append(size / MIB / seconds)

        print()
        print(f"manifest GET latency over {options.requests} sequential requests (persistent connection):")
        row = "  {:<10} p50 {:7.2f} ms   p99 {:7.2f} ms   mean {:7.2f} ms"
        stats = {}
        for label, samples in latencies.items():
            stats[label] = (percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000,
                            statistics.fmean(samples) * 1000)
            print(row.format(label, *stats[label]))
        print(f"  ratio      p50 {stats['non-owner'][0] / stats['owner'][0]:7.2f} x   "
              f"p99 {stats['non-owner'][1] / stats['owner'][1]:7.2f} x")
        print()
        timed = max(1, options.rounds - 1)
        print(f"{options.blob_mib} MiB blob GET throughput ({timed} timed round(s) each):")
        best = {}
        for label, values in speeds.items():
            best[label] = max(values)
            print(f"  {label:<10} best {max(values):8.1f} MiB/s   median {statistics.median(values):8.1f} MiB/s")
        print(f"  ratio      best {best['non-owner'] / best['owner']:7.2f} x   "
              f"median {statistics.median(speeds['non-owner']) / statistics.median(speeds['owner']):7.2f} x")
    except BaseException:
        print(cluster.describe(), file=sys.stderr)
        raise
    finally:
        await client.close()
        await cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="manifest GETs per target (default 500)")
    parser.add_argument("--blob-mib", type=int, default=256, help="large blob size in MiB (default 256)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="downloads per target; the first is hashed, not timed (default 4)"
    )
    parser.add_argument(
        "--storage", choices=["local", "s3"], default="local",
        help="a local root per replica, or one shared SeaweedFS bucket (started for the run)",
    )
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
