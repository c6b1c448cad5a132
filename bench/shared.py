"""Issue 17's scenarios: pulls without the hop on shared storage, and blob GETs redirected to S3.

``shared-reads``: a 3-replica cluster on one SeaweedFS bucket (``cluster.localReads`` on, as by
default). The same small images are pulled *by digest* through each repository's owner and
through a replica that does not own it, alternately (the order flipping every round); then,
interleaved request by request so both see the same moment's machine, manifest-by-digest GETs,
small blob GETs and a large blob's download through each.

``redirect``: one zotpy on S3 with ``storage.redirectBlobURL`` (the client follows the 307 to the
bucket), one without, and raw S3 GETs of the same blobs, alternately.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import ProcessWatch, percentile
from bench.load import Image, OCIClient, Phase, make_images, run_phase
from bench.scenarios import LARGE, OWNER_BLOB, SMALL, alternate, brief, raw_s3_target, say, workload
from bench.servers import Resources
from bench.wire import Connection, ConnectionFailed

PROBES = 200
BLOB_GETS = 3
#: Each round pulls the images this many times through each path: a second or two per pass is too
#: short to outlast the machine's other work.
PULL_PASSES = 3


def _latency(samples: list[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "p50": round(percentile(samples, 0.5) * 1000, 3),
        "p95": round(percentile(samples, 0.95) * 1000, 3),
        "p99": round(percentile(samples, 0.99) * 1000, 3),
    }


async def _pull_via(replicas: list[tuple[str, int]], pick: Any, images: list[Image], concurrency: int) -> Phase:
    """Pull every image by digest, each from the replica ``pick(repo)`` names, ``concurrency`` at a time."""
    phase = Phase("pull")
    queue: asyncio.Queue[Image] = asyncio.Queue()
    for image in images:
        queue.put_nowait(image)

    async def worker() -> None:
        clients = [OCIClient(Connection(host, port), 0) for host, port in replicas]
        try:
            while not queue.empty():
                image = queue.get_nowait()
                try:
                    await clients[pick(image.repo)].pull(phase, image, by_digest=True)
                except ConnectionFailed as error:
                    phase.errors[f"connection: {str(error)[:80]}"] += 1
                    phase.failed_images += 1
                except Exception:
                    phase.failed_images += 1
                else:
                    phase.images += 1
        finally:
            for client in clients:
                client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    return phase


async def shared_reads(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    three = await resources.zotpy_cluster("s3", 3)
    cluster = three.cluster
    assert cluster is not None and three.replicas is not None
    replicas = three.replicas
    repos, per_repo, layers, size, concurrency, chunk = SMALL
    images = make_images("shared", repos, per_repo, layers, size)
    large = make_images("shared-large", 1, 1, 1, OWNER_BLOB)[0]
    for index in range(len(replicas)):  # each image pushed through its owner
        owned = [image for image in [*images, large] if cluster.owner(image.repo) == index]
        if owned:
            pushed = await run_phase("push", *replicas[index], owned, concurrency, OCIClient.push, chunk, "monolithic")
            if pushed.failed_images:
                raise RuntimeError(f"pushing to replica {index} failed: {pushed.summary()}")
    # The non-owner is the next member: a rotation, so each replica serves as many pulls either way.
    paths = {"owner": cluster.owner, "non-owner": lambda repo: cluster.non_owner(repo, 1)}
    small_blob = images[0].layers[0]
    run: dict[str, Any] = {"scenario": "shared-reads", "storage": "s3", "targets": list(paths), "rounds": []}
    for round_ in range(rounds):
        order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
        results: dict[str, Any] = {}
        for name in order:
            watch = ProcessWatch(three.pids)
            pulled = await _pull_via(replicas, paths[name], images * PULL_PASSES, concurrency)
            results[name] = {"pull": pulled.summary(), "processes": watch.finish(), **watch.others()}
        clients = {name: OCIClient(Connection(*replicas[paths[name](large.repo)]), 0) for name in paths}
        small_clients = {name: OCIClient(Connection(*replicas[paths[name](images[0].repo)]), 0) for name in paths}
        manifests: dict[str, list[float]] = {name: [] for name in paths}
        blobs: dict[str, list[float]] = {name: [] for name in paths}
        seconds: dict[str, float] = {name: 0.0 for name in paths}
        phase = Phase("probe")
        try:
            for number in range(PROBES + 20):  # the first 20 warm the connections
                for name in order if number % 2 == 0 else list(reversed(order)):
                    started = time.perf_counter()
                    reply = await clients[name].connection.request(
                        "GET", f"/v2/{large.repo}/manifests/{large.digest}", {"Accept": "*/*"})
                    middle = time.perf_counter()
                    phase.expect("GET manifest", reply, 200)
                    blob = await small_clients[name].connection.request(
                        "GET", f"/v2/{images[0].repo}/blobs/{small_blob.digest}")
                    done = time.perf_counter()
                    phase.expect("GET blob", blob, 200)
                    if number >= 20:
                        manifests[name].append(middle - started)
                        blobs[name].append(done - middle)
            for number in range(BLOB_GETS):
                for name in order if number % 2 == 0 else list(reversed(order)):
                    started = time.perf_counter()
                    await clients[name].pull_blob(phase, large.repo, large.layers[0].digest, large.layers[0].size)
                    seconds[name] += time.perf_counter() - started
        finally:
            for client in [*clients.values(), *small_clients.values()]:
                client.close()
        if phase.errors:
            raise RuntimeError(f"probe errors: {dict(phase.errors)}")
        for name in paths:
            results[name]["manifest_get_ms"] = _latency(manifests[name])
            results[name]["blob_get_ms"] = _latency(blobs[name])
            results[name]["blob_MBps"] = round(BLOB_GETS * OWNER_BLOB / seconds[name] / 1e6, 1)
            say(f"  shared-reads round {round_ + 1}/{rounds} {name:<10} {brief(results[name])}, "
                f"small blob GET p50 {results[name]['blob_get_ms']['p50']:.2f} ms")
        run["rounds"].append(results)
    return run


async def redirect(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    redirected = await resources.zotpy("s3", name="zotpy-redirect", storage_keys={"redirectBlobURL": True})
    plain = await resources.zotpy("s3")
    raw = raw_s3_target(resources)
    targets = [redirected, plain, raw]
    return await alternate("redirect", "s3", targets, rounds, workload("redirect", LARGE), raw.pids["seaweedfs"])




SCENARIOS = {
    # name: (function, storages it runs on): both need a bucket
    "shared-reads": (shared_reads, ("s3",)),
    "redirect": (redirect, ("s3",)),
}
