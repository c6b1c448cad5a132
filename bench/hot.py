"""``python -m bench.hot [--baseline DIR] [--rounds N] [--requests N] [--profile SECONDS]``

The hot reads of issue 20 alone: ``GET /v2/<name>/blobs/<digest>`` of a 64 KiB blob, and a
manifest GET by tag, each repeated over keep-alive connections. What it reports is the daemon's
CPU microseconds per request (user + system time of the process over the requests / requests),
the figure a machine shared with other work does not blur the way it blurs wall throughput.

With ``--baseline DIR`` a second daemon runs the zotpy found in ``DIR`` (e.g. a ``git worktree``
of the commit before a change) and the two are measured alternately, round by round, on the same
requests. ``--profile`` samples each daemon with py-spy for that long under the same load and
prints the frames where most samples were taken (own time), for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from bench.common import cpu_seconds, median
from bench.load import OCIClient, Phase, make_images
from bench.wire import Connection
from tests.integration.daemon import TWISTD_BOOTSTRAP, free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIB = 1024
CONCURRENCY = 8


class Daemon:
    """One zotpy daemon on local disk, running the code under ``source`` (first on PYTHONPATH)."""

    def __init__(self, name: str, source: str, workdir: str) -> None:
        self.name, self.source = name, source
        self.port = free_port("127.0.0.1")
        config = {
            "distSpecVersion": "1.1.1",
            "storage": {"rootDirectory": os.path.join(workdir, "data")},
            "http": {"address": "127.0.0.1", "port": str(self.port)},
            "log": {"level": "info"},
        }
        path = os.path.join(workdir, "config.json")
        with open(path, "w") as stream:
            json.dump(config, stream)
        env = dict(os.environ, PYTHONPATH=source, PYTHONUNBUFFERED="1")
        self.log = open(os.path.join(workdir, "daemon.log"), "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", TWISTD_BOOTSTRAP, "--pidfile=", "-n", "zotpy", "-c", path] + _one_worker(source),
            cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=2).read()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {self.log.name}")
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


def _one_worker(source: str) -> list[str]:
    """One process (what is measured is a process's CPU per request), said to code that has workers
    (whose default is one per core); a baseline from before them knows no such option."""
    return ["--workers", "1"] if os.path.isdir(os.path.join(source, "zotpy", "workers")) else []


async def _hammer(port: int, targets: list[str], headers: dict[str, str], total: int) -> int:
    """``total`` GETs spread over :data:`CONCURRENCY` keep-alive connections; the bytes received."""
    received = 0
    remaining = total

    async def worker() -> None:
        nonlocal received, remaining
        connection = Connection("127.0.0.1", port)
        try:
            while remaining > 0:
                remaining -= 1
                reply = await connection.request("GET", targets[remaining % len(targets)], headers)
                if reply.status != 200:
                    raise RuntimeError(f"GET {targets[0]}: {reply.status}")
                received += reply.length
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return received


OPERATIONS = {
    "blob GET (64 KiB)": lambda image: ([f"/v2/{image.repo}/blobs/{b.digest}" for b in image.layers], {}),
    "manifest GET by tag": lambda image: (
        [f"/v2/{image.repo}/manifests/{image.tag}"], {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    ),
}


async def measure(daemon: Daemon, image: Any, operation: str, requests: int) -> dict[str, float]:
    targets, headers = OPERATIONS[operation](image)
    await _hammer(daemon.port, targets, headers, 200)  # warm: connections, caches, the page cache
    pid = daemon.process.pid
    cpu, started = cpu_seconds(pid), time.perf_counter()
    await _hammer(daemon.port, targets, headers, requests)
    wall, used = time.perf_counter() - started, cpu_seconds(pid) - cpu
    return {"cpu_us_per_request": used / requests * 1e6, "requests_per_s": requests / wall}


async def _push(daemon: Daemon, image: Any) -> None:
    connection = Connection("127.0.0.1", daemon.port)
    try:
        await OCIClient(connection, 32 * KIB, "monolithic").push(Phase("push"), image)
    finally:
        connection.close()


def profile(
    daemon: Daemon, image: Any, operation: str, seconds: float, top: int = 15
) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """py-spy's samples of the daemon's reactor thread under the operation's load: the share of
    samples per frame as its own time, and with what it called, largest first."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    out = tempfile.mktemp(suffix=".txt")
    sampler = subprocess.Popen(
        [py_spy, "record", "--format", "raw", "--rate", "250", "--duration", str(int(seconds)),
         "--nonblocking", "--threads", "--pid", str(daemon.process.pid), "--output", out],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    targets, headers = OPERATIONS[operation](image)

    async def load() -> None:
        while sampler.poll() is None:
            await _hammer(daemon.port, targets, headers, 400)

    asyncio.run(load())
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    total = 0
    with open(out) as stream:
        for line in stream:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            thread, *frames = stack.split(";")
            if "MainThread" not in thread or not frames:
                continue  # the reactor's thread only: the pool's threads mostly wait
            own[frames[-1]] += int(count)
            for frame in set(frames):
                within[frame] += int(count)
            total += int(count)
    os.unlink(out)
    return (
        [(count / total, frame) for frame, count in own.most_common(top)],
        [(count / total, frame) for frame, count in within.most_common(top * 2)],
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hot", description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a checkout of zotpy to measure against this one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000, help="per operation and round (default 3000)")
    parser.add_argument("--profile", type=float, default=0, help="seconds of py-spy per daemon and operation")
    options = parser.parse_args(argv)
    sources = [("this", REPO)] + ([("baseline", os.path.abspath(options.baseline))] if options.baseline else [])
    workdir = tempfile.mkdtemp(prefix="zotpy-hot-")
    daemons: list[Daemon] = []
    try:
        for name, source in sources:
            os.makedirs(os.path.join(workdir, name))
            daemons.append(Daemon(name, source, os.path.join(workdir, name)))
        image = make_images("hot", 1, 1, 3, 64 * KIB)[0]
        for daemon in daemons:
            asyncio.run(_push(daemon, image))
        results: dict[tuple[str, str], list[dict[str, float]]] = collections.defaultdict(list)
        for round_ in range(options.rounds):
            for operation in OPERATIONS:
                for daemon in daemons if round_ % 2 == 0 else reversed(daemons):
                    result = asyncio.run(measure(daemon, image, operation, options.requests))
                    results[(daemon.name, operation)].append(result)
                    print(f"round {round_ + 1} {daemon.name:<9} {operation:<20} "
                          f"{result['cpu_us_per_request']:7.0f} CPU us/request "
                          f"{result['requests_per_s']:7.0f} requests/s", flush=True)
        print("\nmedian of the rounds (CPU us/request, requests/s):")
        for (name, operation), rows in results.items():
            print(f"  {name:<9} {operation:<20} {median(r['cpu_us_per_request'] for r in rows):7.0f} "
                  f"{median(r['requests_per_s'] for r in rows):7.0f}")
        if options.profile:
            for daemon in daemons:
                for operation in OPERATIONS:
                    own, within = profile(daemon, image, operation, options.profile)
                    print(f"\npy-spy, {daemon.name}, {operation}, reactor thread: own time by frame")
                    for share, frame in own:
                        print(f"  {share * 100:5.1f}%  {frame}")
                    print(f"py-spy, {daemon.name}, {operation}, reactor thread: time within frame")
                    for share, frame in within:
                        print(f"  {share * 100:5.1f}%  {frame}")
    finally:
        for daemon in daemons:
            daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
