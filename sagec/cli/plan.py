"""`sagec plan SPEC`: the execution plan, its cache state and its cost, without loading weights.

It also refuses, from configs alone, an SAE from sae_lens or a folder that does not fit its model
(hook, width, TransformerLens preprocessing; runtime/execute/fits.py). Zoo SAEs are checked by
`sagec check --deep` and before `sagec run`'s first model pass: describing them needs the zoo,
whose import costs seconds.
"""

from __future__ import annotations

import click

from sagec.cli.errors import guarded


@click.command("plan")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (the runtime's contract).")
@click.option("--dot", "as_dot", is_flag=True, help="Print the plan as a Graphviz graph.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Artifact cache to check (default: the user cache).")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
def command(spec_file: str, as_json: bool, as_dot: bool, cache_dir: str | None, debug: bool) -> None:
    """Show the plan SPEC_FILE compiles to: nodes, keys, what is cached, what it will cost."""
    guarded(lambda: _plan(spec_file, as_json, as_dot, cache_dir), debug=debug)


def _plan(spec_file: str, as_json: bool, as_dot: bool, cache_dir: str | None) -> None:
    import json

    from runtime.store.cache import ArtifactCache  # plain files; does not import torch
    from runtime.store.userdirs import cache_dir as default_cache_dir
    from sagec import load_spec
    from sagec.estimate import estimate
    from sagec.lower import lower
    from sagec.plan import to_json
    from sagec.plan_text import render_dot, render_text

    spec = load_spec(spec_file)
    plan = lower(spec)
    _check_saes(spec)
    cache = ArtifactCache(cache_dir or default_cache_dir())
    costs = estimate(plan, _served(plan, cache))
    if as_json:
        data = json.loads(to_json(plan))
        data["estimate"] = {node_id: c.to_json() for node_id, c in costs.items()}
        data["cached"] = {n.id: cache.has(n.key) for n in plan.nodes}
        click.echo(json.dumps(data, indent=1, sort_keys=True))
    elif as_dot:
        click.echo(render_dot(plan, cache.has))
    else:
        click.echo(render_text(plan, costs, cache.has))


def _served(plan, cache) -> dict[str, list[str]]:
    """For score nodes whose locate artifact is cached, the located cross-sections each serves,
    from SAE configs alone (runtime/execute/members.py). Empty while nothing is located: the
    plan then marks score nodes "after locate" with an upper bound on their cost."""
    located = {n.id: cache.load_meta(n.key) for n in plan.by_kind("locate") if cache.has(n.key)}
    # Cached score nodes too: a suite that is not cached reads which sites its members serve.
    scores = [n for n in plan.by_kind("score") if n.inputs[1] in located]
    if not scores:
        return {}
    if any(n.params.sae.source == "zoo" or n.params.model.source == "zoo" for n in scores):
        import runtime.zoo  # noqa: F401  - the zoo's catalogue says where its SAEs read, built or not
    from runtime.execute.members import architectures, resolve_all

    resolved = resolve_all(plan, scores, lambda node_id: located.get(node_id), architectures())
    return {node_id: list(r.sites) for node_id, r in resolved.items()}


def _check_saes(spec) -> None:
    if not any(spec.sae(u.sae).source in ("sae_lens", "path") for ev in spec.evals for u in ev.saes):
        return
    from runtime.execute.fits import check_saes

    for warning in check_saes(spec, require=False, sources=("sae_lens", "path")):
        click.echo(f"warning: {warning}", err=True)
