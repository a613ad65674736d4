"""What the commands that read a finished run (report, export, diff) share: a missing or broken
results.json is the user's to fix (exit 2, one clear message), anything else goes to `guarded`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from sagec.cli.errors import USER_ERROR, guarded

T = TypeVar("T")


def reading(body: Callable[[], T], *, debug: bool = False) -> T:
    def checked() -> T:
        from runtime.store.results import ResultsError

        try:
            return body()
        except ResultsError as e:
            click.echo(f"sagec: {e}", err=True)
            raise click.exceptions.Exit(USER_ERROR) from None

    return guarded(checked, debug=debug)
