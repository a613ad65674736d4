"""The locate pass (METHOD.md section 2): which cross-sections carry the task.

Every candidate (component x layer x named position of the search space) is scored by attribution
patching against each twin family (the spec's counterfactual and each attribute's own twin):

    attr(l) = mean_p (a_l(p') - a_l(p)) . d m(p) / d a_l(p)

from one forward and backward on the clean train prompts and one forward per twin family. The
sums stream over chunks of prompts, so memory holds one chunk's activations for all candidates.
`method integrated` adds integrated gradients along the path from the twin's activations to the
clean ones (`integrated_chunk`), `steps` forward and backward passes per site group and family,
and ranks by them; plain attribution is kept beside it, so the report shows how far the two
first-order estimates agree with real patching. The selection (runtime/sage/selection.py) takes
the spec's number in total or per family, residual streams ranked apart from sublayers. `verify
patching` then patches the selection and a margin below it for real, on at most VERIFY_PROMPTS
train prompts, reports both numbers, and selects on the verified effect; `method patching` ranks
every candidate that way (exact, and as many forwards as candidates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from runtime.model.forward import Patch
from runtime.passes import common
from runtime.passes.sample import prompt_set
from runtime.sage.selection import interleave, margin_pools, select_pools, shares, spearman
from runtime.store.cache import Artifact
from runtime.task.prompts import Prompt, PromptSet
from sagec.locations import CrossSection, Location
from sagec.names import COMPONENTS
from sagec.plan import LocateParams, Node
from sagec.selection import POOLS, describe, pool_of

CHUNK_MEMORY = 256 << 20  # bytes of candidate activations and gradients one attribution chunk may hold
MAX_CHUNK = 512
VERIFY_PROMPTS = 32  # train prompts each verification patch runs on


def candidates(components: Sequence[str], layers: Sequence[int] | None, arch) -> list[Location]:
    """The search space's locations, in layer order (the order forwards visit them)."""
    out = []
    for layer in (range(arch.n_layers) if layers is None else layers):
        for component in COMPONENTS:
            if component not in components:
                continue
            if component in ("head", "head_z"):
                out.extend(Location(component, layer, h) for h in range(arch.n_heads))
            else:
                out.append(Location(component, layer))
    return out


def families(ps: PromptSet) -> dict[str, tuple[Prompt, ...]]:
    return {name: group for name, group in ps.groups().items() if name != "clean"}


