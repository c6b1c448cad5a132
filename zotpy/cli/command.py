"""What a subcommand module provides, so :mod:`zotpy.cli.main` can build the parser from a list."""

from __future__ import annotations

import argparse
from typing import Callable

import attrs


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
