"""The score pass (METHOD.md sections 4 and 5): one SAE against the ground truth.

Which located cross-sections an SAE serves depends on its reconstruction variant:
- `direct`: the cross-sections at the SAE's own location (resid_post L and resid_pre L+1 are one
  tensor, so either serves both);
- `residual`: an SAE on the residual stream at point R serves every sublayer whose output is
  added into the stream just before R: attention, its heads and the MLP of layer L for
  resid_post L (= resid_pre L+1), attention and its heads for resid_mid L; and R itself
  directly. It reconstructs a sublayer output c from r_after = the stream at R through
  runtime/sage/reconstruct.residual.
Cross-sections it does not serve are left untouched, and the supervised dictionaries are
validated again on exactly the served ones, so the SAE's numbers sit beside a like-for-like
supervised reference. An SAE that serves none is reported with every metric null and the reason.
"""

from __future__ import annotations

import torch

from sagec.locations import CrossSection, Location
from sagec.plan import Node, ScoreParams

from runtime.cache import Artifact
from runtime.passes import common
from runtime.passes.ground_truth import dictionaries_from, patcher, test_data, validate
from runtime.passes.sample import prompt_set
from runtime.passes.trace import key
from runtime.sage import reconstruct
from runtime.sage.evaluate import SaeSite, score_sae

SUBLAYERS_AT = {"resid_post": ("attn_out", "head", "mlp_out"), "resid_mid": ("attn_out", "head")}


def residual_point(location: Location) -> Location:
    """The canonical name of a residual-stream tensor: resid_pre L+1 is resid_post L."""
    if location.component == "resid_pre" and location.layer > 0:
        return Location("resid_post", location.layer - 1)
    return location


def served(sae_location: Location, variant: str, site: CrossSection) -> str | None:
    """How an SAE at `sae_location` reconstructs `site`: "direct", "residual", or None."""
    if variant not in ("direct", "residual"):
        raise ValueError(f"reconstruction {variant!r} is not supported by the score pass yet (it needs SAEs on both sides of a sublayer); use direct or residual")
    point = residual_point(sae_location)
    if residual_point(site.location) == point:
        return "direct"
    if variant == "residual" and point.component in SUBLAYERS_AT and site.location.layer == point.layer and site.location.component in SUBLAYERS_AT[point.component]:
        return "residual"
    return None


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: ScoreParams = node.params
    sample_id, locate_id, trace_id, gt_id = node.inputs
    ps = prompt_set(inputs[sample_id])
    trace, gt = inputs[trace_id], inputs[gt_id]
    loaded = common.loaded_model(ctx, params.model)
    from runtime.saes import check_fits, load_sae

    sae = ctx.resource("sae", params.sae.name, lambda: load_sae(params.sae, loaded.arch))
    check_fits(sae, loaded.arch, params.model.name)
    # The spec's name keys the results; a zoo SAE's own name is kept beside it as `zoo_name`.
    source = {("zoo_name" if k == "name" else k): v for k, v in sae.identity.items()}
    identity = {**source, "name": params.sae.name, "architecture": sae.architecture, "d_in": sae.d_in, "d_sae": sae.d_sae,
                "location": str(sae.location) if sae.location else None, "reconstruct": params.reconstruct}
    if sae.location is None:
        return _nothing(identity, f"SAE {params.sae.name} reads every head's z of a layer at once; scoring such SAEs is not supported yet")
    how = {s: served(sae.location, params.reconstruct, common.parse_site(s)) for s in gt.meta["sites"]}
    sites = [s for s, h in how.items() if h is not None]
    if not sites:
        return _nothing(identity, f"it serves none of the located cross-sections ({', '.join(gt.meta['sites'])}) with {params.reconstruct} reconstruction from {sae.location}")

    dictionaries = {s: d for s, d in dictionaries_from(gt).items() if s in sites}
    data = test_data(ps, trace, sites, params.attributes)
    sae_point = residual_point(sae.location)
    rows = torch.tensor(ps.indices("test"), dtype=torch.long)

    def latents(group: str, site: str) -> tuple[torch.Tensor, torch.Tensor]:
        c = trace.tensors[key(group, site)][rows]
        with torch.no_grad():
            if how[site] == "direct":
                return reconstruct.direct(sae.sae, c)
            where = common.parse_site(site)
            r_after = trace.tensors[key(group, CrossSection(sae_point, where.position))][rows]
            return reconstruct.residual(sae.sae, r_after, c)

    sae_sites = {}
    for s in sites:
        a_hat, f = latents("clean", s)
        twin_f = {a: latents(f"twin:{a}", s)[1] for a in params.attributes}
        sae_sites[s] = SaeSite(a_hat=a_hat, f=f, twin_f=twin_f, w_dec=sae.sae.W_dec.detach())
    # SAEs that serve the same cross-sections share one supervised reference within a run.
    supervised = ctx.resource("supervised", f"{gt_id}|{','.join(sites)}", lambda: validate(ctx, loaded, data, dictionaries))
    scores = score_sae(sae_sites, supervised=supervised, acts=data.acts, twin_acts=data.twin_acts, values=data.values,
                       clean=data.clean, patched=patcher(ctx, loaded, data.prompts), dictionaries=dictionaries)
    meta = {
        "sae": identity,
        "sites": sites,
        "variant_per_site": {s: how[s] for s in sites},
        "scores": scores.to_json(),
        "supervised_on_same_sites": supervised.to_json(),
    }
    return Artifact(meta, {})


def _nothing(identity: dict, reason: str) -> Artifact:
    return Artifact({"sae": identity, "sites": [], "scores": None, "reason": reason}, {})