def chunk_size(locations: Sequence[Location], names: Sequence[str], arch) -> int:
    """Prompts per attribution chunk: as many as keep the clean activations, their gradients and
    one family's activations at every candidate within CHUNK_MEMORY (hundreds of candidates on a
    real model mean small chunks; a small search space, one long batch)."""
    per_prompt = 3 * 4 * len(names) * sum(arch.width(loc) for loc in locations)
    return max(1, min(MAX_CHUNK, CHUNK_MEMORY // max(per_prompt, 1)))


def attribution(ctx, loaded, ps: PromptSet, rows: Sequence[int], locations: Sequence[Location], names: Sequence[str],
                steps: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """attr per family, shape (len(locations) * len(names),) in (location, position) order; and,
    with `steps`, the integrated gradients of the same candidates (else None)."""
    fams = families(ps)
    sums = {f: torch.zeros(len(locations), len(names), dtype=torch.float64) for f in fams}
    integrated = {f: torch.zeros(len(locations), len(names), dtype=torch.float64) for f in fams} if steps else None
    per_prompt = 1 + len(fams) * (1 + (len(groups(locations, names, [ps.prompts[i] for i in rows])) * steps if steps else 0))
    with ctx.reporter.track("integrated gradients" if steps else "attribution", total=len(rows) * per_prompt) as bar:
        for chunk in common.chunks(list(rows), chunk_size(locations, names, loaded.arch)):
            clean = [ps.prompts[i] for i in chunk]
            c = common.collect_with_grads(ctx, loaded, clean, names, locations)
            bar.advance(len(chunk))
            for f, group in fams.items():
                t = common.collect(ctx, loaded, [group[i] for i in chunk], names, locations)
                for li, loc in enumerate(locations):
                    for pj, name in enumerate(names):
                        key = (loc, name)
                        diff = t.activations[key] - c.activations[key]
                        sums[f][li, pj] += (diff * c.gradients[key]).sum().double()
                bar.advance(len(chunk))
                if integrated is not None:
                    integrated[f] += integrated_chunk(ctx, loaded, clean, c, t, locations, names, steps, bar)
    mean = {f: (s / max(len(rows), 1)).flatten() for f, s in sums.items()}
    return mean, None if integrated is None else {f: (s / max(len(rows), 1)).flatten() for f, s in integrated.items()}


def groups(locations: Sequence[Location], names: Sequence[str], prompts: Sequence[Prompt]) -> list[list[tuple[int, int]]]:
    """The (location index, position index) pairs integrated gradients moves together: one site
    of one layer (a component; a layer's heads together) at every named position, as Marks et
    al. (2024) interpolate one submodule at a time. Sites of different components of a layer lie
    on each other's paths (a fixed attn_out would cut resid_pre's gradient through it), so they
    are never moved together. Names that fall on the same token of some prompt go to separate
    groups (one token cannot take two twins' values at once)."""
    by_site: dict[tuple[int, str], list[int]] = {}
    for li, loc in enumerate(locations):
        by_site.setdefault((loc.layer, loc.component), []).append(li)
    columns = {n: [p.positions[n] % len(p.ids) for p in prompts] for n in names}
    buckets: list[list[int]] = []
    for pj, name in enumerate(names):
        for bucket in buckets:
            if all(a != b for other in bucket for a, b in zip(columns[name], columns[names[other]], strict=True)):
                bucket.append(pj)
                break
        else:
            buckets.append([pj])
    return [[(li, pj) for li in lis for pj in bucket] for lis in by_site.values() for bucket in buckets]


def integrated_chunk(ctx, loaded, clean: Sequence[Prompt], c, t, locations: Sequence[Location], names: Sequence[str], steps: int, bar) -> torch.Tensor:
    """Summed over the chunk's prompts, per (location, position): integrated gradients along the
    straight path from the twin's activation a' to the clean one a (EAP-IG; Hanna et al. 2024,
    on activations as Marks et al. 2024),

        ig(l) = (a' - a) . mean_k d m / d a_l  at  a' + alpha_k (a - a'),  alpha_k = (k - 1/2) / steps,

    the midpoint rule on `steps` points. Where the metric is linear in a_l this is attribution;
    where a softmax saturates between a' and a, the gradient at a alone is near zero while the
    path crosses the steep part, and ig approaches the patching effect m(a') - m(a). The steps
    of a group run as one batch of steps x prompts rows."""
    alphas = [(k + 0.5) / steps for k in range(steps)]
    n = len(clean)
    repeated = [p for _ in alphas for p in clean]  # step-major: row k * n + i is prompt i at alpha_k
    out = torch.zeros(len(locations), len(names), dtype=torch.float64)
    for group in groups(locations, names, clean):
        patches = []
        for li, pj in group:
            key = (locations[li], names[pj])
            a, twin = c.activations[key], t.activations[key]
            values = torch.cat([twin + alpha * (a - twin) for alpha in alphas])
            patches.append(Patch(locations[li], [p.positions[names[pj]] for p in repeated], values))
        _, grads = common.patched_gradients(ctx, loaded, repeated, patches)
        for (li, pj), g in zip(group, grads, strict=True):
            key = (locations[li], names[pj])
            mean = g.view(steps, n, -1).mean(dim=0)
            out[li, pj] += ((t.activations[key] - c.activations[key]) * mean).sum().double()
        bar.advance(n * steps)
    return out


def patch_effects(ctx, loaded, ps: PromptSet, rows: Sequence[int], sites: Sequence[CrossSection], family_of: dict[CrossSection, str]) -> dict[CrossSection, float]:
    """Real activation patching: mean change of m(p) when a_l(p) is replaced by a_l(p')."""
    clean = [ps.prompts[i] for i in rows]
    metric = common.metric_of(clean)
    base = common.patched_logits(ctx, loaded, clean, [], reduce=metric)
    fams = families(ps)
    twin_acts = {}
    for f in sorted(set(family_of[s] for s in sites)):
        twins = [fams[f][i] for i in rows]
        wanted = [s for s in sites if family_of[s] == f]
        got = common.collect(ctx, loaded, twins, sorted({s.position for s in wanted}), sorted({s.location for s in wanted}))
        for s in wanted:
            twin_acts[s] = got.activations[(s.location, s.position)]
    effects = {}
    with ctx.reporter.track("verify by patching", total=len(sites), unit="cross-sections") as bar:
        for s in sites:
            patch = Patch(s.location, [p.positions[s.position] for p in clean], twin_acts[s])
            # On a heavy model a late patch recomputes only its last tokens and layers.
            path = common.suffix_path(loaded, clean, [s])
            prefix = common.prefix_cache(ctx, loaded, clean, *path) if path is not None else None
            effects[s] = float((common.patched_logits(ctx, loaded, clean, [patch], prefix=prefix, reduce=metric) - base).mean())
            bar.advance()
    return effects


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: LocateParams = node.params
    spec = params.locate
    ps = prompt_set(ctx, inputs, node.inputs[0])
    loaded = common.loaded_model(ctx, params.model)
    locations = candidates(spec.components, spec.layers, loaded.arch)
    names = list(spec.positions)
    sites = [CrossSection(loc, n) for loc in locations for n in names]
    train = ps.indices("train")
    if not families(ps):
        raise ValueError("the task has neither a counterfactual rule nor attributes, so there is nothing to patch in")

    plain, integrated = attribution(ctx, loaded, ps, train, locations, names, spec.steps if spec.method == "integrated" else None)
    scores = integrated if integrated is not None else plain
    best_family = [list(scores)[int(i)] for i in shares(scores).argmax(dim=0)]
    family_of = {site: best_family[i] for i, site in enumerate(sites)}
    verify_rows = list(train[:VERIFY_PROMPTS])
    pool_names = [p for p in POOLS if any(pool_of(s.location.component) == p for s in sites)]
    pools = [[i for i, s in enumerate(sites) if pool_of(s.location.component) == p] for p in pool_names]

    def by_family(effects: dict[CrossSection, float], among: Sequence[int]) -> dict[str, torch.Tensor]:
        """Verified effects as per-family scores over `among`: each site counts for its family."""
        return {f: torch.tensor([effects[sites[i]] if family_of[sites[i]] == f else 0.0 for i in among], dtype=torch.float64) for f in scores}

    if spec.method == "patching":
        verified = patch_effects(ctx, loaded, ps, verify_rows, sites, family_of)
        chosen = select_pools(by_family(verified, range(len(sites))), pools, spec.top, spec.fraction, spec.per_family)
    else:
        chosen = select_pools(scores, pools, spec.top, spec.fraction, spec.per_family)
        verified = {}
        if spec.verify:
            extra = margin_pools(scores, pools, chosen, max(2, max(len(c) for c in chosen) // 2))
            verified = patch_effects(ctx, loaded, ps, verify_rows, [sites[i] for c in chosen for i in c] + [sites[i] for i in extra], family_of)
            # Select on the verified effect, the same number per pool, the families interleaved.
            reselected = []
            for pool, picked in zip(pools, chosen, strict=True):
                checked = [i for i in pool if sites[i] in verified]
                reselected.append([checked[j] for j in interleave(by_family(verified, checked), len(picked))] if picked else [])
            chosen = reselected
    selected = [sites[i] for c in chosen for i in c]
    counts = {p: len(c) for p, c in zip(pool_names, chosen, strict=True)}
    summary = describe(spec, len(scores), counts, {p: len(pool) for p, pool in zip(pool_names, pools, strict=True)})

    ctx.reporter.detail(f"{node.id}: {summary}: {', '.join(common.site_name(s) for s in selected)}")
    table = []
    for i, site in enumerate(sites):
        row = {
            "site": common.site_name(site),
            "location": str(site.location),
            "position": site.position,
            "pool": pool_of(site.location.component),
            "attribution": {f: float(plain[f][i]) for f in plain},
            "family": family_of[site],
            "patching": verified.get(site),
            "selected": site in selected,
        }
        if integrated is not None:
            row["integrated"] = {f: float(integrated[f][i]) for f in integrated}
        table.append(row)

    def agreement(values: dict[str, torch.Tensor] | None, among: Sequence[int]) -> float | None:
        """Spearman between a score (of each site's family) and the verified patching effect."""
        checked = [i for i in among if sites[i] in verified]
        if values is None or len(checked) <= 2:
            return None
        r = spearman([float(values[family_of[sites[i]]][i]) for i in checked], [verified[sites[i]] for i in checked])
        return None if math.isnan(r) else r

    every = range(len(sites))
    meta = {
        "method": spec.method,
        "steps": spec.steps if spec.method == "integrated" else None,
        "families": list(scores),
        "selected": [common.site_name(s) for s in selected],
        "selection": {"summary": summary, "counts": counts, "candidates": {p: len(pool) for p, pool in zip(pool_names, pools, strict=True)}},
        "candidates": table,
        "verified_on_prompts": len(verify_rows) if verified else 0,
        "attribution_patching_spearman": agreement(plain, every),
        "integrated_patching_spearman": agreement(integrated, every),
        "agreement_by_pool": {p: {"attribution": agreement(plain, pool), "integrated": agreement(integrated, pool)}
                              for p, pool in zip(pool_names, pools, strict=True)},
    }
    tensors = {f"attribution|{f}": s.float() for f, s in plain.items()}
    if integrated is not None:
        tensors |= {f"integrated|{f}": s.float() for f, s in integrated.items()}
    return Artifact(meta, tensors)


def selected_sites(artifact: Artifact) -> list[CrossSection]:
    return [common.parse_site(name) for name in artifact.meta["selected"]]
