"""The `sagec` command line: one click command per module in this package.

Exit status: 0 success, 1 a failure while running, 2 a user error (bad spec, bad arguments).
A command module exposes `command`, a click command; add its module name to COMMANDS.
"""

from __future__ import annotations

import importlib

import click

from sagec import __version__

COMMANDS: tuple[str, ...] = ("check", "fmt", "plan", "run", "fetch", "zoo", "ls", "report", "export", "diff")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sagec")
def main() -> None:
    """Ground-truth evaluation of sparse autoencoders, from a declarative .sage spec."""


for _name in COMMANDS:
    main.add_command(importlib.import_module(f"sagec.cli.{_name}").command)
