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
    from sagec.estimate import after_locate_bound, estimate, total
    from sagec.lower import lower
    from sagec.plan import to_json
    from sagec.plan_text import render_dot, render_text

    spec = load_spec(spec_file)
    plan = lower(spec)
    _check_saes(spec)
    cache = ArtifactCache(cache_dir or default_cache_dir())
    locates = {n.id: cache.load_meta(n.key) for n in plan.by_kind("locate") if cache.has(n.key)}
    costs = estimate(plan, _served(plan, locates), {i: list(meta["selected"]) for i, meta in locates.items()})
    bounds = ()
    if not as_dot:
        reach, space = _reach(plan, costs)
        bounds = after_locate_bound(plan, costs, reach, cache.has, space)
    if as_json:
        data = json.loads(to_json(plan))
        data["estimate"] = {node_id: c.to_json() for node_id, c in costs.items()}
        data["after_locate_bound"] = [b.to_json() for b in bounds]
        f, b, s = total(plan, costs, cache.has, bounds)
        pending = any(c.after_locate == "unresolved" for n in plan.nodes if not cache.has(n.key) for c in (costs[n.id],))
        data["total"] = {"forwards": f, "backwards": b, "seconds": s, "upper_bound": pending}
        data["cached"] = {n.id: cache.has(n.key) for n in plan.nodes}
        click.echo(json.dumps(data, indent=1, sort_keys=True))
    elif as_dot:
        click.echo(render_dot(plan, cache.has))
    else:
        click.echo(render_text(plan, costs, cache.has, bounds))


def _served(plan, located: dict) -> dict[str, list[str]]:
    """For score nodes whose locate artifact is cached (`located`: locate id -> its metadata),
    the located cross-sections each serves, from SAE configs alone (runtime/execute/members.py).
    Empty while nothing is located: the plan then marks score nodes "after locate" with an upper
    bound on their cost."""
    # Cached score nodes too: a suite that is not cached reads which sites its members serve.
    scores = [n for n in plan.by_kind("score") if n.inputs[1] in located]
    if not scores:
        return {}
    if any(n.params.sae.source == "zoo" or n.params.model.source == "zoo" for n in scores):
        import runtime.zoo  # noqa: F401  - the zoo's catalogue says where its SAEs read, built or not
    from runtime.execute.members import architectures, resolve_all

    resolved = resolve_all(plan, scores, lambda node_id: located.get(node_id), architectures())
    return {node_id: list(r.sites) for node_id, r in resolved.items()}


def _reach(plan, costs) -> tuple[dict[str, frozenset[str] | None], dict[str, tuple | None]]:
    """For score nodes not resolved yet, the candidate classes of their locate's search space
    (sagec.estimate.candidates) their SAE could serve, from configs alone (None where its
    location cannot be read: counted as serving any). residual_pair is asked as residual: it
    serves a subset of what residual does, so the bound stays an upper bound. Second: each
    locate node's candidates, with the layer count from the model's architecture."""
    from sagec.estimate import candidates

    scores = [n for n in plan.by_kind("score") if costs[n.id].after_locate == "unresolved"]
    if not scores:
        return {}, {}
    if any(n.params.sae.source == "zoo" or n.params.model.source == "zoo" for n in scores):
        import runtime.zoo  # noqa: F401  - the zoo's catalogue says where its SAEs read, built or not
    from runtime.execute.members import architectures
    from runtime.saes.serving import served, where
    from sagec.locations import CrossSection

    arch = architectures()

    def layers(node):
        try:
            return arch(node.params.model).n_layers
        except Exception:  # noqa: BLE001 - no config at hand: candidates falls back on known sizes
            return None

    cands = {n.id: candidates(plan, n, layers(n)) for n in plan.by_kind("locate")}
    out: dict[str, frozenset[str] | None] = {}
    for node in scores:
        space = cands[node.inputs[1]]
        try:
            location = where(node.params.sae, arch(node.params.model)).location
        except Exception:  # noqa: BLE001 - a config not at hand: the bound counts it as serving any
            location = None
        if space is None or location is None:
            out[node.id] = None
            continue
        variant = "residual" if node.params.reconstruct == "residual_pair" else node.params.reconstruct
        out[node.id] = frozenset(str(c) for _, c in space if served(location, variant, CrossSection(c, "any")) is not None)
    return out, cands


def _check_saes(spec) -> None:
    if not any(spec.sae(u.sae).source in ("sae_lens", "path") for ev in spec.evals for u in ev.saes):
        return
    from runtime.execute.fits import check_saes

    for warning in check_saes(spec, require=False, sources=("sae_lens", "path")):
        click.echo(f"warning: {warning}", err=True)
