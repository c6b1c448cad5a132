"""What a subcommand module provides, so :mod:`zotpy.cli.main` can build the parser from a list."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Iterable

import attrs

from zotpy.config import Config, ConfigError, load_config
from zotpy.oci.errors import RegistryError
from zotpy.oci.names import validate_name


@attrs.frozen
class Subcommand:
    """One ``zotpy <name>`` subcommand.

    ``summary`` is its line in ``zotpy --help``; ``description`` opens its own ``--help`` and
    ``examples`` (command lines, one per line) close it, so every subcommand's help shows how to
    call it. ``run`` gets the parsed arguments and returns the exit status.
    """

    name: str
    summary: str
    description: str
    examples: tuple[str, ...]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def all_valid_names(repositories: Iterable[str]) -> bool:
    """Whether every name is a valid repository name; says which is not on stderr."""
    for repository in repositories:
        try:
            validate_name(repository)
        except RegistryError:
            print(f"{repository}: not a valid repository name", file=sys.stderr)
            return False
    return True


def cluster_config(path: str, single: str) -> Config | int:
    """The config at ``path`` when it has a cluster section; else the exit status, having said why
    on stderr (2: the file does not read; 1: no cluster, ``single`` says what that means here)."""
    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"invalid configuration:\n{error}", file=sys.stderr)
        return 2
    if config.cluster is None:
        print(f"no cluster section: {single}", file=sys.stderr)
        return 1
    return config
