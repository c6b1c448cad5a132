"""The scenarios of issue 7. Each runs its targets one after the other in every round (A B A B ...),
on the same fresh workload per round, so a ratio compares two runs minutes apart, not hours.

A scenario returns a *run*: ``{"scenario", "storage", "targets", "rounds": [{target: result}]}``
where a result is the load client's ``push``/``pull`` summaries (or the cluster's latency and
throughput probes) plus ``processes``: CPU seconds and peak RSS of each server process over it.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Awaitable, Callable

from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bench.common import MIB, ProcessWatch, percentile
from bench.wire import Connection
from bench.load import Image, OCIClient, Phase, make_images, push_and_pull, run_phase
from bench.servers import Resources, Target, tw
from tests.seaweed import ACCESS_KEY, BUCKET, REGION, SECRET_KEY

KIB = 1024

#: (repos, images per repo, layers per image, layer size, concurrency, PATCH size)
SMALL = (8, 8, 3, 64 * KIB, 8, 32 * KIB)
LARGE = (4, 2, 2, 16 * MIB, 4, 8 * MIB)
MEMORY_BLOB = 1024 * MIB
OWNER_BLOB = 128 * MIB
MANIFEST_GETS = 200
BLOB_GETS = 3
#: The targets that get the raw S3 load (objects PUT and GET, no registry): S3 itself, and S3
#: through HAProxy, the ceiling of anything that relays bytes between a client and S3.
RAW_S3 = ("raw-s3", "s3-via-haproxy")

Measure = Callable[[Target, int], Awaitable[dict[str, Any]]]


def say(text: str) -> None:
    print(text, flush=True)


async def alternate(
    name: str, storage: str, targets: list[Target], rounds: int, measure: Measure, storage_pid: int | None = None
) -> dict[str, Any]:
    """``measure(target, round)`` for each round and, within it, each target in order; with
    ``storage_pid``, what each target's load cost that shared S3 server too."""
    run: dict[str, Any] = {"scenario": name, "storage": storage, "targets": [t.name for t in targets], "rounds": []}
    for round_ in range(rounds):
        results: dict[str, Any] = {}
        prepare = getattr(measure, "prepare", None)
        if prepare is not None:  # make the round's workload before anything is measured
            prepare(round_)
        for target in targets:
            watch = ProcessWatch(target.pids, storage_pid)
            result = await measure(target, round_)
            result["processes"] = watch.finish()
            result.update(watch.others())
            results[target.name] = result
            say(f"  {name}/{storage} round {round_ + 1}/{rounds} {target.name:<14} {brief(result)}")
        run["rounds"].append(results)
    return run


def brief(result: dict[str, Any]) -> str:
    """One line about a result, for the progress output."""
    parts = []
    for phase in ("push", "pull"):
        if phase in result:
            summary = result[phase]
            parts.append(f"{phase} {summary['images_per_s']:7.1f} img/s {summary['blob_MBps']:7.1f} MB/s")
            if summary["errors"]:
                parts.append(f"ERRORS {summary['errors']}")
    if "manifest_get_ms" in result:
        parts.append(f"manifest GET p50 {result['manifest_get_ms']['p50']:.2f} ms, blob {result['blob_MBps']:.1f} MB/s")
    for label, used in result.get("processes", {}).items():
        parts.append(f"[{label} {used['cpu_seconds']:.1f} CPU s, {used['peak_rss_mib']:.0f} MiB]")
    parts.append(f"[client {result['client_cpu_seconds']:.1f}, machine {result['machine_cpu_seconds']:.1f} CPU s]")
    return "  ".join(parts)


# -- small images, large blobs, memory ------------------------------------------------------------


async def registry_targets(resources: Resources, storage: str, null: bool = True) -> list[Target]:
    targets = [await resources.zotpy(storage), await resources.distribution(storage)]
    if null:
        targets.append(await resources.null_registry())
    return targets


def workload(prefix: str, shape: tuple[int, ...], mode: str = "mixed") -> Measure:
    repos, images, layers, size, concurrency, chunk = shape
    cache: dict[int, list[Image]] = {}

    def prepare(round_: int) -> None:
        if round_ not in cache:
            cache.clear()
            cache[round_] = make_images(f"{prefix}{round_}", repos, images, layers, size)

    async def measure(target: Target, round_: int) -> dict[str, Any]:
        prepare(round_)
        if target.name in RAW_S3:
            return await raw_s3(target, cache[round_], concurrency)
        if target.name == "null":  # it keeps everything in memory: start each round empty
            connection = Connection(target.host, target.port)
            await connection.request("DELETE", "/v2/")
            connection.close()
        return await push_and_pull(
            target.host, target.port, cache[round_], concurrency, chunk, mode, target.headers
        )

    measure.prepare = prepare  # type: ignore[attr-defined]
    return measure


