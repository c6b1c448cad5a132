"""Operator commands: ``python -m zotpy owner -c config.json library/alpine``.

The registry itself runs under twistd (``twistd -n zotpy -c config.json``); this
entry point answers questions about a configuration without starting anything.
"""

from __future__ import annotations

import argparse
import sys

from zotpy.cluster.ring import Ring
from zotpy.config import ConfigError, load_config
from zotpy.oci.errors import RegistryError
from zotpy.oci.names import validate_name


def owner(arguments: argparse.Namespace) -> int:
    """Print which member owns each repository under the config's cluster section."""
    config = load_config(arguments.config)
    if config.cluster is None:
        print("no cluster section: every repository is served by this single registry", file=sys.stderr)
        return 1
    ring = Ring(config.cluster.members, config.cluster.hash_key)
    for repository in arguments.repositories:
        try:
            validate_name(repository)
        except RegistryError:
            print(f"{repository}: not a valid repository name", file=sys.stderr)
            return 1
        index = ring.owner_index(repository)
        print(f"{repository}\t{ring.members[index]}\t(member {index} of {len(ring.members)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zotpy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    owner_command = commands.add_parser("owner", help="which cluster member owns a repository")
    owner_command.add_argument("-c", "--config", required=True, help="zot-format JSON config with a cluster section")
    owner_command.add_argument("repositories", nargs="+", metavar="REPOSITORY")
    owner_command.set_defaults(run=owner)
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except ConfigError as error:
        print(f"invalid configuration:\n{error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
