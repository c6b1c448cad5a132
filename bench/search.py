"""``python -m bench.search [--repos 1000] [--tags 10] [--requests 40]`` (also ``python -m bench run
--scenario search``)

GlobalSearch latency over REPOS repositories x TAGS tags, on one replica and through the fan-out of
3 replicas with per-instance storage (each holding the repositories it owns). The repositories,
their manifests, configs, layers and zotpy's metadata file are written straight into each
replica's storage layout before it starts (pushing 10,000 tags would take minutes and measure
pushes); the daemons are real ``twistd zotpy`` processes.

Measured per target, after a warm-up that fills the image-details cache: the p50/p95 of
``GlobalSearch(query: "repo", requestedPage: {limit: 10, sortBy: ...})``, a query every repository
matches (so every member sorts all of its repositories and the page is built for 10), sequential
requests on one keep-alive connection.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Callable

from twisted.internet import defer, task

from bench.common import percentile
from tests.integration.cluster import ZotpyCluster
from tests.integration.daemon import ZotpyDaemon
from zotpy.meta.keeper import META_FILE
from zotpy.meta.model import ImageMeta, RepositoryMeta

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SEARCH = {"extensions": {"search": {"enable": True}}, "log": {"level": "info"}}
QUERY = '{ GlobalSearch(query: "repo", requestedPage: {limit: 10, sortBy: %s}) { Page { TotalCount ItemCount } Repos { Name Size LastUpdated Platforms { Os Arch } NewestImage { Tag Digest } } } }'
SORTS = ("ALPHABETIC_ASC", "UPDATE_TIME", "DOWNLOADS")


def _write(path: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    target = os.path.join(path, "blobs", "sha256", digest)
    if not os.path.exists(target):
        with open(target, "wb") as stream:
            stream.write(data)
    return "sha256:" + digest


def write_repository(directory: str, name: str, tags: int, now: float) -> None:
    """One repository in zot's layout with ``tags`` images (a config and two layers each, the base
    layer shared), and the metadata document zotpy's keeper would have written."""
    os.makedirs(os.path.join(directory, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(directory, "oci-layout"), "w") as stream:
        stream.write('{"imageLayoutVersion":"1.0.0"}')
    base = f"base layer of {name}".encode() * 32
    entries, meta = [], RepositoryMeta(name)
    for number in range(tags):
        config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                             "history": [{"created_by": "ADD base"}, {"created_by": f"ADD {number}"}]}).encode()
        layer = f"{name} tag {number}".encode() * 16
        parts = {}
        for blob in (config, base, layer):
            parts[_write(directory, blob)] = len(blob)
        digests = list(parts)
        document = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digests[0], "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": parts[d]} for d in digests[1:]],
        }
        body = json.dumps(document).encode()
        digest = _write(directory, body)
        tag = f"v{number}"
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
                        "annotations": {"org.opencontainers.image.ref.name": tag}})
        meta.images[digest] = ImageMeta(digest, OCI_MANIFEST, len(body) + sum(parts.values()), now - 60 * number,
                                        [tag], pull_count=number, parts=parts)
    with open(os.path.join(directory, "index.json"), "w") as stream:
        json.dump({"schemaVersion": 2, "manifests": entries}, stream)
    with open(os.path.join(directory, META_FILE), "wb") as stream:
        stream.write(meta.serialize())


def populate(repos: int, tags: int, where: Callable[[str], str]) -> None:
    now = time.time()
    for number in range(repos):
        name = f"bench/repo-{number:04d}"
        write_repository(where(name), name, tags, now - number)


async def _latencies(url: str, requests: int) -> dict[str, Any]:
    import treq
    from twisted.internet import reactor
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    try:
        async def one(sort: str) -> float:
            body = json.dumps({"query": QUERY % sort}).encode()
            started = time.perf_counter()
            response = await treq.post(url, data=body, headers={"Content-Type": ["application/json"]}, pool=pool)
            document = json.loads(await response.content())
            elapsed = time.perf_counter() - started
            if response.code != 200 or "errors" in document or document["data"]["GlobalSearch"]["Page"]["ItemCount"] != 10:
                raise RuntimeError(f"GlobalSearch failed: {response.code} {str(document)[:300]}")
            return elapsed

        for sort in SORTS:  # warm: connections, the image-details cache, the page cache
            await one(sort)
        samples = [await one(SORTS[number % len(SORTS)]) for number in range(requests)]
    finally:
        await pool.closeCachedConnections()
    return {"globalsearch_ms": {
        "n": len(samples),
        "p50": round(percentile(samples, 0.5) * 1000, 1),
        "p95": round(percentile(samples, 0.95) * 1000, 1),
        "p99": round(percentile(samples, 0.99) * 1000, 1),
    }}


async def run(workdir: str, repos: int, tags: int, requests: int, rounds: int = 1) -> dict[str, Any]:
    """The scenario: one replica, then 3 with per-instance storage; ``rounds`` measurements of each."""
    single = ZotpyDaemon(os.path.join(workdir, "single"), SEARCH, name="search-single")
    populate(repos, tags, single.repo_dir)
    cluster = ZotpyCluster(os.path.join(workdir, "cluster"), size=3, extra=SEARCH)
    populate(repos, tags, lambda name: cluster.repo_dir(cluster.owner(name), name))
    result: dict[str, Any] = {"scenario": "search", "storage": "fs", "targets": ["zotpy x1", "zotpy x3"], "rounds": [],
                              "repos": repos, "tags": tags}
    await single.start()
    try:
        await cluster.start()
        try:
            for _ in range(rounds):
                result["rounds"].append({
                    "zotpy x1": await _latencies(single.base_url + "/v2/_zot/ext/search", requests),
                    "zotpy x3": await _latencies(cluster.url(0) + "/v2/_zot/ext/search", requests),
                })
        finally:
            await cluster.stop()
    finally:
        await single.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="zotpy-bench-search-")

    async def measure(_: Any) -> None:
        started = time.monotonic()
        result = await run(workdir, options.repos, options.tags, options.requests, options.rounds)
        result["seconds"] = round(time.monotonic() - started, 1)
        print(json.dumps(result, indent=1))

    try:
        task.react(lambda reactor: defer.ensureDeferred(measure(reactor)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
