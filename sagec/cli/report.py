"""`sagec report RUN_DIR`: (re)write report.html from the run's results.json."""

from __future__ import annotations

import click

from sagec.cli.runs import reading


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def command(run_dir: str, debug: bool) -> None:
    """Write a run's report.html from its results.json."""

    def body() -> None:
        from runtime.report.html import write_report

        click.echo(f"wrote {write_report(run_dir)}")

    reading(body, debug=debug)
