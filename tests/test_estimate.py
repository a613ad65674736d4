"""The plan's bound on what runs after locate, before the locate artifact exists: `select top K`
selects at most K cross-sections, so a family with one member per layer runs at most K members
(sagec/estimate.py `after_locate_bound`), and baselines and text nodes beside them likewise."""

import dataclasses

import pytest

from sagec.estimate import after_locate_bound, candidates, estimate
from sagec.lower import lower
from sagec.plan_text import render_text
from sagec.spec import Baseline, Sae, SaeUse
from tests.test_plan import VERSIONS, make_spec, origin

LAYERS = 30


def whole_model(top=6, per_family=False, fraction=None, layers_of=range(LAYERS), text=False):
    """Family res[i] reading resid_post layers_of[i], over a 30-layer model, pca beside each."""
    spec = make_spec(saes=(), baselines=(Baseline("pca"),))
    saes = tuple(Sae(f"res[{i}]", "zoo", f"m/resid_post.{layer}", None, None, None, origin()) for i, layer in enumerate(layers_of))
    ev = spec.evals[0]
    loc = dataclasses.replace(ev.locate, top=None if fraction else top, fraction=fraction, per_family=per_family)
    ev = dataclasses.replace(ev, locate=loc, saes=tuple(SaeUse(s.name, "residual") for s in saes),
                             score=ev.score + (("ce_loss_score",) if text else ()))
    # a model of known size (sagec.estimate.KNOWN_SIZES), so that seconds are estimated
    spec = dataclasses.replace(spec, models=(dataclasses.replace(spec.models[0], ref="smollm2-135m"),), saes=saes, evals=(ev,))
    plan = lower(spec, VERSIONS)
    locate = plan.by_kind("locate")[0]
    space = {locate.id: candidates(plan, locate, LAYERS)}
    # what runtime.saes.serving says of resid_post L under residual reconstruction: L's sublayers
    reach = {n.id: frozenset({f"head {layers_of[int(n.params.sae.name[4:-1])]}.0", f"mlp_out {layers_of[int(n.params.sae.name[4:-1])]}"})
             for n in plan.by_kind("score")}
    costs = estimate(plan)
    return plan, costs, after_locate_bound(plan, costs, reach, lambda key: False, space)


def test_a_30_layer_family_with_top_6_runs_at_most_6_members_and_their_baselines():
    plan, costs, (bound,) = whole_model(top=6, text=True)
    assert (bound.family, bound.members, bound.members_at_most) == ("res", 30, 6)
    assert dict((k, (d, m)) for k, d, m, _ in bound.nodes) == {"score": (30, 6), "baseline": (30, 6), "text": (30, 6)}
    assert dict((k, t) for k, _, _, t in bound.nodes)["score"] == pytest.approx(6 * costs["score[gt/res[0]]"].seconds)
    one = sum(costs[i].forwards for i in ("score[gt/res[0]]", "baseline[gt/pca beside res[0]]", "text[gt/res[0]]"))
    assert bound.forwards == 6 * one and one > 0
    assert bound.seconds == pytest.approx(6 * sum(costs[i].seconds for i in ("score[gt/res[0]]", "baseline[gt/pca beside res[0]]", "text[gt/res[0]]")))
    text = render_text(plan, costs, lambda key: False, (bound,))
    assert "score: 30 declared, at most 6 run after locate, at most ~" in text
    assert "baseline: 30 declared beside SAEs, at most 6 run after locate" in text
    # the total counts 6 members, not 30: every node outside the family plus the bound
    outside = sum(c.forwards for i, c in costs.items() if i not in bound.covers)
    assert f"to run: at most {outside + bound.forwards} forward" in text
    assert outside + bound.forwards < sum(c.forwards for c in costs.values())


def test_hand_computed_bounds():
    # Two members at layer 3, one at 5, one at 7: top 2 selects at most 2 classes, the worst two
    # are layer 3's (2 members) and one other (1): at most 3 run.
    assert whole_model(top=2, layers_of=(3, 3, 5, 7))[2][0].members_at_most == 3
    # top 1 per family over the task's 3 twin families: K = 3, all four may run.
    assert whole_model(top=1, per_family=True, layers_of=(3, 3, 5, 7))[2][0].members_at_most == 4
    # top 1 in total: only layer 3's two.
    assert whole_model(top=1, layers_of=(3, 3, 5, 7))[2][0].members_at_most == 2
    # a fraction has no count before locate: every member that can serve a candidate
    assert whole_model(fraction=0.1, layers_of=(3, 3, 5, 7))[2][0].members_at_most == 4
    # top 6 over a 30-layer family is min(members, K): with 4 members, 4
    assert whole_model(top=6, layers_of=(3, 4, 5, 7))[2][0].members_at_most == 4


def test_members_outside_the_search_space_and_unknown_ones():
    plan, costs, _ = whole_model(top=2, layers_of=(3, 4, 5))
    locate = plan.by_kind("locate")[0]
    ids = [n.id for n in plan.by_kind("score")]
    # the search space is layers 3 and 4 only: res[2] (layer 5) can serve nothing
    loc = dataclasses.replace(locate.params.locate, layers=(3, 4))
    space = {locate.id: candidates(plan, dataclasses.replace(locate, params=dataclasses.replace(locate.params, locate=loc)))}
    reach = {ids[0]: frozenset({"mlp_out 3"}), ids[1]: frozenset({"mlp_out 4"}), ids[2]: frozenset()}
    assert after_locate_bound(plan, costs, reach, lambda key: False, space)[0].members_at_most == 2
    # where a member reads is unknown: it may serve any selected class, so it is always counted
    reach[ids[2]] = None
    assert after_locate_bound(plan, costs, reach, lambda key: False, space)[0].members_at_most == 3
    # the layer count unknown (no candidates): every member
    assert after_locate_bound(plan, costs, reach, lambda key: False, {locate.id: None})[0].members_at_most == 3


