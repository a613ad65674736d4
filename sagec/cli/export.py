"""`sagec export RUN_DIR --format saebench`: the run's numbers in another tool's format."""

from __future__ import annotations

import click

from sagec.cli.runs import reading


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["saebench"]), required=True, help="saebench: one SAEBench result file per SAE.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder to write into (default: RUN_DIR/saebench).")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def command(run_dir: str, fmt: str, out_dir: str | None, debug: bool) -> None:
    """Export a run in another tool's format.

    saebench: `{release}_{id}_eval_results.json` per scored SAE."""

    def body() -> None:
        from runtime.report.saebench import export

        written = export(run_dir, out_dir)
        if not written:
            click.echo("no SAE was scored in this run; nothing to export", err=True)
        for path in written:
            click.echo(f"wrote {path}")

    reading(body, debug=debug)
