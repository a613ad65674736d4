"""`sagec diff RUN_A RUN_B`: metric by metric deltas, whether the intervals overlap, and how the
two setups differ. Informational: exits 0 whatever differs."""

from __future__ import annotations

import json

import click

from sagec.cli.runs import reading


@click.command("diff")
@click.argument("run_a", type=click.Path(exists=True))
@click.argument("run_b", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def command(run_a: str, run_b: str, as_json: bool, debug: bool) -> None:
    """Compare two runs: B minus A per metric, and their setups.

    RUN_A and RUN_B are run folders or results.json files."""

    def body() -> None:
        from runtime.report.diff import diff_runs, render

        d = diff_runs(run_a, run_b)
        click.echo(json.dumps(d, indent=2) if as_json else render(d))

    reading(body, debug=debug)
