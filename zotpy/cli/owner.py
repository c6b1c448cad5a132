"""``zotpy owner``: which cluster member owns each repository, by the ring the replicas use."""

from __future__ import annotations

import argparse

from zotpy.cli.command import Subcommand, all_valid_names, cluster_config
from zotpy.cluster.identity import position
from zotpy.cluster.ring import Ring


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="zot-format JSON config with a cluster section")
    parser.add_argument("repositories", nargs="+", metavar="REPOSITORY")


def run(arguments: argparse.Namespace) -> int:
    """Print ``repository<TAB>member<TAB>(member i of n, counted from 1)`` per repository; 1 for a name that is not
    valid or a config without a cluster, 2 for an invalid config."""
    config = cluster_config(arguments.config, "every repository is served by this single registry")
    if isinstance(config, int):
        return config
    assert config.cluster is not None
    ring = Ring(config.cluster.members, config.cluster.hash_key)
    if not all_valid_names(arguments.repositories):
        return 1
    for repository in arguments.repositories:
        index = ring.owner_index(repository)
        print(f"{repository}\t{ring.members[index]}\t({position(index, len(ring.members))})")
    return 0


COMMAND = Subcommand(
    name="owner",
    summary="which cluster member owns a repository",
    description="Print the cluster member that owns each repository (SipHash-2-4 of the name keyed with "
    "cluster.hashKey, modulo the number of members: zot's rule), with its index.",
    examples=("owner -c etc/cluster/replica1.json library/alpine team/app",),
    add_arguments=add_arguments,
    run=run,
)