async def small(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    targets = await registry_targets(resources, storage)
    return await alternate("small", storage, targets, rounds, workload("small", SMALL))


async def auth(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    """The small-image workload against zotpy without and with htpasswd + access control."""
    targets = [await resources.zotpy(storage), await resources.zotpy_with_auth(storage)]
    return await alternate("auth", storage, targets, rounds, workload("auth", SMALL))


async def large(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    targets = await registry_targets(resources, storage)
    storage_pid = None
    if storage == "s3":
        raw = raw_s3_target(resources)
        targets[2:2] = [raw, await resources.s3_relay()]
        storage_pid = raw.pids["seaweedfs"]
    return await alternate("large", storage, targets, rounds, workload("large", LARGE), storage_pid)


async def raw_s3_ceiling(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    return await alternate("raw-s3", "s3", [raw_s3_target(resources)], rounds, workload("raw", LARGE))


async def memory(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    targets = await registry_targets(resources, storage, null=False)
    shape = (1, 1, 1, MEMORY_BLOB, 1, 64 * MIB)
    return await alternate("memory", storage, targets, rounds, workload("memory", shape, mode="monolithic"))


# -- raw S3 ----------------------------------------------------------------------------------------


class _UnsignedPayload(S3SigV4Auth):
    def payload(self, request: AWSRequest) -> str:
        return UNSIGNED_PAYLOAD


def raw_s3_target(resources: Resources) -> Target:
    server = resources.s3()
    assert server.process is not None
    return Target("raw-s3", "127.0.0.1", server.port, {"seaweedfs": server.process.pid})


def _signed(target: Target, method: str, key: str) -> tuple[str, dict[str, str]]:
    path = f"/{BUCKET}/{key}"
    request = AWSRequest(method=method, url=f"http://{target.host}:{target.port}{path}", headers={})
    _UnsignedPayload(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    return path, {name: value for name, value in request.headers.items()}


async def raw_s3(target: Target, images: list[Image], concurrency: int) -> dict[str, Any]:
    """The same blobs PUT, then GET (every byte hashed), straight to SeaweedFS with the same
    concurrency: the ceiling of a registry on this bucket. ``images`` counts objects here."""
    blobs = [blob for image in images for blob in image.layers]
    prefix = f"raw-{time.monotonic_ns()}"

    async def put(client: OCIClient, phase: Phase, blob: Any) -> None:
        path, headers = _signed(target, "PUT", f"{prefix}/{blob.digest[7:]}")
        started = time.perf_counter()
        phase.expect("PUT object", await client.connection.request("PUT", path, headers, blob.data), 200)
        phase.latencies["blob_upload"].append(time.perf_counter() - started)
        phase.blob_bytes += blob.size

    async def get(client: OCIClient, phase: Phase, blob: Any) -> None:
        path, headers = _signed(target, "GET", f"{prefix}/{blob.digest[7:]}")
        hasher = hashlib.sha256()
        started = time.perf_counter()
        reply = phase.expect("GET object", await client.connection.request("GET", path, headers, sink=hasher.update), 200)
        phase.latencies["blob_get"].append(time.perf_counter() - started)
        if "sha256:" + hasher.hexdigest() != blob.digest or reply.length != blob.size:
            phase.errors["GET object digest"] += 1
        phase.blob_bytes += blob.size

    push = await run_phase("push", target.host, target.port, blobs, concurrency, put, 0)
    pull = await run_phase("pull", target.host, target.port, blobs, concurrency, get, 0)
    return {"push": push.summary(), "pull": pull.summary()}


# -- cluster ---------------------------------------------------------------------------------------


async def cluster(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    """3 replicas behind HAProxy vs 1 replica behind HAProxy (small images), then on the 3: pulls
    through the repository's owner vs through a replica that forwards to it."""
    three = await resources.zotpy_cluster(storage, 3)
    one_daemon = await resources.zotpy(storage, name="zotpy-single")
    one = await resources.haproxy("zotpy x1", [f"{one_daemon.host}:{one_daemon.port}"], one_daemon.pids)
    scale = await alternate("cluster", storage, [three, one], rounds, workload("cluster", SMALL))

    assert three.cluster is not None
    repo = "bench/forwarding"
    owner = three.cluster.owner(repo)
    other = three.cluster.non_owner(repo)
    image = make_images("bench-fwd", 1, 1, 1, OWNER_BLOB)[0]
    image = Image(repo, image.tag, image.config, image.layers, image.manifest, image.digest)
    host, port = three.replicas[owner]
    setup = await push_and_pull(host, port, [image], 1, 16 * MIB, "monolithic")
    if setup["push"]["images"] != 1:
        raise RuntimeError(f"pushing the forwarding image to the owner failed: {setup}")
    via = {
        "owner": Target("owner", *three.replicas[owner], three.pids),
        "non-owner": Target("non-owner", *three.replicas[other], three.pids),
    }

    async def probe_round(round_: int) -> dict[str, Any]:
        """Manifest GETs through the owner and through the non-owner *interleaved* (the order
        flipping every time), so both paths are timed under the same moment's conditions; then the
        blob through each, also interleaved, ``BLOB_GETS`` times."""
        names = list(via)
        clients = {name: OCIClient(Connection(via[name].host, via[name].port), 0) for name in names}
        phases = {name: Phase("probe") for name in names}
        samples: dict[str, list[float]] = {name: [] for name in names}
        blob_seconds: dict[str, float] = {}
        watch = ProcessWatch(three.pids)
        try:
            for name in names:  # warm the connections (and the forwarding pool)
                for _ in range(20):
                    await clients[name].connection.request("GET", f"/v2/{repo}/manifests/{image.tag}", {"Accept": "*/*"})
            for number in range(MANIFEST_GETS):
                for name in names if number % 2 == 0 else reversed(names):
                    started = time.perf_counter()
                    reply = await clients[name].connection.request(
                        "GET", f"/v2/{repo}/manifests/{image.tag}",
                        {"Accept": "application/vnd.oci.image.manifest.v1+json"},
                    )
                    samples[name].append(time.perf_counter() - started)
                    phases[name].expect("GET manifest", reply, 200)
            for number in range(BLOB_GETS):
                for name in names if (round_ + number) % 2 == 0 else reversed(names):
                    started = time.perf_counter()
                    await clients[name].pull_blob(phases[name], repo, image.layers[0].digest, image.layers[0].size)
                    blob_seconds[name] = blob_seconds.get(name, 0.0) + time.perf_counter() - started
        finally:
            for client in clients.values():
                client.connection.close()
        processes = watch.finish()
        results = {
            name: {
                "manifest_get_ms": {
                    "n": len(samples[name]),
                    "p50": round(percentile(samples[name], 0.5) * 1000, 3),
                    "p95": round(percentile(samples[name], 0.95) * 1000, 3),
                    "p99": round(percentile(samples[name], 0.99) * 1000, 3),
                },
                "blob_MBps": round(BLOB_GETS * OWNER_BLOB / blob_seconds[name] / 1e6, 1),
                "errors": dict(phases[name].errors),
                "processes": processes,
                **watch.others(),
            }
            for name in names
        }
        for name in names:
            say(f"  forwarding/{storage} round {round_ + 1}/{rounds} {name:<14} {brief(results[name])}")
        return results

    forwarding: dict[str, Any] = {"scenario": "forwarding", "storage": storage, "targets": list(via), "rounds": []}
    for round_ in range(rounds):
        forwarding["rounds"].append(await probe_round(round_))
    return {"scenario": "cluster", "storage": storage, "scale": scale, "forwarding": forwarding,
            "owner": three.cluster.members[owner], "non_owner": three.cluster.members[other]}


async def search(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    """GlobalSearch p50 over 1,000 repositories x 10 tags: one replica, and the fan-out of 3
    (:mod:`bench.search`, which also runs alone as ``python -m bench.search``)."""
    from bench.search import run

    return await tw(run(resources.directory("search"), 1000, 10, 40, rounds))


async def workers(resources: Resources, storage: str, rounds: int) -> dict[str, Any]:
    """The small-image workload against one replica as 1 and as 2 worker processes (``--workers``).
    On a machine with as many cores as workers the load client shares them: see docs/benchmarks.md."""
    targets = [await resources.zotpy(storage, "zotpy x1"), await resources.zotpy(storage, "zotpy x2", workers=2)]
    return await alternate("workers", storage, targets, rounds, workload("workers", SMALL))


SCENARIOS: dict[str, tuple[Callable[[Resources, str, int], Awaitable[dict[str, Any]]], tuple[str, ...]]] = {
    # name: (function, storages it runs on by default)
    "small": (small, ("fs", "s3")),
    "auth": (auth, ("fs",)),
    "large": (large, ("fs", "s3")),
    "raw-s3": (raw_s3_ceiling, ("s3",)),
    "cluster": (cluster, ("s3",)),
    "memory": (memory, ("fs", "s3")),
    "search": (search, ("fs",)),
    "workers": (workers, ("fs",)),
}
