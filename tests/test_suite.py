"""Suites (METHOD.md section 6): a family scored as one dictionary system, by hand and on
planted truth; coverage by hand; the joint greedy edit against the one-site greedy."""

import json

import pytest
import torch

from runtime.sage import control
from runtime.sage.dictionaries import Dictionary
from runtime.sage.evaluate import Outcome, SaeSite, score_sae, score_saes, validate_supervised
from runtime.sage.suite import Block, coverage, greedy_across, score_suite
from tests.test_sage_evaluate import ALL, SITES, VALUES, Recorder, planted_world, sae_sites, topk_sae

# Two sites s and t, each the one-dimensional hand world of tests/test_sage_evaluate.py: codes
# u_0 = 4, u_a = -2, u_b = +2 at both; the model reads their sum, m(p) = sign(p) (a_s + a_t - 8),
# and predicts token 1 when a_s + a_t > 8. Member A serves s, member B serves t; each has latent
# 0 writing u_a and latent 1 writing u_b.
SIGN = torch.tensor([-1.0, 1.0])
CODES = Dictionary(torch.tensor([4.0]), {"x": {"a": torch.tensor([-2.0]), "b": torch.tensor([2.0])}})
W_DEC = torch.tensor([[-2.0], [2.0]])


def two_site_run(acts):
    total = acts["s"][:, 0] + acts["t"][:, 0]
    return Outcome(SIGN * (total - 8), (total > 8).long())


def two_site_world():
    acts = {"s": torch.tensor([[1.0], [8.0]]), "t": torch.tensor([[1.0], [8.0]])}
    return dict(
        acts=acts,
        twin_acts={"x": {"s": torch.tensor([[7.0], [3.0]]), "t": torch.tensor([[7.0], [3.0]])}},
        values={"x": ["a", "b"]},
        twin_values={"x": ["b", "a"]},
        clean=two_site_run(acts),
        patched=Recorder(acts, two_site_run),
        dictionaries={"s": CODES, "t": CODES},
    )


def member():
    return SaeSite(a_hat=torch.tensor([[2.0], [6.0]]), f=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), twin_f={"x": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}, w_dec=W_DEC)


def test_a_suite_of_two_members_by_hand():
    world = two_site_world()
    supervised = validate_supervised(**world)
    world.pop("twin_values")
    world["patched"].calls = 0
    suite = score_suite({"s": member(), "t": member()}, supervised=supervised, ks=(1, 2, 3, 4), **world)
    assert world["patched"].calls == 1
    # clean m = [6, 8] (mean 7); reconstructions [2, 6] at both sites give [4, 4]; mean ablation 0;
    # the features removed, u_0 + a - a_hat = [3, 6] at both, give [2, 4] (mean 3).
    assert suite.spliced_metric.value == pytest.approx(4.0)
    assert suite.sufficiency.value == pytest.approx(4 / 7)
    assert suite.logit_diff_recovered.value == pytest.approx(1 - 3 / 7)
    assert suite.necessity.value == pytest.approx(1 - 3 / 7)
    # Control, k latents in total. Targets (twins patched): p0 7 + 7 = 14 -> token 1, p1 3 + 3 = 6
    # -> token 0. Every latent offers a step of 2 toward each site's true change (+6 for p0, -5
    # for p1). Step 1 ties: site s's latent 0 (s = 3 for p0). Step 2: site t's step takes its
    # squared distance 36 -> 16, site s's 16 -> 4: site t. Step 3 ties again (16 -> 4 at both):
    # site s. So p0's sums are 4, 6, 8, 10 for k = 1..4, and only k = 4 passes 8 (token 1); p1's
    # are 14, 12, 10, 8: only k = 4 falls to token 0.
    c = suite.control["x"]
    assert [c.edit_success[k].value for k in (1, 2, 3, 4)] == [0.0, 0.0, 0.0, 1.0]
    assert c.supervised_edit_success.value == pytest.approx(1.0)  # 5 + 5 = 10 and 4 + 4 = 8
    assert c.min_k.value == 4
    # Edit magnitude, the mean over sites of the weight removed there: at k = 1 p0 loses all of
    # site s (weight 1) and nothing of t, 0.5; p1's chosen latent 0 is off at p1: 0. At k = 2 p0
    # has lost both sites' only latents (1), p1 still nothing; at k = 4 both have lost everything.
    assert c.edit_magnitude[1].value == pytest.approx(0.25)
    assert c.edit_magnitude[2].value == pytest.approx(0.5)
    assert c.edit_magnitude[4].value == pytest.approx(1.0)
    # The same reconstructions scored as one SAE may spend k latents at EACH site: k = 2 there is
    # four in all, and already reaches the supervised edit.
    per_site = score_sae({"s": member(), "t": member()}, supervised=supervised, ks=(1, 2), **world)
    assert per_site.control["x"].edit_success[2].value == 1.0 and per_site.control["x"].min_k.value == 2
    assert per_site.sufficiency.value == suite.sufficiency.value and per_site.necessity.value == suite.necessity.value
    assert set(suite.per_site) == {"s", "t"} and suite.per_site["s"].l0.value == 1.0
    json.dumps(suite.to_json(), allow_nan=False)


