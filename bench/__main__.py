"""``python -m bench run --scenario small|auth|large|raw-s3|cluster|memory|search|workers|all [--storage fs|s3] [--rounds N]``

Starts what each scenario needs on loopback, drives the load, stops everything it started (on
errors and Ctrl-C too), and writes ``result.json``, ``result.md`` and ``result.png`` under
``bench/results/<time>/``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SCENARIO_NAMES = ("small", "auth", "large", "raw-s3", "cluster", "memory", "shared-reads", "redirect", "search", "workers")
DOCS = os.path.join(REPO, "docs", "benchmarks.md")
DOCS_BEGIN, DOCS_END = "<!-- bench:results -->", "<!-- /bench:results -->"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run scenarios, zotpy and distribution alternately")
    run.add_argument("--scenario", choices=[*SCENARIO_NAMES, "all"], default="all")
    run.add_argument("--storage", choices=["fs", "s3"], default=None,
                     help="only this storage (default: each scenario's own: fs and s3 where both apply)")
    run.add_argument("--rounds", type=int, default=5, help="alternating rounds per scenario (default 5)")
    run.add_argument("--output", default=os.path.join(HERE, "results"), help="where results go (default bench/results)")
    run.add_argument("--keep", action="store_true", help="keep the servers' working directories")
    run.add_argument("--update-docs", action="store_true",
                     help=f"also put the table into {os.path.relpath(DOCS, REPO)} (between its result markers)")
    return parser.parse_args(argv)


def _version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def meta(options: argparse.Namespace) -> dict[str, Any]:
    from tests.seaweed import weed_binary

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": {"scenario": options.scenario, "storage": options.storage, "rounds": options.rounds},
        "machine": f"{os.cpu_count()} CPUs, {memory:.0f} GiB, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "zotpy_commit": _version(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
        "distribution": _version(["/usr/bin/docker-registry", "--version"]),
        "seaweedfs": _version([weed_binary(), "version"]),
    }


async def session(options: argparse.Namespace, workdir: str, result: dict[str, Any], closers: list[Any]) -> None:
    from bench.scenarios import SCENARIOS
    from bench.servers import Resources
    from bench.shared import SCENARIOS as SHARED_STORAGE_SCENARIOS

    shared = Resources(workdir)  # SeaweedFS, for the whole run
    closers.append(shared)
    names = SCENARIO_NAMES if options.scenario == "all" else (options.scenario,)
    for name in names:
        function, storages = {**SCENARIOS, **SHARED_STORAGE_SCENARIOS}[name]
        chosen = storages if options.storage is None else (options.storage,)
        if name == "raw-s3":
            chosen = ("s3",)
        for storage in chosen:
            print(f"== {name} on {storage}, {options.rounds} rounds", flush=True)
            started = time.monotonic()
            resources = Resources(workdir, parent=shared)
            closers.append(resources)
            try:
                run = await function(resources, storage, options.rounds)
            finally:
                await resources.close()
            run["seconds"] = round(time.monotonic() - started, 1)
            result["runs"].append(run)


def update_docs(table: str, result: dict[str, Any], chart: str) -> None:
    """The table goes between the markers of docs/benchmarks.md, the chart to docs/benchmarks.png."""
    shutil.copyfile(chart, os.path.join(os.path.dirname(DOCS), "benchmarks.png"))
    with open(DOCS) as stream:
        text = stream.read()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise SystemExit(f"{DOCS} has no {DOCS_BEGIN} ... {DOCS_END} block")
    head, rest = text.split(DOCS_BEGIN, 1)
    tail = rest.split(DOCS_END, 1)[1]
    info = result["meta"]
    block = (
        f"\nRun of {info['started']} on {info['machine']}, zotpy {info['zotpy_commit']}, {info['distribution']}, "
        f"SeaweedFS {info['seaweedfs']}, {info['options']['rounds']} rounds:\n\n{table}\n"
    )
    with open(DOCS, "w") as stream:
        stream.write(head + DOCS_BEGIN + block + DOCS_END + tail)


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, REPO)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import defer, reactor

    from bench import report

    workdir = tempfile.mkdtemp(prefix="zotpy-bench-")
    result: dict[str, Any] = {"meta": meta(options), "runs": []}
    closers: list[Any] = []
    outcome: dict[str, Any] = {}

    async def close_all() -> None:
        for resources in reversed(closers):
            await resources.close()

    async def main_task() -> None:
        try:
            await session(options, workdir, result, closers)
        finally:
            await close_all()

    def start() -> None:
        task = loop.create_task(main_task())
        outcome["task"] = task
        finished = defer.Deferred.fromFuture(task)
        finished.addErrback(lambda failure: outcome.setdefault("failure", failure))
        finished.addBoth(lambda _: reactor.stop() if reactor.running else None)

    def on_shutdown() -> defer.Deferred[None] | None:
        task = outcome.get("task")
        if task is not None and not task.done():
            print("\ninterrupted: stopping what was started ...", file=sys.stderr, flush=True)
            outcome["interrupted"] = True
            task.cancel()
            return defer.Deferred.fromFuture(loop.create_task(close_all()))
        return None

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", on_shutdown)
    reactor.run()

    if not options.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    failure = outcome.get("failure")
    if failure is not None:
        print(f"failed: {failure.getErrorMessage()}", file=sys.stderr)
        if not outcome.get("interrupted"):
            failure.printTraceback()
    if not result["runs"]:
        return 1
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    paths = report.write(result, os.path.join(options.output, stamp))
    with open(paths["md"]) as stream:
        table = stream.read()
    print("\n" + table)
    for kind, path in paths.items():
        print(f"{kind}: {os.path.relpath(path)}")
    if options.update_docs and failure is None:
        update_docs(table, result, paths["png"])
        print(f"updated {os.path.relpath(DOCS)}")
    return 1 if failure is not None else 0


if __name__ == "__main__":
    sys.exit(main())
