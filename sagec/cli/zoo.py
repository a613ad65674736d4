"""`sagec zoo build NAME... | --all`: rebuild zoo models and SAEs from their recipes (seeded, so a
rebuild reproduces them). `--all` rebuilds everything committed: the tiny models, then their SAEs."""

from __future__ import annotations

import click

from sagec.cli.errors import USER_ERROR, guarded


@click.group("zoo")
def command() -> None:
    """The built-in zoo of models and SAEs (list it with `sagec ls zoo`)."""


@command.command("build")
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "build_all", is_flag=True, help="Rebuild every committed zoo model and SAE.")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def build(names: tuple[str, ...], build_all: bool, debug: bool) -> None:
    """Rebuild zoo models (e.g. tiny-ioi) or SAEs (e.g. tiny-ioi/topk-k8/resid_post.1)."""
    if not names and not build_all:
        raise click.UsageError("name a zoo model or SAE, or pass --all")
    guarded(lambda: _build(names, build_all), debug=debug)


def _build(names: tuple[str, ...], build_all: bool) -> None:
    from runtime import zoo  # torch and sae_lens load only when the command runs
    from runtime.zoo.models import TINY, build_model, model_names
    from runtime.zoo.names import unknown
    from runtime.zoo.saes import build_saes
    from runtime.zoo.saes import names as sae_names

    if build_all:
        for model in TINY:
            build_model(model, log=click.echo)
        build_saes([s.name for s in zoo.zoo_saes() if s.committed], log=click.echo)
        return
    known = model_names() + sae_names()
    bad = [n for n in names if n not in known]
    for n in bad:
        click.echo(f"sagec: {unknown('zoo model or SAE', n, known)}", err=True)
    if bad:
        raise click.exceptions.Exit(USER_ERROR)
    models = [n for n in names if n in model_names()]
    for model in models:
        click.echo(f"building {model}")
        build_model(model, log=click.echo)
    saes = [n for n in names if n not in models]
    if saes:
        for path in build_saes(saes, log=click.echo):
            click.echo(f"built {path}")
