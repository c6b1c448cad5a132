"""``python -m bench.gc [--blobs N] [--manifests M] [--storage fs|s3]``

One garbage collection pass over a repository of N blobs (default 10,000), M manifests each
referencing an equal share of half of them, the other half unreferenced and older than gcDelay,
while a 5 ms periodic call measures how late the reactor runs it (the ``zot_reactor_lag_seconds``
monitor's method, at a finer tick). Reports the pass time, the reactor lag (max, p99) and what was
freed. The layout is written straight to disk (or the bucket) before the reactor starts measuring:
the pass is what is timed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any

from twisted.internet import defer, task

from zotpy.lifecycle.gc import Collector
from zotpy.lifecycle.settings import LifecycleSettings
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.local import LocalDriver

REPO = "bench/gc"
TICK = 0.005
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _layout(driver: Any, blobs: int, manifests: int) -> int:
    """Write the repository through ``driver``; the bytes of the unreferenced blobs."""
    layers = [f"layer {i}".encode() * 64 for i in range(blobs)]
    referenced, orphans = layers[: blobs // 2], layers[blobs // 2 :]
    share = max(1, len(referenced) // manifests)
    entries = []
    writes = []
    for layer in layers:
        writes.append((f"{REPO}/blobs/sha256/{_digest(layer)}", layer))
    for index in range(manifests):
        part = referenced[index * share : (index + 1) * share]
        document = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + _digest(part[0]),
                       "size": len(part[0])},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + _digest(p),
                        "size": len(p)} for p in part],
        }
        body = json.dumps(document).encode()
        writes.append((f"{REPO}/blobs/sha256/{_digest(body)}", body))
        entries.append({"mediaType": OCI_MANIFEST, "digest": "sha256:" + _digest(body), "size": len(body),
                        "annotations": {"org.opencontainers.image.ref.name": f"t{index}"}})
    writes.append((f"{REPO}/oci-layout", b'{"imageLayoutVersion":"1.0.0"}'))
    writes.append((f"{REPO}/index.json", json.dumps({"schemaVersion": 2, "manifests": entries}).encode()))
    for start in range(0, len(writes), 64):
        await defer.gatherResults([driver.put_content(path, data) for path, data in writes[start : start + 64]])
    return sum(len(layer) for layer in orphans)


async def main(reactor: Any, options: argparse.Namespace) -> None:
    pool = reactor.getThreadPool()
    cleanup = []
    if options.storage == "s3":
        from tests.seaweed import shared_server
        from zotpy.storage.s3.driver import S3Driver

        driver: Any = S3Driver(shared_server().settings(), reactor, pool)
        cleanup.append(driver.close)
    else:
        root = tempfile.mkdtemp(prefix="zotpy-bench-gc-")
        driver = LocalDriver(root, reactor, pool)
        cleanup.append(lambda: shutil.rmtree(root, ignore_errors=True))
    started = time.monotonic()
    orphan_bytes = await _layout(driver, options.blobs, options.manifests)
    print(f"layout: {options.blobs} blobs, {options.manifests} manifests written in {time.monotonic() - started:.1f} s")
    store = ImageStore(driver)
    clock = task.Clock()
    clock.advance(time.time() + 2 * 3600)  # everything is two hours old: past gcDelay
    collector = Collector(store, LifecycleSettings(gc_delay=3600), clock)

    lags: list[float] = []
    expected = [time.monotonic() + TICK]

    def tick() -> None:
        now = time.monotonic()
        lags.append(max(0.0, now - expected[0]))
        expected[0] = now + TICK
        monitor[0] = reactor.callLater(TICK, tick)

    monitor = [reactor.callLater(TICK, tick)]
    started = time.monotonic()
    report = await collector.collect(REPO)
    elapsed = time.monotonic() - started
    monitor[0].cancel()
    lags.sort()
    p99 = lags[int(len(lags) * 0.99)] if lags else 0.0
    print(f"gc pass ({options.storage}): {elapsed:.2f} s; {report.summary()}")
    print(f"reactor lag during the pass: max {max(lags, default=0) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
          f"over {len(lags)} ticks of {TICK * 1000:.0f} ms")
    assert report.blobs.bytes == orphan_bytes, (report.blobs.bytes, orphan_bytes)
    for close in cleanup:
        await defer.maybeDeferred(close)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.gc", description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=10_000)
    parser.add_argument("--manifests", type=int, default=100)
    parser.add_argument("--storage", choices=["fs", "s3"], default="fs")
    arguments = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
