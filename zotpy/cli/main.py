"""``zotpy`` (console script) and ``python -m zotpy``: the parser built from every subcommand module."""

from __future__ import annotations

import argparse
import sys
import textwrap

from zotpy import __version__
from zotpy.cli import cluster, gc, owner, verify
from zotpy.cli.command import Subcommand

#: Every subcommand, in the order ``zotpy --help`` lists them.
SUBCOMMANDS: tuple[Subcommand, ...] = (verify.COMMAND, owner.COMMAND, cluster.COMMAND, gc.COMMAND)


def parser(prog: str = "zotpy") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=prog,
        description="Operator commands for zotpy. The registry itself runs under twistd: "
        "twistd -n zotpy -c config.json",
        epilog=f"example: {prog} verify -c /etc/zotpy/config.json",
    )
    top.add_argument("--version", action="version", version=f"zotpy {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        sub = commands.add_parser(
            command.name,
            help=command.summary,
            description=textwrap.fill(command.description, 100),
            epilog="examples:\n" + "\n".join(f"  {prog} {example}" for example in command.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return top


def main(argv: list[str] | None = None, prog: str = "zotpy") -> int:
    arguments = parser(prog).parse_args(argv)
    return int(arguments.run(arguments))


if __name__ == "__main__":
    sys.exit(main())
