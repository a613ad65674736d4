"""Lowering a checked spec into a Plan: exact JSON round trip, and keys that change when, and only
when, something that changes results changes."""

import dataclasses

from sagec import plan as plan_mod
from sagec.lower import lower
from sagec.spec import (
    Answer,
    Baseline,
    AnswerSide,
    Compare,
    Eval,
    GroundTruth,
    Locate,
    Model,
    Origin,
    Position,
    Report,
    Sae,
    SaeUse,
    Spec,
    Split,
    Task,
    Template,
    Var,
    Variable,
)

VERSIONS = (("sagec", "0.1.0"), ("torch", "2.13.0"))


def origin(line: int = 1) -> Origin:
    return Origin("spec.sage", line, 1)


def make_spec(saes=("res[0]", "res[1]"), line_shift: int = 0, samples: int = 64, batch_size=None, baselines=()) -> Spec:
    o = origin(1 + line_shift)
    task = Task(
        name="ioi",
        variables=(Variable("io", ("Mary", "John", "Anna"), o), Variable("s", ("Mary", "John", "Anna"), o), Variable("place", ("store", "park"), o)),
        constraints=(Compare("!=", Var("s"), Var("io")),),
        templates=(Template("When {{io}} and {{s}} went to the {{place}}, {{s}} gave a drink to", None, o),),
        answer=Answer(AnswerSide(" {{io}}"), AnswerSide(" {{s}}"), o),
        counterfactual=("io", "s"),
        positions=(Position("end", "last", None, 1, "last", 0, o),),
        attributes=("io", "s"),
        split=Split(("place",), 0.5, 0.5, o),
        samples=samples,
        seed=0,
        origin=o,
    )
    model = Model("tiny", "zoo", "tiny-ioi", "float32", "cpu", None, batch_size, o)
    all_saes = tuple(Sae(f"res[{i}]", "zoo", f"tiny-ioi/topk-k8/resid_post.{i}", None, None, None, o) for i in range(3))
    ev = Eval(
        name="gt",
        model="tiny",
        task="ioi",
        locate=Locate("attribution", ("head", "mlp_out"), None, ("end",), 4, None, True, o),
        ground_truth=GroundTruth("mean", ("sufficiency", "necessity", "control"), o),
        saes=tuple(SaeUse(s, "residual") for s in saes),
        score=("sufficiency", "necessity"),
        report=Report("/tmp/runs/gt", ("json",)),
        origin=o,
        baselines=tuple(baselines),
    )
    return Spec("spec.sage", (model,), (task,), all_saes, (ev,))


def keys(p) -> dict[str, str]:
    return {n.id: n.key for n in p.nodes}


def test_plan_round_trips_through_json_exactly():
    p = lower(make_spec(), VERSIONS)
    assert plan_mod.from_json(plan_mod.to_json(p)) == p


def test_nodes_come_in_dependency_order_with_one_score_per_sae():
    p = lower(make_spec(), VERSIONS)
    seen = set()
    for node in p.nodes:
        assert set(node.inputs) <= seen, node.id
        seen.add(node.id)
    assert [n.kind for n in p.nodes] == ["sample", "locate", "trace", "ground_truth", "score", "score", "suite", "report"]
    assert {n.params.sae.name for n in p.by_kind("score")} == {"res[0]", "res[1]"}
    # The family as one system: its suite reads both members' score nodes.
    suite = p.node("suite[gt/res]")
    assert suite.inputs[4:] == ("score[gt/res[0]]", "score[gt/res[1]]") and [m.label for m in suite.params.members] == ["res[0]", "res[1]"]


def test_a_family_of_one_listed_member_is_no_suite():
    p = lower(make_spec(saes=("res[0]",)), VERSIONS)
    assert p.by_kind("suite") == ()


def test_adding_an_sae_changes_only_its_score_node_and_the_report():
    before, after = keys(lower(make_spec(), VERSIONS)), keys(lower(make_spec(saes=("res[0]", "res[1]", "res[2]")), VERSIONS))
    changed = {i for i in after if before.get(i) != after[i]}
    assert changed == {"score[gt/res[2]]", "suite[gt/res]", "report[gt]"}  # the family's suite gains a member


BASES = (Baseline("pca"), Baseline("neurons"), Baseline("random"), Baseline("pca", 8))


def test_each_baseline_is_scored_on_every_cross_section_and_beside_each_sae():
    p = lower(make_spec(baselines=BASES), VERSIONS)
    ids = {n.id for n in p.by_kind("baseline")}
    assert ids == {f"baseline[gt/{b.name}{beside}]" for b in BASES for beside in ("", " beside res[0]", " beside res[1]")}
    assert p.node("baseline[gt/pca 8]").inputs == ("sample[ioi@tiny]", "locate[gt]", "trace[tiny/ioi]", "ground_truth[gt]")
    assert p.node("baseline[gt/pca beside res[1]]").inputs[-1] == "score[gt/res[1]]"  # where it reads the SAE's sites
    assert ids <= set(p.node("report[gt]").inputs)


