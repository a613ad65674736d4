"""The locate pass (METHOD.md section 2): which cross-sections carry the task.

Every candidate (component x layer x named position of the search space) is scored by attribution
patching against each twin family (the spec's counterfactual and each attribute's own twin):

    attr(l) = mean_p (a_l(p') - a_l(p)) . d m(p) / d a_l(p)

from one forward and backward on the clean train prompts and one forward per twin family. The
sums stream over chunks of prompts, so memory holds one chunk's activations for all candidates.
The selection is the union over families (runtime/sage/selection.py). `verify patching` then
patches the selection and a margin below it for real, on at most VERIFY_PROMPTS train prompts,
reports both numbers, and selects on the verified effect; `method patching` ranks every candidate
that way (exact, and as many forwards as candidates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from runtime.model.forward import Patch
from runtime.passes import common
from runtime.passes.sample import prompt_set
from runtime.sage.selection import margin, select, select_family, shares, spearman
from runtime.store.cache import Artifact
from runtime.task.prompts import Prompt, PromptSet
from sagec.locations import CrossSection, Location
from sagec.names import COMPONENTS
from sagec.plan import LocateParams, Node

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


def attribution(ctx, loaded, ps: PromptSet, rows: Sequence[int], locations: Sequence[Location], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """attr per family, shape (len(locations) * len(names),) in (location, position) order."""
    fams = families(ps)
    sums = {f: torch.zeros(len(locations), len(names), dtype=torch.float64) for f in fams}
    with ctx.reporter.track("attribution", total=len(rows) * (1 + len(fams))) as bar:
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
    return {f: (s / max(len(rows), 1)).flatten() for f, s in sums.items()}


def patch_effects(ctx, loaded, ps: PromptSet, rows: Sequence[int], sites: Sequence[CrossSection], family_of: dict[CrossSection, str]) -> dict[CrossSection, float]:
    """Real activation patching: mean change of m(p) when a_l(p) is replaced by a_l(p')."""
    clean = [ps.prompts[i] for i in rows]
    base = common.metric_values(common.patched_logits(ctx, loaded, clean, []), clean)
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
            logits = common.patched_logits(ctx, loaded, clean, [patch])
            effects[s] = float((common.metric_values(logits, clean) - base).mean())
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

    scores = attribution(ctx, loaded, ps, train, locations, names)
    best_family = [list(scores)[int(i)] for i in shares(scores).argmax(dim=0)]
    family_of = {site: best_family[i] for i, site in enumerate(sites)}
    verify_rows = list(train[:VERIFY_PROMPTS])

    if spec.method == "patching":
        verified = patch_effects(ctx, loaded, ps, verify_rows, sites, family_of)
        effects = torch.tensor([verified[s] for s in sites], dtype=torch.float64)
        selected = [sites[i] for i in select_family(effects, spec.top, spec.fraction)]
    else:
        chosen = select(scores, spec.top, spec.fraction)
        selected = [sites[i] for i in chosen]
        verified = {}
        if spec.verify:
            extra = [sites[i] for i in margin(scores, chosen, max(2, len(chosen) // 2))]
            verified = patch_effects(ctx, loaded, ps, verify_rows, selected + extra, family_of)
            selected = sorted(verified, key=lambda s: -abs(verified[s]))[: len(selected)]

    ctx.reporter.detail(f"{node.id}: selected {', '.join(common.site_name(s) for s in selected)}")
    table = []
    for i, site in enumerate(sites):
        table.append({
            "site": common.site_name(site),
            "location": str(site.location),
            "position": site.position,
            "attribution": {f: float(scores[f][i]) for f in scores},
            "family": family_of[site],
            "patching": verified.get(site),
            "selected": site in selected,
        })
    checked = [s for s in sites if s in verified]
    agreement = spearman([float(scores[family_of[s]][sites.index(s)]) for s in checked], [verified[s] for s in checked]) if len(checked) > 2 else None
    meta = {
        "method": spec.method,
        "families": list(scores),
        "selected": [common.site_name(s) for s in selected],
        "candidates": table,
        "verified_on_prompts": len(verify_rows) if verified else 0,
        "attribution_patching_spearman": None if agreement is None or math.isnan(agreement) else agreement,
    }
    tensors = {f"attribution|{f}": s.float() for f, s in scores.items()}
    return Artifact(meta, tensors)


def selected_sites(artifact: Artifact) -> list[CrossSection]:
    return [common.parse_site(name) for name in artifact.meta["selected"]]
