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
supervised reference. An SAE that serves none is reported with every metric null and the reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from runtime.passes import common
from runtime.passes.ground_truth import dictionaries_from, patcher, supervised, test_data, validate
from runtime.passes.sample import prompt_set
from runtime.passes.trace import key
from runtime.sage import reconstruct
from runtime.saes import preprocessing
from runtime.sage.evaluate import SaeSite, score_sae
from runtime.store.cache import Artifact
from sagec.locations import CrossSection, Location
from sagec.plan import Node, ScoreParams

if TYPE_CHECKING:
    from runtime.saes.loading import LoadedSae

SUBLAYERS_AT = {"resid_post": ("attn_out", "head", "mlp_out"), "resid_mid": ("attn_out", "head")}


def residual_point(location: Location) -> Location:
    """The canonical name of a residual-stream tensor: resid_pre L+1 is resid_post L."""
    if location.component == "resid_pre" and location.layer > 0:
        return Location("resid_post", location.layer - 1)
    return location


def before_points(site: Location, after: Location) -> tuple[Location, ...]:
    """Where residual_pair's second SAE may read for `site`'s sublayer, whose output reaches the
    stream at `after`: the streams of `site`'s layer before it, nearest first."""
    if site.component == "mlp_out" and after.component == "resid_post":
        return (Location("resid_mid", site.layer), Location("resid_pre", site.layer))
    return (Location("resid_pre", site.layer),)


def served(sae_location: Location, variant: str, site: CrossSection, partners: Collection[Location] = ()) -> str | None:
    """How an SAE at `sae_location` reconstructs `site`: "direct", "residual", "residual_pair", or
    None. `partners`: the residual points where residual_pair's other SAEs read."""
    point = residual_point(sae_location)
    if residual_point(site.location) == point:
        return "direct"
    writes_here = point.component in SUBLAYERS_AT and site.location.layer == point.layer and site.location.component in SUBLAYERS_AT[point.component]
    if variant == "direct" or not writes_here:
        return None
    if variant == "residual":
        return "residual"
    return "residual_pair" if pair_before(site.location, point, {residual_point(p) for p in partners}) else None


def pair_before(site: Location, after: Location, partners: Collection[Location]) -> Location | None:
    """The nearest stream before `site`'s sublayer (as the trace names it) where a partner reads,
    or None; `partners` are residual points."""
    return next((b for b in before_points(site, after) if residual_point(b) in partners), None)


def _partners(params: ScoreParams, load) -> dict[Location, LoadedSae]:
    """The loaded partner SAEs by the residual point they read: the SAE's own family first,
    then the others in the order the eval lists them."""
    family = params.sae.name.split("[")[0]
    ordered = sorted(params.partners, key=lambda p: p.name.split("[")[0] != family)
    out: dict[Location, LoadedSae] = {}
    for p in ordered:
        other = load(p)
        if other.location is not None and other.location.component in ("resid_pre", "resid_mid", "resid_post"):
            out.setdefault(residual_point(other.location), other)
    return out


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: ScoreParams = node.params
    sample_id, locate_id, trace_id, gt_id = node.inputs
    ps = prompt_set(ctx, inputs, sample_id)
    trace, gt = inputs[trace_id], inputs[gt_id]
    loaded = common.loaded_model(ctx, params.model)
    from runtime.saes.loading import check_fits, load_sae

    def load(spec_sae):
        loaded_sae = ctx.resource("sae", spec_sae.name, lambda: load_sae(spec_sae, loaded.arch))
        check_fits(loaded_sae, loaded.arch, params.model.name)
        return loaded_sae

    sae = load(params.sae)
    # The spec's name keys the results; a zoo SAE's own name is kept beside it as `zoo_name`.
    source = {("zoo_name" if k == "name" else k): v for k, v in sae.identity.items()}
    identity = {**source, "name": params.label, "architecture": sae.architecture, "d_in": sae.d_in, "d_sae": sae.d_sae,
                "location": str(sae.location) if sae.location else None, "reconstruct": params.reconstruct}
    if sae.location is None:
        return _nothing(identity, f"SAE {params.sae.name} reads every head's z of a layer at once; scoring such SAEs is not supported yet")
    partners = _partners(params, load) if params.reconstruct == "residual_pair" else {}
    how = {s: served(sae.location, params.reconstruct, common.parse_site(s), tuple(partners)) for s in gt.meta["sites"]}
    sites = [s for s, h in how.items() if h is not None]
    if not sites:
        return _nothing(identity, _serves_none(params, sae.location, gt.meta["sites"], partners))

    dictionaries = {s: d for s, d in dictionaries_from(gt).items() if s in sites}
    data = test_data(ps, trace, sites, params.attributes)
    sae_point = residual_point(sae.location)
    rows = torch.tensor(ps.indices("test"), dtype=torch.long)
    before = {s: pair_before(common.parse_site(s).location, sae_point, partners) for s in sites if how[s] == "residual_pair"}
    pairs = {s: (b, partners[residual_point(b)]) for s, b in before.items()}

    def stream(group: str, location: Location, position: str) -> torch.Tensor:
        return trace.tensors[key(group, CrossSection(location, position))][rows]

    def latents(group: str, site: str) -> tuple[torch.Tensor, torch.Tensor]:
        c = trace.tensors[key(group, site)][rows]
        where = common.parse_site(site)
        # Each SAE reads its input as it was trained to (TransformerLens preprocessing,
        # runtime/saes/preprocessing.py): thin wrappers around the reconstruct.* calls.
        with torch.no_grad():
            if how[site] == "direct":
                return preprocessing.direct(sae.sae, sae.preprocessing, c)
            r_after = stream(group, sae_point, where.position)
            if how[site] == "residual":
                return preprocessing.residual(sae.sae, sae.preprocessing, r_after, c)
            before, partner = pairs[site]
            return preprocessing.residual_pair(partner.sae, partner.preprocessing, sae.sae, sae.preprocessing, stream(group, before, where.position), r_after, c)

    sae_sites = {}
    for s in sites:
        a_hat, f = latents("clean", s)
        twin_f = {a: latents(f"twin:{a}", s)[1] for a in params.attributes}
        w_dec = reconstruct.pair_decoder(pairs[s][1].sae, sae.sae) if s in pairs else sae.sae.W_dec
        sae_sites[s] = SaeSite(a_hat=a_hat, f=f, twin_f=twin_f, w_dec=w_dec.detach())
    # SAEs that serve the same cross-sections share one supervised reference within a run (the
    # ground-truth pass's own, when they serve all its cross-sections).
    reference = supervised(ctx, gt_id, sites, lambda: validate(ctx, loaded, data, dictionaries))
    scores = score_sae(sae_sites, supervised=reference, acts=data.acts, twin_acts=data.twin_acts, values=data.values,
                       clean=data.clean, patched=patcher(ctx, loaded, data.prompts), dictionaries=dictionaries)
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


def _serves_none(params: ScoreParams, location: Location, sites: Sequence[str], partners: Mapping[Location, LoadedSae]) -> str:
    why = f"it serves none of the located cross-sections ({', '.join(sites)}) with {params.reconstruct} reconstruction from {location}"
    if params.reconstruct != "residual_pair":
        return why
    have = ", ".join(str(p) for p in partners) or "none"
    return (f"{why}: residual_pair needs a second SAE on the stream before each sublayer, among the eval's other "
            f"residual_pair SAEs (they read at {have})")


def _nothing(identity: dict, reason: str) -> Artifact:
    return Artifact({"sae": identity, "sites": [], "scores": None, "reason": reason}, {})

