"""`sagec fmt FILE...`: rewrite specs in the canonical form; `--check` only reports (exit 1)."""

from __future__ import annotations

from pathlib import Path

import click

from sagec.cli.errors import FAILURE, USER_ERROR, guarded, render
from sagec.diagnostics import Diagnostic, SpecError


@click.command("fmt")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--check", "check_only", is_flag=True, help="Change nothing; exit 1 if a file is not in canonical form.")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def command(files: tuple[str, ...], check_only: bool, debug: bool) -> None:
    """Format .sage specs (comments are kept)."""
    problems, changed = guarded(lambda: _format_all(files, check_only), debug=debug)
    for file in changed:
        click.echo(f"{file}: would reformat" if check_only else f"{file}: reformatted")
    if problems:
        click.echo(render(problems), err=True)
        raise click.exceptions.Exit(USER_ERROR)
    if check_only and changed:
        raise click.exceptions.Exit(FAILURE)


def _format_all(files: tuple[str, ...], check_only: bool) -> tuple[list[Diagnostic], list[str]]:
    from sagec.fmt import format_source

    problems: list[Diagnostic] = []
    changed: list[str] = []
    for file in files:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(Diagnostic(file, 1, 1, f"cannot read {file!r}: {e.__class__.__name__}"))
            continue
        try:
            formatted = format_source(text, file)
        except SpecError as e:
            problems.extend(e.diagnostics)
            continue
        if formatted != text:
            changed.append(file)
            if not check_only:
                Path(file).write_text(formatted, encoding="utf-8")
    return problems, changed
