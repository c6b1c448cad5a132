"""Where the S3 download relay spends its time: py-spy samples the zotpy daemon while a client GETs a
large blob from it over and over (the daemon reading the object from SeaweedFS and sending it on).

    pip install py-spy   # a tool, not a dependency of zotpy
    python bench/relay_profile.py [--size-mib 256] [--seconds 15] [--output relay.txt]

Prints the download rate and the frames that hold the most samples, by their own time (``self``)
and with what they call (``total``); ``--output`` keeps the collapsed stacks (flamegraph input).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet import threads  # noqa: E402
from twisted.web.client import Agent, HTTPConnectionPool  # noqa: E402
from treq.client import HTTPClient  # noqa: E402

from bench.common import MIB, write_random_file  # noqa: E402
from bench.s3_blob import Source, drain, expect, push_monolithic, react_on_seaweed, seaweed_driver  # noqa: E402
from tests.integration.daemon import ZotpyDaemon  # noqa: E402
from tests.seaweed import SeaweedServer  # noqa: E402


def record(pid: int, seconds: int, path: str) -> None:
    """py-spy's collapsed stacks of ``pid`` for ``seconds`` (blocking: run in a thread)."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    subprocess.run(
        [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--format", "raw",
         "--output", path, "--nonblocking"],
        check=True, capture_output=True,
    )


def top_frames(path: str, count: int = 15) -> tuple[int, list[tuple[str, int, int]]]:
    """(samples, [(frame, self samples, total samples)]) from collapsed stacks, most self first."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    with open(path) as stream:
        for line in stream:
            stack, _, number = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            weight = int(number)
            frames = stack.split(";")
            samples += weight
            own[frames[-1]] += weight
            for frame in set(frames):
                total[frame] += weight
    return samples, [(frame, hits, total[frame]) for frame, hits in own.most_common(count)]


async def run(reactor: Any, options: argparse.Namespace, server: SeaweedServer, workdir: str) -> None:
    size = options.size_mib * MIB
    path = os.path.join(workdir, "blob")
    digest = write_random_file(path, size)
    daemon = ZotpyDaemon(os.path.join(workdir, "zotpy"), config={"storage": {"storageDriver": seaweed_driver(server, "/profile")}})
    await daemon.start()
    pool = HTTPConnectionPool(reactor, persistent=True)
    http = HTTPClient(Agent(reactor, pool=pool))
    stacks = options.output or os.path.join(workdir, "stacks.txt")
    try:
        await push_monolithic(http, daemon.base_url, "profile/blob", Source(reactor, path), size, digest)
        assert daemon.pid is not None
        recording = threads.deferToThread(record, daemon.pid, options.seconds, stacks)
        moved, started = 0, time.monotonic()
        while not recording.called:
            response = await expect(
                await http.get(f"{daemon.base_url}/v2/profile/blob/blobs/{digest}", unbuffered=True), 200, "GET"
            )
            moved += await drain(response)
        await recording
        rate = moved / (time.monotonic() - started) / 1e6
    finally:
        await pool.closeCachedConnections()
        await daemon.stop()
    samples, frames = top_frames(stacks)
    print(f"{options.size_mib} MiB blob GET from zotpy on SeaweedFS: {rate:.1f} MB/s over {options.seconds} s; "
          f"{samples} samples of the daemon")
    print(f"{'self %':>7} {'total %':>8}  frame")
    for frame, hits, inclusive in frames:
        print(f"{100 * hits / samples:7.1f} {100 * inclusive / samples:8.1f}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--output", default=None, help="keep py-spy's collapsed stacks here")
    options = parser.parse_args()
    react_on_seaweed(run, options, "zotpy-relay-profile-")


if __name__ == "__main__":
    main()
