"""The trace pass: one batched forward per prompt group (clean, the counterfactual, each
attribute's twin) collecting every activation the later passes read, and the task metric.

Only the rows later passes read are traced: every clean prompt (dictionaries and baselines are
fitted on the train split, scores read the test split) and the test split of every other group
(the twins' activations and outcomes are only ever read there). The twins' and the
counterfactual's train prompts are the ones locate already ran; tracing them again would double
the pass for nothing. `read` maps prompt indices to the stored rows.

At each located cross-section (a location at a named position) it keeps the location itself and,
at the same layer and position, the residual stream before, between and after the sublayers:
exactly what supervised dictionaries and every reconstruction variant of METHOD.md section 4
read, and at an MLP output the MLP's input (mlp_in), which a transcoder reads. That set depends
on the located cross-sections, never on the SAEs, so adding an SAE to a spec adds no model pass
for activations.
"""

from __future__ import annotations

import torch

from runtime.passes import common
from runtime.passes.locate import selected_sites
from runtime.passes.sample import prompt_set
from runtime.sage.statistics import mean_estimate
from runtime.store.cache import Artifact
from sagec.locations import CrossSection, Location
from sagec.plan import Node, TraceParams

RESIDUALS = ("resid_pre", "resid_mid", "resid_post")


def trace_sites(sites: list[CrossSection]) -> list[CrossSection]:
    """The located sites plus the residual stream around each, and the MLP's input beside each
    MLP output (what a transcoder reads), in a stable order."""
    out = set(sites)
    for s in sites:
        out.update(CrossSection(Location(c, s.location.layer), s.position) for c in RESIDUALS)
        if s.location.component == "mlp_out":
            out.add(CrossSection(Location("mlp_in", s.location.layer), s.position))
    return sorted(out)


def key(group: str, site: CrossSection | str) -> str:
    return f"{group}|{site if isinstance(site, str) else common.site_name(site)}"


def traced_rows(ps, group: str) -> tuple[int, ...]:
    """The prompt indices of `group` the trace collects (module docstring)."""
    return tuple(range(len(ps.prompts))) if group == "clean" else ps.indices("test")


def read(trace: Artifact, group: str, site: CrossSection | str, rows) -> torch.Tensor:
    """`group`'s tensor at `site` (a cross-section, "metric" or "argmax") for prompt indices
    `rows`, in that order."""
    held = trace.meta["rows"][group]
    at = {r: i for i, r in enumerate(held)}
    wanted = [int(r) for r in rows]
    missing = [r for r in wanted if r not in at]
    if missing:
        raise KeyError(f"the trace holds {len(held)} of {group}'s prompts (every clean one, the other groups' test split), not prompt {missing[0]}")
    return trace.tensors[key(group, site)][torch.tensor([at[r] for r in wanted], dtype=torch.long)]


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: TraceParams = node.params
    ps = prompt_set(ctx, inputs, node.inputs[0])
    located: list[CrossSection] = []
    for locate_id in node.inputs[1:]:
        located += [s for s in selected_sites(inputs[locate_id]) if s not in located]
    sites = trace_sites(located + list(params.extra))
    loaded = common.loaded_model(ctx, params.model)
    names = sorted({s.position for s in sites})
    locations = sorted({s.location for s in sites})
    tensors: dict[str, torch.Tensor] = {}
    groups_meta, rows_meta = {}, {}
    chosen = {group: traced_rows(ps, group) for group in ps.groups()}
    with ctx.reporter.track("trace", total=sum(len(r) for r in chosen.values())) as bar:
        for group, every in ps.groups().items():
            rows = chosen[group]
            prompts = [every[i] for i in rows]
            got = common.collect(ctx, loaded, prompts, names, locations)
            bar.advance(len(prompts))
            for s in sites:
                tensors[key(group, s)] = got.activations[(s.location, s.position)]
            metric = common.metric_values(got.logits, prompts)
            tensors[key(group, "metric")] = metric
            tensors[key(group, "argmax")] = got.logits.argmax(dim=-1)
            rows_meta[group] = list(rows)
            splits = {split: [i for i, r in enumerate(rows) if ps.prompts[r].split == split] for split in ("train", "test")}
            groups_meta[group] = {split: _metric_summary(metric[at]) for split, at in splits.items() if at}
            if all(splits.values()):
                groups_meta[group]["all"] = _metric_summary(metric)
    meta = {
        "located": [common.site_name(s) for s in located],
        "sites": [common.site_name(s) for s in sites],
        "shapes": {common.site_name(s): [len(ps.prompts), loaded.arch.width(s.location)] for s in sites},
        "groups": list(ps.groups()),
        "rows": rows_meta,
        "metric": groups_meta,
        "model": dict(loaded.identity) | {"architecture": loaded.arch.to_json()},
    }
    return Artifact(meta, tensors)


def _metric_summary(metric: torch.Tensor) -> dict:
    """The task metric's mean and its accuracy (the fraction of prompts with metric > 0)."""
    return {
        "prompts": len(metric),
        "mean": mean_estimate(metric).to_json(),
        "accuracy": mean_estimate((metric > 0).double()).to_json(),
    }