def test_coverage_by_hand():
    c = coverage(["s", "t", "u"], ["s", "t"], {"s": -2.0, "t": 1.0, "u": 1.0})
    assert (c.served, c.located) == (2, 3) and c.sites_fraction == pytest.approx(2 / 3)
    assert c.effect_served == 3.0 and c.effect_located == 4.0 and c.effect_fraction == pytest.approx(0.75)
    out = c.to_json()
    assert out["sites"]["fraction"] == pytest.approx(2 / 3) and out["patching_effect"]["fraction"] == pytest.approx(0.75)
    unverified = coverage(["s", "t"], ["s"], {"s": 1.0, "t": None}).to_json()
    assert unverified["sites"]["fraction"] == 0.5 and unverified["patching_effect"]["fraction"] is None
    assert "not verified for t" in unverified["patching_effect"]["reason"]
    assert coverage([], [], {}).to_json()["sites"]["reason"] == "nothing was located"


@pytest.mark.parametrize("seed", [0, 1])
def test_the_joint_greedy_on_one_site_is_the_one_site_greedy(seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.relu(torch.randn(20, 30, generator=g) - 0.5)
    ft = torch.relu(torch.randn(20, 30, generator=g) - 0.5)
    w = torch.randn(30, 8, generator=g)
    delta = torch.randn(20, 8, generator=g)
    ks = (1, 2, 4, 8)
    single, chosen = control.greedy_edits(f, ft, w, delta, ks)
    joint, joint_chosen = greedy_across({"only": Block(f, ft, w, delta)}, ks)
    for k in ks:
        assert torch.allclose(joint[k]["only"], single[k], atol=1e-5)
    assert torch.equal(joint_chosen["only"], chosen)


def test_the_joint_greedy_spends_k_in_total_where_it_helps_most():
    # Site s needs one step of 1, site t one step of 10: with k = 1 the edit goes to t.
    s = Block(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), torch.ones(1, 1))
    t = Block(torch.zeros(1, 1), torch.ones(1, 1), torch.full((1, 1), 10.0), torch.full((1, 1), 10.0))
    edits, chosen = greedy_across({"s": s, "t": t}, (1, 2))
    assert edits[1]["s"].item() == 0.0 and edits[1]["t"].item() == 10.0
    assert edits[2]["s"].item() == 1.0 and edits[2]["t"].item() == 10.0
    assert chosen["s"].tolist() == [[-1, 0]] and chosen["t"].tolist() == [[0, -1]]


def test_a_suite_of_two_planted_members_is_the_ground_truth():
    # Member A is the planted TopK SAE at site A alone, member B the one at site B: together the
    # reconstructions of the planted SAE that serves both, so sufficiency and necessity are the
    # same numbers, and a suite edit with four latents in all matches that SAE's two per site.
    model, world = planted_world()
    supervised = validate_supervised(**world)
    world = {k: v for k, v in world.items() if k != "twin_values"}
    sites = sae_sites({s: topk_sae(model, s, ALL, seed=i) for i, s in enumerate(SITES)}, world)
    suite = score_suite(sites, supervised=supervised, ks=(1, 2, 4), **world)
    whole = score_saes({"one": sites}, supervised=supervised, ks=(1, 2), **world)["one"]
    for name in ("sufficiency", "logit_diff_recovered", "necessity"):
        assert getattr(suite, name).value == pytest.approx(getattr(whole, name).value, abs=1e-6)
        assert getattr(suite, name).value == pytest.approx(1.0, abs=0.03)
    for a in VALUES:
        assert suite.control[a].edit_success[4].value == pytest.approx(whole.control[a].edit_success[2].value, abs=0.02)
        assert suite.control[a].edit_success[4].value > 0.95
        assert suite.control[a].edit_success[1].value <= whole.control[a].edit_success[1].value + 1e-9
        assert suite.control[a].min_k.value <= 4
    for s in SITES:
        assert suite.per_site[s].interpretability.value_centric.value == pytest.approx(1.0)
