"""The baseline pass (METHOD.md section 7): one trivial basis (PCA, the neuron basis, a random
basis) fitted on the train split at every located cross-section, and scored through the very
code that scores an SAE (runtime/sage/evaluate.score_sae), against the same supervised
reference: on every located cross-section, or beside one SAE on exactly the cross-sections that
SAE serves (read from its score node), so the two are compared on the same edits.

A complete basis reconstructs exactly: its spliced metric, sufficiency, logit difference
recovered and necessity are null with that reason, and the two forwards they would take are not
run; `pca K` with K below a cross-section's width gets real ones. Within a run each basis is
fitted once per cross-section, and SAEs that serve the same cross-sections share one scoring of
it.
"""

from __future__ import annotations

import torch

from runtime.passes import common
from runtime.passes.ground_truth import dictionaries_from, patcher, supervised, test_data, validate
from runtime.passes.sample import prompt_set
from runtime.passes.trace import read
from runtime.sage import baselines
from runtime.sage.evaluate import SaeScores, score_sae
from runtime.store.cache import Artifact
from sagec.plan import BaselineParams, Node


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: BaselineParams = node.params
    sample_id, locate_id, trace_id, gt_id, *sae = node.inputs
    ps = prompt_set(ctx, inputs, sample_id)
    trace, gt = inputs[trace_id], inputs[gt_id]
    base = params.baseline
    sites = list(inputs[sae[0]].meta["sites"]) if sae else list(gt.meta["sites"])
    train = ps.indices("train")
    bases = {
        s: ctx.resource("basis", f"{trace_id}|{base.name}|{s}", lambda s=s: baselines.fit(base.kind, read(trace, "clean", s, train), components=base.components, site=s))
        for s in sites
    }
    complete = all(b.complete for b in bases.values())
    identity = {
        "name": base.name,
        "kind": base.kind,
        "components": base.components,
        "complete": complete,
        "directions_per_site": {s: {"width": int(b.directions.shape[1]), "directions": int(b.directions.shape[0])} for s, b in bases.items()},
    }
    if base.kind == "random":
        identity["seed"] = baselines.RANDOM_SEED
    meta: dict = {"baseline": identity, "beside": params.beside, "sites": sites}
    if not sites:
        return Artifact({**meta, "scores": None, "reason": f"{params.beside} serves none of the located cross-sections"}, {})

    def score() -> tuple[SaeScores, dict]:
        data = test_data(ps, trace, sites, params.attributes)
        loaded = common.loaded_model(ctx, params.model)
        # In the order of `sites` (the ground truth's), whether its artifact was computed in this
        # run or read back from the cache: the order cross-sections are patched in moves the last
        # bits of a forward, and a run must give the same numbers either way.
        fitted = dictionaries_from(gt)
        dictionaries = {s: fitted[s] for s in sites}
        reference = supervised(ctx, gt_id, sites, lambda: validate(ctx, loaded, data, dictionaries))
        as_sae = {s: bases[s].site(data.acts[s], {a: data.twin_acts[a][s] for a in params.attributes}) for s in sites}
        # A complete basis's splice is the clean forward and its removal the mean ablation: not run.
        scores = score_sae(as_sae, supervised=reference, acts=data.acts, twin_acts=data.twin_acts, values=data.values,
                           clean=data.clean, patched=patcher(ctx, loaded, data), dictionaries=dictionaries,
                           exact=baselines.COMPLETE if complete else None)
        return scores, reference.to_json()

    scores, reference = ctx.resource("baseline scores", f"{gt_id}|{base.name}|{','.join(sorted(sites))}", score)
    return Artifact({**meta, "scores": scores.to_json(), "supervised_on_same_sites": reference}, {})
