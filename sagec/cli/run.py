"""`sagec run SPEC`: execute the plan (resuming from the cache) and write results.json."""

from __future__ import annotations

import sys
import traceback

import click

from sagec.cli.errors import FAILURE, guarded


@click.command("run")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write results here instead of the spec's `report` folder.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Artifact cache (default: the user cache, ~/.cache/sagec).")
@click.option("--force", is_flag=True, help="Recompute every node even when its artifact is cached.")
@click.option("--only", "only", metavar="NODE", help="Run only NODE and what it needs (ids as `sagec plan` prints them).")
@click.option("--quiet", "-q", is_flag=True, help="Print warnings and the paths written only (no progress, no summary table).")
@click.option("--verbose", "-v", is_flag=True, help="Also print what each pass chose.")
@click.option("--debug", is_flag=True, help="Show tracebacks of failures.")
def command(spec_file: str, out_dir: str | None, cache_dir: str | None, force: bool, only: str | None, quiet: bool, verbose: bool, debug: bool) -> None:
    """Run SPEC_FILE: sample, locate, trace, ground truth, score, report."""
    guarded(lambda: _run(spec_file, out_dir, cache_dir, force, only, "quiet" if quiet else "verbose" if verbose else "normal", debug), debug=debug)


def _run(spec_file: str, out_dir: str | None, cache_dir: str | None, force: bool, only: str | None, level: str, debug: bool) -> None:
    from sagec import load_spec

    spec = load_spec(spec_file)
    from runtime.execute.executor import NodeFailed
    from runtime.execute.progress import Reporter
    from runtime.execute.run import run_spec

    try:
        summary = run_spec(spec, cache_dir=cache_dir, out_dir=out_dir, force=force, only=only, reporter=Reporter(level))
    except NodeFailed as e:
        # A failure while running (out of memory, a broken file): not a spec mistake, not
        # necessarily our bug; name the node so the user knows what to look at or --only.
        if debug:
            traceback.print_exception(type(e.cause), e.cause, e.cause.__traceback__, file=sys.stderr)
        click.echo(f"sagec: {e}" + ("" if debug else " (run again with --debug for the traceback)"), err=True)
        raise click.exceptions.Exit(FAILURE) from None
    # Ends with the suites and SAEs ranked, the supervised dictionary beside them, and the
    # paths written (runtime/execute/summary.py); --quiet keeps only the paths.
    from rich.console import Console

    from runtime.execute.summary import print_summary

    out = sys.stdout
    console = Console(file=out, highlight=False, width=None if out.isatty() else 160)
    print_summary(summary.results, summary.reports, console, quiet=level == "quiet")
