"""The score pass (METHOD.md sections 4 and 5): one SAE against the ground truth.

Which located cross-sections an SAE serves depends on its reconstruction variant:
- `direct`: the cross-sections at the SAE's own location (resid_post L and resid_pre L+1 are one
  tensor, so either serves both);
- `residual`: an SAE on the residual stream at point R serves every sublayer whose output is
  added into the stream just before R: attention, its heads and the MLP of layer L for
  resid_post L (= resid_pre L+1), attention and its heads for resid_mid L; and R itself
  directly. It reconstructs a sublayer output c from r_after = the stream at R through
  runtime/sage/reconstruct.residual.
- `residual_pair`: the same sublayers, each with a second SAE of the eval (one also scored with
  residual_pair) on the stream before it: resid_pre L for attention and its heads; for the MLP,
  resid_mid L, or resid_pre L when no SAE reads resid_mid L. Partners of the SAE's own family
  come first (`res[2]` pairs with `res[1]`), then the others in the order the eval lists them.
  A sublayer with no SAE before it is not served. reconstruct.residual_pair says how what else
  lies between the two points is handled.
Cross-sections it does not serve are left untouched, and the supervised dictionaries are
validated again on exactly the served ones, so the SAE's numbers sit beside a like-for-like
supervised reference. Which it serves is settled from configs before any weights are read
(runtime/saes/serving.py): an SAE that serves none is never loaded (nor built, for the zoo) and is
reported with every metric null and the reason, naming its layer and the located cross-sections.
"""

from __future__ import annotations

from runtime.passes import common, reconstruction
from runtime.passes.ground_truth import dictionaries_from, patcher, supervised, test_data, validate
from runtime.passes.sample import prompt_set
from runtime.saes.serving import SUBLAYERS_AT, before_points, pair_before, partner_points, residual_point, served, serves_none, service, where  # noqa: F401  - re-exported
from runtime.sage.evaluate import score_sae
from runtime.store.cache import Artifact
from sagec.plan import Node, ScoreParams


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: ScoreParams = node.params
    sample_id, locate_id, trace_id, gt_id = node.inputs
    gt = inputs[gt_id]
    loaded = common.loaded_model(ctx, params.model)
    from runtime.saes.loading import check_fits, load_sae

    # Which located cross-sections the SAE serves is settled from its configs (and its partners')
    # before any weights are read: one that serves none is never loaded, nor built for the zoo.
    located = list(gt.meta["sites"])
    reads = {}

    def locate(spec_sae):
        if spec_sae.name not in reads:
            reads[spec_sae.name] = ctx.resource("sae where", spec_sae.name, lambda: where(spec_sae, loaded.arch))
        return reads[spec_sae.name].location

    location = locate(params.sae)
    partner_at = partner_points(params.sae, params.partners, locate) if params.reconstruct == "residual_pair" else {}
    plan = service(location, params.reconstruct, located, partner_at, common.parse_site) if location is not None else None
    if plan is None or not plan.sites:
        identity = _described_identity(params, reads[params.sae.name])
        if location is None:
            return _nothing(identity, f"SAE {params.sae.name} reads every head's z of a layer at once; scoring such SAEs is not supported yet")
        return _nothing(identity, serves_none(params.sae.name, params.reconstruct, location, located, partner_at), used=False)

    ps = prompt_set(ctx, inputs, sample_id)
    trace = inputs[trace_id]

    def load(spec_sae):
        loaded_sae = ctx.resource("sae", spec_sae.name, lambda: load_sae(spec_sae, loaded.arch))
        check_fits(loaded_sae, loaded.arch, params.model.name)
        return loaded_sae

    sae = load(params.sae)
    # The spec's name keys the results; a zoo SAE's own name is kept beside it as `zoo_name`.
    source = {("zoo_name" if k == "name" else k): v for k, v in sae.identity.items()}
    identity = {**source, "name": params.label, "architecture": sae.architecture, "d_in": sae.d_in, "d_sae": sae.d_sae,
                "location": str(sae.location) if sae.location else None, "reconstruct": params.reconstruct}
    how, sites = dict(plan.how), plan.sites
    pairs = {s: (b, load(partner)) for s, (b, partner) in plan.pairs.items()}
    every = dictionaries_from(gt)
    dictionaries = {s: every[s] for s in sites}
    data = test_data(ps, trace, sites, params.attributes)
    # The sublayers the SAE serves at one point share its encoding of the stream there (a wide
    # SAE's encoder is most of what scoring it costs).
    streams: reconstruction.Streams = {}
    sae_sites = {s: reconstruction.sae_site(trace, ps.indices("test"), params.attributes, sae, how[s], s, pairs.get(s), streams) for s in sites}
    streams.clear()
    # SAEs that serve the same cross-sections share one supervised reference within a run (the
    # ground-truth pass's own, when they serve all its cross-sections).
    reference = supervised(ctx, gt_id, sites, lambda: validate(ctx, loaded, data, dictionaries))
    scores = score_sae(sae_sites, supervised=reference, acts=data.acts, twin_acts=data.twin_acts, values=data.values,
                       clean=data.clean, patched=patcher(ctx, loaded, data), dictionaries=dictionaries)
    meta = {
        "sae": identity,
        "sites": sites,
        "variant_per_site": {s: how[s] for s in sites},
        "scores": scores.to_json(),
        "supervised_on_same_sites": reference.to_json(),
        "preprocessing": sae.preprocessing.to_json(),
    }
    if pairs:
        meta["pair_per_site"] = {s: {"sae": partner.name, "location": str(partner.location)} for s, (_, partner) in pairs.items()}
    return Artifact(meta, {})


def _described_identity(params: ScoreParams, reads) -> dict:
    """An SAE's identity from its configs alone, for one that is not loaded: its weights (and,
    for a zoo SAE not built yet, its config) were never read."""
    sae = params.sae
    out: dict = {"name": params.label, "source": sae.source, "location": str(reads.location) if reads.location else None,
                 "reconstruct": params.reconstruct, "loaded": False}
    if sae.source == "sae_lens":
        out |= {"release": sae.release or "", "id": sae.sae_id or ""}
    elif sae.source == "zoo":
        out["zoo_name"] = sae.ref or ""
    else:
        out["folder"] = str(sae.ref)
    d = reads.description
    if d is not None:
        out |= {"architecture": d.architecture, "d_in": d.d_in, "d_sae": d.d_sae}
    return out


def _nothing(identity: dict, reason: str, used: bool | None = None) -> Artifact:
    meta = {"sae": identity, "sites": [], "scores": None, "reason": reason}
    if used is not None:
        meta["used"] = used
    return Artifact(meta, {})
