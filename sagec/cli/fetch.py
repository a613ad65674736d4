"""`sagec fetch SPEC`: download into the Hugging Face cache everything SPEC needs from the hub.

Run it once where the hub is reachable; a machine without it (a compute node) can then run the
spec with HF_HUB_OFFLINE=1. Where the hub cannot be reached (HF_HUB_OFFLINE=1, or no network) it
lists exactly what is missing from the cache and exits 1, or says that nothing is and exits 0.
runtime/execute/fetch.py says what a spec needs.
"""

from __future__ import annotations

import click

from sagec.cli.errors import FAILURE, guarded


@click.command("fetch")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
def command(spec_file: str, debug: bool) -> None:
    """Download the hub models and sae_lens SAEs SPEC_FILE needs into the Hugging Face cache."""
    complete = guarded(lambda: _fetch(spec_file), debug=debug)
    if not complete:
        raise click.exceptions.Exit(FAILURE)


def _fetch(spec_file: str) -> bool:
    from huggingface_hub import constants

    from runtime.execute.fetch import download, missing, needs
    from runtime.model.sources import hub_unreachable
    from sagec import load_spec

    spec = load_spec(spec_file)
    wanted = needs(spec)
    cache = constants.HF_HUB_CACHE
    if not wanted:
        click.echo(f"{spec_file}: nothing to fetch (no hub model and no sae_lens SAE)")
        return True
    unreachable = hub_unreachable()
    if unreachable is None:
        for i, need in enumerate(wanted, start=1):
            click.echo(f"[{i}/{len(wanted)}] {need.label}", err=True)
            download(need, lambda line: click.echo(line, err=True))
    lacking = [(need, missing(need)) for need in wanted]
    count = sum(len(files) for _, files in lacking)
    if count == 0:
        verb = "fetched" if unreachable is None else "already"
        click.echo(f"{spec_file}: everything it needs from the hub is {verb} in the Hugging Face cache ({cache}): "
                   f"{len(wanted)} item{'s' if len(wanted) != 1 else ''}; it runs with HF_HUB_OFFLINE=1")
        return True
    click.echo(f"{spec_file}: missing from the Hugging Face cache ({cache}):")
    for need, files in lacking:
        if files:
            click.echo(f"  {need.label}, {need.origin}:")
            for f in files:
                click.echo(f"    {f}")
    if unreachable is not None:
        click.echo(f"the hub cannot be reached: {unreachable}; run `sagec fetch {spec_file}` where it can", err=True)
    return False
