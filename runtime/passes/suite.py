"""The suite pass (METHOD.md section 6): a family of SAEs scored as one dictionary system.

Each located cross-section is reconstructed by the member serving it, as its score node found
(`sites` and `variant_per_site` of each member's artifact; the member reading at the site's own
hook, `direct`, first, then the family's order), and all are patched at once. The numbers are an
SAE's (runtime/sage/suite.score_suite: control with k latents in total across the members),
beside the supervised dictionaries validated on exactly the served cross-sections, plus coverage.
A suite reads its members' latents, not their results: the SAEs are loaded (once per run, shared
with the score nodes) only for members that serve a cross-section here; the others are named
with their score node's reason and never loaded.
"""

from __future__ import annotations

from runtime.passes import common, reconstruction
from runtime.passes.ground_truth import dictionaries_from, patcher, supervised, test_data, validate
from runtime.passes.sample import prompt_set
from runtime.sage.suite import coverage, score_suite
from runtime.saes.serving import residual_point
from runtime.store.cache import Artifact
from sagec.locations import Location
from sagec.plan import Node, SuiteParams


def assign(located: list[str], members: list[tuple[str, dict]]) -> dict[str, str]:
    """Site -> the label of the member that reconstructs it: among the members whose score node
    serves it, the one reading at its own hook (direct), else the first in the family's order."""
    out = {}
    for site in located:
        offers = [(label, meta["variant_per_site"][site]) for label, meta in members if site in (meta.get("sites") or [])]
        if offers:
            direct = [label for label, how in offers if how == "direct"]
            out[site] = direct[0] if direct else offers[0][0]
    return out


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: SuiteParams = node.params
    sample_id, locate_id, trace_id, gt_id, *member_ids = node.inputs
    gt, locate = inputs[gt_id], inputs[locate_id]
    located = list(gt.meta["sites"])
    metas = [(m.label, inputs[i].meta) for m, i in zip(params.members, member_ids, strict=True)]
    chosen = assign(located, metas)
    sites = [s for s in located if s in chosen]
    effects = {c["site"]: c.get("patching") for c in locate.meta["candidates"]}
    cover = coverage(located, sites, effects)
    members = {}
    for label, meta in metas:
        mine = [s for s in sites if chosen[s] == label]
        entry = {"sites": mine, "serves": list(meta.get("sites") or []), "used": bool(mine)}
        if not mine:
            entry["reason"] = meta.get("reason") or f"every cross-section it serves is reconstructed by another member reading there directly"
        members[label] = entry
    meta = {"suite": params.family, "reconstruct": params.reconstruct, "members": members, "sites": {s: chosen[s] for s in sites},
            "coverage": cover.to_json()}
    if not sites:
        return Artifact({**meta, "scores": None,
                         "reason": f"no member of {params.family} serves any of the located cross-sections ({', '.join(located) or 'none'}) with {params.reconstruct} reconstruction"}, {})

    ps = prompt_set(ctx, inputs, sample_id)
    trace = inputs[trace_id]
    loaded = common.loaded_model(ctx, params.model)
    from runtime.saes.loading import check_fits, load_sae

    def load(spec_sae):
        loaded_sae = ctx.resource("sae", spec_sae.name, lambda: load_sae(spec_sae, loaded.arch))
        check_fits(loaded_sae, loaded.arch, params.model.name)
        return loaded_sae

    by_label = {m.label: m.sae for m in params.members}
    partners = {p.name: p for p in params.partners}
    rows = ps.indices("test")
    meta_of = dict(metas)

    suite_sites, variants = {}, {}
    streams: reconstruction.Streams = {}  # a member serving several sites at one point encodes the stream there once
    for s in sites:
        label = chosen[s]
        sae = load(by_label[label])
        how = meta_of[label]["variant_per_site"][s]
        pair = None
        if how == "residual_pair":
            info = meta_of[label]["pair_per_site"][s]
            pair = (_before(common.parse_site(s).location, Location.parse(info["location"])), load(partners[info["sae"]]))
        # As the score pass reads it, so a suite's sites are its members' own reconstructions.
        suite_sites[s] = reconstruction.sae_site(trace, rows, params.attributes, sae, how, s, pair, streams)
        variants[s] = how
    every = dictionaries_from(gt)
    dictionaries = {s: every[s] for s in sites}
    data = test_data(ps, trace, sites, params.attributes)
    reference = supervised(ctx, gt_id, sites, lambda: validate(ctx, loaded, data, dictionaries))
    scores = score_suite(suite_sites, supervised=reference, acts=data.acts, twin_acts=data.twin_acts, values=data.values,
                         clean=data.clean, patched=patcher(ctx, loaded, data), dictionaries=dictionaries)
    meta |= {"variant_per_site": variants, "scores": scores.to_json(), "supervised_on_same_sites": reference.to_json()}
    return Artifact(meta, {})


def _before(site: Location, partner_location: Location) -> Location:
    """The stream before `site`'s sublayer that the trace names and the partner reads: the
    partner's residual point, named as the trace stores it (resid_pre or resid_mid of the
    site's layer)."""
    from runtime.saes.serving import before_points

    point = residual_point(partner_location)
    return next((b for b in before_points(site, Location("resid_post", site.layer)) if residual_point(b) == point), partner_location)
