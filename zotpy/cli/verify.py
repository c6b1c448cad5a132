"""``zotpy verify`` (zot's ``zot verify``): would ``twistd zotpy -c FILE`` start?

It runs the daemon's own preflight (:func:`zotpy.tap.preflight`: the file's keys, the files it
names, the TLS material, which cluster member this host is, the log output), so it accepts exactly
what the daemon accepts. It never listens or touches storage: it is safe to run beside a live
replica, or as a service manager's ``ExecStartPre``. The one side effect is the daemon's own check of
``log.output``, which creates that file, empty, when it is missing.
"""

from __future__ import annotations

import argparse
import os
import sys

from zotpy.cli.command import Subcommand
from zotpy.cluster.identity import position
from zotpy.config import Config, ConfigError
from zotpy.tap import Checked, describe_storage, preflight


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="the zot-format JSON config file to check")


def run(arguments: argparse.Namespace) -> int:
    """0 and a summary of what would run on stdout (warnings too); 1 and every problem, each at its
    key path, on stderr."""
    try:
        checked = preflight(arguments.config, os.getcwd())
    except ConfigError as error:
        print(f"{arguments.config}: invalid configuration:", file=sys.stderr)
        for path, message in error.problems:
            print(f"  {path}: {message}" if path else f"  {message}", file=sys.stderr)
        return 1
    print(f"{arguments.config}: valid; twistd zotpy would run:")
    for line in summary(checked):
        print(f"  {line}")
    for warning in checked.config.warnings:
        print(f"warning: {warning}")
    return 0


def summary(checked: Checked) -> list[str]:
    """One line per part of the service the daemon would build from this configuration."""
    config = checked.config
    lines = [_listener(config), describe_storage(config)]
    if config.cluster is not None and checked.identity is not None:
        identity = checked.identity
        lines.append(
            f"cluster {position(identity.index, len(config.cluster.members))}: {identity.member} "
            f"(matched by {identity.rule}), peers over {'https' if config.http.tls else 'http'}"
        )
        if config.cluster.local_reads:
            lines.append("reads by digest answered from the shared storage (cluster.localReads); "
                         "by tag, writes and uploads forwarded to the owner")
    elif config.cluster is not None:
        lines.append("cluster section with a single member: no forwarding")
    if config.storage.redirect_blob_url:
        lines.append("whole-blob GETs redirected to presigned S3 URLs (storage.redirectBlobURL)")
    if config.sync is not None:
        registries = config.sync.registries
        on_demand = sum(1 for registry in registries if registry.on_demand)
        periodic = sum(1 for registry in registries if registry.periodic)
        lines.append(
            f"sync: {len(registries)} upstream{'s' if len(registries) != 1 else ''} "
            f"({on_demand} on demand, {periodic} periodic)"
        )
    if config.metrics is not None:
        lines.append(f"metrics at {config.metrics.path}")
    lines.append(f"log level {config.log.level} to {config.log.output or 'stdout'}")
    return lines


def _listener(config: Config) -> str:
    tls = config.http.tls
    scheme = "https" if tls is not None else "http"
    line = f"listening on {scheme}://{config.http.address or '*'}:{config.http.port}"
    if tls is not None and tls.cacert is not None:
        line += ", client certificates required"
    return line


COMMAND = Subcommand(
    name="verify",
    summary="check a config file as the daemon would, without starting anything",
    description="Load the file with every check twistd zotpy applies before it listens (key paths in "
    "every message, referenced files exist, TLS material parses and matches, this host is one of "
    "cluster.members, log.output is writable) and print what would run. Exit status 0 when the "
    "daemon would start, 1 when it would not.",
    examples=("verify -c /etc/zotpy/config.json", "verify -c etc/cluster/replica2.json"),
    add_arguments=add_arguments,
    run=run,
)