def test_adding_a_baseline_changes_no_score_node():
    before = keys(lower(make_spec(), VERSIONS))
    after = keys(lower(make_spec(baselines=BASES[:1]), VERSIONS))
    assert {i for i in before if after[i] != before[i]} == {"report[gt]"}
    more = keys(lower(make_spec(baselines=BASES), VERSIONS))
    assert {i for i in after if more[i] != after[i]} == {"report[gt]"}  # the pca nodes keep theirs too


def test_adding_an_sae_beside_baselines_adds_its_score_and_its_baseline_nodes():
    before = keys(lower(make_spec(baselines=BASES[:2]), VERSIONS))
    after = keys(lower(make_spec(saes=("res[0]", "res[1]", "res[2]"), baselines=BASES[:2]), VERSIONS))
    changed = {i for i in after if before.get(i) != after[i]}
    assert changed == {"score[gt/res[2]]", "baseline[gt/pca beside res[2]]", "baseline[gt/neurons beside res[2]]", "suite[gt/res]", "report[gt]"}


def test_moving_lines_or_changing_the_batch_size_changes_no_key():
    base = keys(lower(make_spec(), VERSIONS))
    assert keys(lower(make_spec(line_shift=7), VERSIONS)) == base
    assert keys(lower(make_spec(batch_size=8), VERSIONS)) == base


def test_a_change_that_matters_invalidates_everything_downstream():
    base = keys(lower(make_spec(), VERSIONS))
    fewer = keys(lower(make_spec(samples=32), VERSIONS))
    assert all(fewer[i] != base[i] for i in base)  # the prompt set feeds every node
    newer_torch = keys(lower(make_spec(), (("sagec", "0.1.0"), ("torch", "2.14.0"))))
    assert all(newer_torch[i] != base[i] for i in base)


def test_a_new_pass_version_invalidates_that_pass_and_its_consumers(monkeypatch):
    base = keys(lower(make_spec(), VERSIONS))
    monkeypatch.setitem(plan_mod.PASS_VERSIONS, "ground_truth", 99)
    bumped = keys(lower(make_spec(), VERSIONS))
    changed = {i for i in base if bumped[i] != base[i]}
    assert changed == {"ground_truth[gt]", "score[gt/res[0]]", "score[gt/res[1]]", "suite[gt/res]", "report[gt]"}


def test_two_evals_on_one_model_and_task_share_sample_and_trace():
    spec = make_spec()
    other = dataclasses.replace(spec.evals[0], name="gt2", locate=dataclasses.replace(spec.evals[0].locate, top=2))
    p = lower(dataclasses.replace(spec, evals=(spec.evals[0], other)), VERSIONS)
    assert len(p.by_kind("sample")) == 1 and len(p.by_kind("trace")) == 1
    assert set(p.node("trace[tiny/ioi]").inputs) == {"sample[ioi@tiny]", "locate[gt]", "locate[gt2]"}
    assert len(p.by_kind("locate")) == 2


def test_the_plan_says_how_many_cross_sections_locate_selects_and_why():
    from sagec.estimate import estimate
    from sagec.plan_text import render_text

    def text(**change) -> str:
        spec = make_spec()
        ev = dataclasses.replace(spec.evals[0], locate=dataclasses.replace(spec.evals[0].locate, **change))
        p = lower(dataclasses.replace(spec, evals=(ev,)), versions=VERSIONS)
        return render_text(p, estimate(p), lambda key: False)

    # the task has a counterfactual and two attributes: three twin families
    assert "4 cross-sections selected: top 4 in total by attribution, interleaving 3 twin families" in text()
    assert "up to 12 cross-sections selected: top 4 per family by attribution, the union over 3 twin families" in text(per_family=True)
    both = text(components=("head", "resid_post"))
    assert "4 cross-sections selected" in both and "4 residual-stream cross-sections selected (ranked apart" in both
    assert "integrated gradients (8 steps) over head, mlp_out" in text(method="integrated", steps=8)


def test_a_node_reading_many_inputs_counts_them_by_kind():
    from sagec.plan_text import _reads

    inputs = ["sample[t@m]", "locate[e]", "trace[m/t]", "ground_truth[e]", "suite[e/res]",
              *(f"score[e/res[{i}]]" for i in range(30)), *(f"baseline[e/pca beside res[{i}]]" for i in range(30))]
    assert _reads(inputs) == "sample[t@m], locate[e], trace[m/t], ground_truth[e], suite[e/res], 30 score, 30 baseline nodes"
    assert _reads(inputs[:3]) == "sample[t@m], locate[e], trace[m/t]"