def test_prompt_shape_from_the_templates_by_hand():
    from sagec.estimate import prompt_shape
    from sagec.spec import Position, Template

    o = origin()
    task = dataclasses.replace(
        make_spec().tasks[0],
        templates=(Template("When {{io}} and {{s}} went to the {{place}}, {{ s }} gave a {{object}} to", None, o),),
        positions=(Position("end", "last", None, 1, "last", 0, o), Position("io", "var", "io", 1, "first", 0, o),
                   Position("s2", "var", "s", 2, "first", 0, o), Position("s1p", "var", "s", 1, "first", 1, o)))
    # When io and s went to the place , s gave a object to: 14 tokens; s2 is the 10th
    length, from_end = prompt_shape(task)
    assert length == 14
    assert from_end == {"end": 1, "io": 13, "s2": 5, "s1p": 10}


def test_patched_nodes_cost_what_the_suffix_path_recomputes_and_shared_baselines_nothing():
    """Once located, a node patching the final token at the last layer costs one token through
    one layer of 30 (plus the unembedding), one patching layer 0 every token: the runtime's
    suffix path. Baselines beside two SAEs serving the same sites are scored once."""
    from sagec.estimate import KNOWN_SIZES, TOKENS_GUESS

    plan, _, _ = whole_model(top=2, layers_of=(29, 29, 0))
    locate = plan.by_kind("locate")[0].id
    scores = [n.id for n in plan.by_kind("score")]
    served = {scores[0]: ["mlp_out 29@end"], scores[1]: ["mlp_out 29@end"], scores[2]: ["mlp_out 0@end"]}
    costs = estimate(plan, served, {locate: ["mlp_out 29@end", "mlp_out 0@end"]})
    layers, p, u = KNOWN_SIZES["smollm2-135m"]
    late, early = costs[scores[0]], costs[scores[2]]
    assert late.forwards == early.forwards
    assert late.seconds / early.seconds == pytest.approx((p / layers + u) / (p + u))
    beside = {n.params.beside: costs[n.id] for n in plan.by_kind("baseline") if n.params.beside}
    assert beside["res[1]"].after_locate == "shared" and beside["res[1]"].seconds == 0
    assert beside["res[0]"].after_locate == "runs" and beside["res[0]"].seconds > 0
    # before locate: the worst the search space allows (every layer at `end`: one token from layer 0)
    unresolved = estimate(plan)[scores[0]]
    assert unresolved.seconds == pytest.approx(early.seconds) and early.seconds < unresolved.forwards * 2 * (TOKENS_GUESS * p + u) / 1e11


def test_a_complete_basis_costs_no_splice_and_no_removal():
    """`pca` keeps every direction and reconstructs exactly, so its baseline node runs only the
    edits (attributes x ks conditions); `pca 8` also splices and removes: two conditions more."""
    from sagec.estimate import SPARSE_CONTROL_KS

    plan, _, _ = whole_model(top=2, layers_of=(3,))
    node = next(n for n in plan.by_kind("baseline") if n.params.beside is None)
    partial = dataclasses.replace(node, params=dataclasses.replace(node.params, baseline=Baseline("pca", 8)))
    task = plan.node(node.inputs[0]).params.task
    n_test = estimate(plan)[node.id].forwards // (len(task.attributes) * SPARSE_CONTROL_KS)
    plan2 = dataclasses.replace(plan, nodes=tuple(partial if n.id == node.id else n for n in plan.nodes))
    assert estimate(plan2)[node.id].forwards - estimate(plan)[node.id].forwards == 2 * n_test


def test_seconds_follow_the_model_dtype_s_measured_cpu_throughput():
    """The same plan in bfloat16 is estimated at float32's time over bfloat16's measured speed-up,
    and float16 (no fast CPU kernels) far slower; prompt-passes do not depend on the dtype."""
    from sagec.estimate import CPU_FLOPS

    by_dtype = {}
    base = make_spec(saes=(), baselines=(Baseline("pca"),))
    for dtype in ("float32", "bfloat16", "float16"):
        model = dataclasses.replace(base.models[0], ref="smollm2-135m", dtype=dtype)
        by_dtype[dtype] = estimate(lower(dataclasses.replace(base, models=(model,)), VERSIONS))
    timed = [i for i, c in by_dtype["float32"].items() if c.seconds]
    assert len(timed) >= 3  # locate, trace, ground truth at least
    for node_id, cost in by_dtype["float32"].items():
        if cost.seconds:
            for dtype in ("bfloat16", "float16"):
                other = by_dtype[dtype][node_id]
                assert other.forwards == cost.forwards
                assert other.seconds == pytest.approx(cost.seconds * CPU_FLOPS["float32"] / CPU_FLOPS[dtype])
    assert CPU_FLOPS["float16"] < CPU_FLOPS["float32"] < CPU_FLOPS["bfloat16"]
