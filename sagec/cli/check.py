"""`sagec check FILE...`: parse and check specs; every problem located, exit 2 if there is any."""

from __future__ import annotations

import json

import click

from sagec.cli.errors import FAILURE, USER_ERROR, guarded, render
from sagec.diagnostics import Diagnostic, SpecError
from sagec.spec import Spec


@click.command("check")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="Print the diagnostics as JSON on stdout.")
@click.option("--deep", is_flag=True, help="Also run the checks that need the tokenizer and model configs (slower).")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def command(files: tuple[str, ...], as_json: bool, deep: bool, debug: bool) -> None:
    """Check .sage specs without running anything."""
    problems, summaries = guarded(lambda: _check_all(files, deep), debug=debug)
    if as_json:
        click.echo(json.dumps({"ok": not problems, "diagnostics": [d.to_json() for d in problems]}, indent=2))
    else:
        for line in summaries:
            click.echo(line)
        if problems:
            click.echo(render(problems), err=True)
    if problems:
        raise click.exceptions.Exit(USER_ERROR)


def _check_all(files: tuple[str, ...], deep: bool) -> tuple[list[Diagnostic], list[str]]:
    """Every file is checked, so one run reports the problems of all of them."""
    from sagec.check import (
        load_spec,  # the parser and checker load only when a command needs them
    )

    problems: list[Diagnostic] = []
    summaries: list[str] = []
    for file in files:
        try:
            spec = load_spec(file)
            if deep:
                _deep(spec)
        except SpecError as e:
            problems.extend(e.diagnostics)
            continue
        summaries.append(f"{file}: ok ({_summary(spec)})")
    return problems, summaries


def _deep(spec: Spec) -> None:
    try:
        from runtime.execute.deep_check import deep_check
    except ModuleNotFoundError as e:
        if e.name not in ("runtime", "runtime.execute.deep_check"):
            raise
        click.echo("sagec: --deep needs runtime.execute.deep_check, which this installation does not have yet", err=True)
        raise click.exceptions.Exit(FAILURE) from None
    for warning in deep_check(spec):
        click.echo(f"warning: {warning}", err=True)


def _summary(spec: Spec) -> str:
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'s' if count != 1 else ''}"

    return ", ".join([n(len(spec.models), "model"), n(len(spec.tasks), "task"), n(len(spec.saes), "SAE"), n(len(spec.evals), "eval")])
