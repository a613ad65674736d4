"""How every command ends: user mistakes as diagnostics (exit 2), our own bugs as one line (exit 1).

    from sagec.cli.errors import guarded

    @click.command("plan")
    @click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
    def command(file, debug):
        spec = guarded(lambda: load_spec(file), debug=debug)

A user never sees a Python traceback for a mistake in a spec; an internal error prints one line
asking to report it, and the traceback only with --debug.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import TypeVar

import click

from sagec.diagnostics import Diagnostic, SpecError

T = TypeVar("T")

USER_ERROR = 2
FAILURE = 1


def render(diagnostics: Iterable[Diagnostic], as_json: bool = False) -> str:
    """Diagnostics as `file:line:col: error: ...` with source line and caret, or as a JSON list."""
    diagnostics = list(diagnostics)
    if as_json:
        return json.dumps([d.to_json() for d in diagnostics], indent=2)
    count = len(diagnostics)
    summary = f"{count} error{'s' if count != 1 else ''}" if count else ""
    return "\n".join([*(d.render() for d in diagnostics), *([summary] if count > 1 else [])])


def guarded(body: Callable[[], T], *, debug: bool = False, as_json: bool = False) -> T:
    """Run `body`; on `SpecError` print its diagnostics (stderr, or stdout as JSON) and exit 2;
    on any other exception print one line asking for a bug report and exit 1."""
    try:
        return body()
    except SpecError as e:
        if as_json:
            click.echo(render(e.diagnostics, as_json=True))
        else:
            click.echo(render(e.diagnostics), err=True)
        raise click.exceptions.Exit(USER_ERROR) from None
    except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - the point is to catch everything else
        internal_error(e, debug)
        raise click.exceptions.Exit(FAILURE) from None


def internal_error(e: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    where = "" if debug else " (run again with --debug for the traceback)"
    click.echo(f"sagec: internal error: {type(e).__name__}: {e}. This is a bug in sagec; please report it{where}.", err=True)
