"""``zotpy gc``: one garbage collection pass, run now, or reported with ``--dry-run``.

The same collector the daemon runs every ``gcInterval``, with the file's ``gcDelay`` and
``retention`` settings, over the named repositories or every repository. With a ``cluster``
section it collects only the repositories this host's member owns, as the daemon would: on shared
storage another member's repositories are that member's to collect.

It cannot take the running daemon's per-repository write locks (they live in the daemon's memory),
so on local storage it refuses to collect while a daemon serves the root: each daemon holds the
root's lock shared, the pass takes it exclusive (:mod:`zotpy.storage.rootlock`). ``--dry-run``
removes nothing and runs beside a daemon. A bucket has no lock: there the pass refuses while a
daemon's heartbeat marker is fresh (:mod:`zotpy.storage.heartbeat`), but a daemon starting during
the pass is not held back.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from twisted.internet.task import react
from twisted.python.threadpool import ThreadPool

from zotpy.cli.command import Subcommand, all_valid_names
from zotpy.config import ConfigError
from zotpy.lifecycle.gc import Collector
from zotpy.lifecycle.service import collect_owned
from zotpy.storage.heartbeat import live_beats
from zotpy.storage.imagestore import ImageStore
from zotpy.storage.rootlock import RootBusy, RootLock
from zotpy.tap import driver_root, make_driver, owned_repositories, preflight


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="the zot-format JSON config the registry runs with")
    parser.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    parser.add_argument("repositories", nargs="*", metavar="REPOSITORY", help="default: every repository")


def run(arguments: argparse.Namespace) -> int:
    """0 when every repository was collected, 1 when one failed, a name is invalid or a daemon
    serves the root, 2 for an invalid config. One line per repository on stdout, then a total."""
    try:
        checked = preflight(arguments.config, os.getcwd())
    except ConfigError as error:
        print(f"invalid configuration:\n{error}", file=sys.stderr)
        return 2
    if not all_valid_names(arguments.repositories):
        return 1
    codes: list[int] = []

    async def collect(reactor: Any) -> None:
        codes.append(await _collect(reactor, checked, arguments))

    try:
        react(collect)
    except SystemExit:
        pass  # react's own exit, once the pass is over: the pass's status is in codes
    return codes[0] if codes else 1


async def _collect(reactor: Any, checked: Any, arguments: argparse.Namespace) -> int:
    config = checked.config
    lock = None
    if config.storage.s3 is None and not arguments.dry_run:
        try:
            lock = RootLock(driver_root(config), exclusive=True)
        except RootBusy as refusal:
            print(f"refused: {refusal}", file=sys.stderr)
            return 1
    pool = ThreadPool(minthreads=1, maxthreads=4, name="zotpy-gc")
    pool.start()
    driver = make_driver(config, reactor, pool)
    try:
        if config.storage.s3 is not None and not arguments.dry_run:
            beats = await live_beats(driver, reactor.seconds())
            if beats:
                serving = "; ".join(f"{beat.description or beat.name}, seen {beat.age:.0f} s ago" for beat in beats)
                print(
                    f"refused: zotpy daemons serve this bucket ({serving}): garbage collection there is "
                    "theirs (storage.gc, gcInterval); stop them first, or use --dry-run to see what would go",
                    file=sys.stderr,
                )
                return 1
        store = ImageStore(driver)
        owns = owned_repositories(config, checked.identity)
        repositories = arguments.repositories or await store.repositories()
        skipped = [repo for repo in repositories if not owns(repo)]
        for repo in skipped:
            print(f"{repo}\tskipped: owned by another cluster member")
        collector = Collector(store, config.storage.lifecycle, reactor, dry_run=arguments.dry_run)
        reports = await collect_owned(collector, repositories, owns)
        for report in reports:
            print(f"{report.repo}\t{report.summary()}")
        freed = sum(report.bytes_freed for report in reports)
        verb = "would free" if arguments.dry_run else "freed"
        print(f"total: {len(reports)} repositories collected, {verb} {freed} bytes")
        return 0 if len(reports) + len(skipped) == len(repositories) else 1
    finally:
        await driver.close()
        pool.stop()
        if lock is not None:
            lock.release()


COMMAND = Subcommand(
    name="gc",
    summary="run one garbage collection pass now (or report it with --dry-run)",
    description="Collect the named repositories (default: all) as the registry's periodic garbage "
    "collection does, with the file's storage.gcDelay and storage.retention settings: untagged "
    "manifests and orphan referrers, unreferenced blobs, stale uploads, leftovers of interrupted "
    "writes. With a cluster section, only the repositories this host's member owns. Prints what "
    "each repository lost and the bytes freed.",
    examples=("gc -c /etc/zotpy/config.json --dry-run", "gc -c /etc/zotpy/config.json library/alpine"),
    add_arguments=add_arguments,
    run=run,
)
