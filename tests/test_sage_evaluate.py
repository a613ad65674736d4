"""The ground-truth and score passes against hand-computed values and planted truth."""

import json
import math

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

from runtime.sage import reconstruct
from runtime.sage.dictionaries import Dictionary, DictionaryFitter
from runtime.sage.evaluate import (
    Outcome,
    SaeSite,
    alignment_scores,
    explained_variance,
    interpretability_scores,
    min_k,
    score_sae,
    score_saes,
    validate_supervised,
)
from runtime.sage.metrics import METRICS
from runtime.sage.statistics import fraction_estimate


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These tensors are tiny: on a loaded machine, intra-op threads cost far more in
    # synchronisation than they save (100x on two busy cores).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Recorder:
    """A `patched` callback over `run(acts) -> Outcome` that counts its calls."""

    def __init__(self, clean_acts, run):
        self.clean_acts, self.run, self.calls = clean_acts, run, 0

    def __call__(self, conditions):
        self.calls += 1
        return [self.run({**self.clean_acts, **c}) for c in conditions]


def strict_json(result):
    text = json.dumps(result.to_json(), allow_nan=False)  # NaN must never leak into JSON
    return json.loads(text)


# ---------------------------------------------------------------------------------------------
# A world small enough to check by hand: one site, one dimension, two prompts, x in {a, b}.
# Dictionary u_0 = 4, u_a = -2, u_b = +2. The "model" reads the site: m(p) = sign(p) (a - 4),
# the sign set by the prompt's answer (as IOI's answer depends on the prompt), and predicts
# token 1 when a > 4.

SIGN = torch.tensor([-1.0, 1.0])
HAND_DICT = Dictionary(torch.tensor([4.0]), {"x": {"a": torch.tensor([-2.0]), "b": torch.tensor([2.0])}})


def hand_run(acts):
    a = acts["s"][:, 0]
    return Outcome(SIGN * (a - 4), (a > 4).long())


def hand_world(acts=((1.0,), (8.0,)), twin=((7.0,), (3.0,)), twin_values=("b", "a")):
    acts = {"s": torch.tensor(acts)}
    return dict(
        acts=acts,
        twin_acts={"x": {"s": torch.tensor(twin)}},
        values={"x": ["a", "b"]},
        twin_values={"x": list(twin_values)},
        clean=hand_run(acts),
        patched=Recorder(acts, hand_run),
        dictionaries={"s": HAND_DICT},
    )


def test_supervised_validation_by_hand():
    world = hand_world()
    v = validate_supervised(**world)
    assert world["patched"].calls == 1
    # clean m = [3, 4]; a_hat = [2, 6] gives m = [2, 2]; u_0 gives [0, 0]; the features removed,
    # u_0 + a - a_hat = [3, 6], give [1, 2].
    assert v.clean_metric.value == pytest.approx(3.5)
    assert v.spliced_metric.value == pytest.approx(2.0)
    assert v.ablated_metric.value == pytest.approx(0.0)
    assert v.sufficiency.value == pytest.approx(2 / 3.5)
    assert v.logit_diff_recovered.value == pytest.approx(1 - 1.5 / 3.5)
    assert v.necessity.value == pytest.approx(1 - 1.5 / 3.5)
    # Edit: 1 + 2 + 2 = 5 (token 1) and 8 - 2 - 2 = 4 (token 0); the twins patched in give 7 and
    # 3: tokens 1 and 0. Both hit; the clean tokens (0, 1) hit neither.
    c = v.control["x"]
    assert c.edit_success.value == pytest.approx(1.0) and c.edit_success.n == 2
    assert c.no_intervention_agreement.value == pytest.approx(0.0)
    assert c.edit_magnitude.value == pytest.approx(1.0)  # u_{x,v} is all of each code sum
    # Variance: a = [1, 8] about 4.5 gives 24.5; residual (1-2)^2 + (8-6)^2 = 5. Attribute x
    # alone, centred on the test prompts: 4.5 + [-2, 2] = [2.5, 6.5] leaves 1.5^2 + 1.5^2 = 4.5.
    assert v.explained_variance["s"].value == pytest.approx(1 - 5 / 24.5)
    assert v.attribute_variance_explained["s"]["x"].value == pytest.approx(1 - 4.5 / 24.5)


HAND_W_DEC = torch.tensor([[-2.0], [2.0]])


def hand_sae():
    # Latent 0 writes u_a, latent 1 writes u_b (b_dec = 4 is implicit in a_hat).
    return {"s": SaeSite(a_hat=torch.tensor([[2.0], [6.0]]), f=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), twin_f={"x": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}, w_dec=HAND_W_DEC)}


def test_sae_scores_by_hand():
    world = hand_world()
    supervised = validate_supervised(**world)
    world["patched"].calls = 0
    world.pop("twin_values")
    scores = score_sae(hand_sae(), supervised=supervised, ks=(1, 2), **world)
    assert world["patched"].calls == 1
    assert scores.sufficiency.value == pytest.approx(2 / 3.5)
    assert scores.necessity.value == pytest.approx(1 - 1.5 / 3.5)
    c = scores.control["x"]
    # Both latents offer +2 towards p0's true change +6 (and -2 towards p1's -5): a tie, so one
    # latent (1 + 2 = 3, token 0; 8 - 2 = 6, token 1) misses both targets and two (5; 4) hit.
    assert c.edit_success[1].value == pytest.approx(0.0) and c.edit_success[2].value == pytest.approx(1.0)
    assert c.min_k.value == 2 and (c.min_k.low, c.min_k.high) == (2, 2)
    # k = 1 takes latent 0: all of p0's reconstruction (weight 1, fully removed), nothing of
    # p1's (latent 0 is off there). k = 2 removes each prompt's only active latent.
    assert c.edit_magnitude[1].value == pytest.approx(0.5) and c.edit_magnitude[2].value == pytest.approx(1.0)
    assert c.supervised_edit_success.value == pytest.approx(1.0) and c.no_intervention_agreement.value == 0.0
    site = scores.per_site["s"]
    assert site.explained_variance.value == pytest.approx(1 - 5 / 24.5)
    assert site.l0.value == pytest.approx(1.0) and site.dead_fraction.value == pytest.approx(0.0)
    assert site.interpretability.feature_centric.value == 1.0 and site.interpretability.value_centric.value == 1.0
    assert site.best_cosine.value == pytest.approx(1.0) and site.matched_cosine.value == pytest.approx(1.0)
    out = strict_json(scores)
    assert out["control"]["x"]["by_k"]["2"]["edit_success"]["value"] == pytest.approx(1.0)
    assert out["sufficiency"]["direction"] == "one" and out["sufficiency"]["description"] == METRICS["sufficiency"].description
    assert out["per_site"]["s"]["interpretability"]["values"][0] == {
        "attribute": "x", "value": "a", "latent": 0, "best_f1": 1.0, "precision": 1.0, "recall": 1.0, "latents_above_threshold": 1,
    }


def test_score_sae_refuses_other_sites():
    world = hand_world()
    supervised = validate_supervised(**world)
    world.pop("twin_values")
    with pytest.raises(ValueError, match="serves sites"):
        score_sae({"elsewhere": hand_sae()["s"]}, supervised=supervised, **world)


def test_unseen_value_is_named():
    world = hand_world(twin_values=("c", "a"))
    with pytest.raises(ValueError, match="value 'c' of attribute 'x' has no code"):
        validate_supervised(**world)


# ---------------------------------------------------------------------------------------------
# Undefined numbers: NaN with a reason, never a sentinel.


def test_zero_baselines_are_nan_with_a_reason():
    # a = 4 on both prompts: clean m = 0 (sufficiency over zero), and LD_clean = LD_abl (the
    # ablation-normalised numbers over zero); a constant site has no variance to explain.
    world = hand_world(acts=((4.0,), (4.0,)))
    v = validate_supervised(**world)
    for est in (v.sufficiency, v.logit_diff_recovered, v.necessity, v.explained_variance["s"]):
        assert math.isnan(est.value) and "zero denominator" in est.reason
    out = strict_json(v)
    assert out["sufficiency"]["value"] is None and out["sufficiency"]["reason"]
    world.pop("twin_values")
    flat = SaeSite(torch.tensor([[4.0], [4.0]]), torch.zeros(2, 2), {"x": torch.zeros(2, 2)}, HAND_W_DEC)
    s = score_sae({"s": flat}, supervised=v, ks=(1,), **world)
    assert math.isnan(s.sufficiency.value) and math.isnan(s.per_site["s"].explained_variance.value)
    # No latent is ever active: the feature-centric fraction has no items, precision no support.
    interp = s.per_site["s"].interpretability
    assert math.isnan(interp.feature_centric.value) and "no latent is active" in interp.feature_centric.reason
    assert math.isnan(interp.values[0].precision) and interp.value_centric.value == 0.0
    assert s.per_site["s"].dead_fraction.value == 1.0 and s.per_site["s"].l0.value == 0.0
    # Nothing reconstructed: an edit's magnitude (a weight within the reconstruction) is undefined.
    assert math.isnan(s.control["x"].edit_magnitude[1].value) and "reconstruction is empty" in s.control["x"].edit_magnitude[1].reason
    strict_json(s)


def test_control_without_a_changed_pair_is_undefined():
    world = hand_world(twin_values=("a", "b"))  # every "twin" kept its value
    v = validate_supervised(**world)
    for est in (v.control["x"].edit_success, v.control["x"].no_intervention_agreement, v.control["x"].edit_magnitude):
        assert math.isnan(est.value) and "no test pair changes attribute 'x'" in est.reason
    world.pop("twin_values")
    s = score_sae(hand_sae(), supervised=v, ks=(1, 2), **world)
    assert math.isnan(s.control["x"].edit_success[1].value) and math.isnan(s.control["x"].min_k.value)
    strict_json(v), strict_json(s)


def test_min_k_by_hand():
    sup = torch.tensor([1.0, 1.0, 1.0, 0.0])  # 0.75
    hits = {1: torch.tensor([0.0, 0.0, 1.0, 1.0]), 2: torch.tensor([1.0, 1.0, 1.0, 0.0]), 4: torch.ones(4)}
    est = min_k(hits, sup)
    assert est.value == 2 and est.low in (1, 2) and est.high in (2, 4)
    never = min_k({1: torch.zeros(4)}, sup)
    assert math.isnan(never.value) and "no k up to 1 reaches" in never.reason
    # Reached on the full sample but not in every resample: the upper bound is undefined.
    shaky = min_k({1: torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]), 2: torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])}, torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0]))
    assert shaky.value == 1 and math.isnan(shaky.high) and "upper bound undefined" in shaky.reason


def test_new_aggregations_by_hand():
    a = torch.tensor([[1.0], [3.0]])
    assert explained_variance(a, torch.tensor([[1.5], [3.0]])).value == pytest.approx(1 - 0.25 / 2)
    frac = fraction_estimate(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert frac.value == 0.5 and frac.low < 0.5 < frac.high and frac.n == 4
    assert math.isnan(fraction_estimate(torch.zeros(0)).value)
    # Two latents over four prompts: latent 0 fires exactly on x = a (F1 1), latent 1 on one
    # a and one b prompt (F1 against a: 2 * 1 / (2 + 2) = 1/2).
    active = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
    interp = interpretability_scores(active, {"x": ["a", "a", "b", "b"]})
    assert interp.feature_centric.value == 0.5 and interp.feature_centric.n == 2
    assert interp.value_centric.value == 0.5  # a has latent 0; b's best is latent 1 at F1 1/2
    assert interp.value_centric_by_attribute["x"].value == 0.5
    # Alignment: codes [1, 0] and [0, 1] against rows [2, 0] and [1, 1].
    d = Dictionary(torch.zeros(2), {"x": {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 1.0])}})
    al = alignment_scores(d, torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    assert al["best_cosine"].value == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    assert al["matched_cosine"].value == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    wide = alignment_scores(d, torch.ones(3, 5))
    assert math.isnan(wide["best_cosine"].value) and "2 wide but decoder rows 5" in wide["best_cosine"].reason


# ---------------------------------------------------------------------------------------------
# Planted truth. At each of two sites, a(p) = u_0 + P_io[io] + P_s[s] + P_order[order] + noise,
# with P_io and P_s centred simplices on orthonormal directions and P_order = -w / +w. The
# output reads the planted directions: an io token's logit is 5 <a - u_0, P_io[n]> + 1.5 <a -
# u_0, w> (summed over sites), an s token's the same with P_s and -w. So the model answers the io
# name when order = 1 and the s name when order = 0, with metric answer - distractor = 6, and
# argmax and metric move with every planted feature.

D, L_SAE, NOISE = 24, 12, 0.05  # 12 latents: one per attribute value
VALUES = {"io": [f"io{j}" for j in range(5)], "s": [f"s{j}" for j in range(5)], "order": [0, 1]}
SITES = ("A", "B")


class PlantedModel(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.planted, self.readers, self.u0 = {}, {}, {}
        self.readout = torch.nn.ModuleDict()
        for site in SITES:
            q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
            e_io, e_s, w = q[:, :5].T, q[:, 5:10].T, q[:, 10]
            self.u0[site] = 3 * torch.randn(D, generator=g)
            self.planted[site] = {
                "io": {v: e_io[j] - e_io.mean(0) for j, v in enumerate(VALUES["io"])},
                "s": {v: e_s[j] - e_s.mean(0) for j, v in enumerate(VALUES["s"])},
                "order": {0: -w, 1: w},
            }
            # Vectors that read each planted vector as exactly 1 and its siblings as <= 0.
            self.readers[site] = {
                "io": {v: e_io[j] / 0.8 for j, v in enumerate(VALUES["io"])},
                "s": {v: e_s[j] / 0.8 for j, v in enumerate(VALUES["s"])},
                "order": {0: -w, 1: w},
            }
            read = torch.nn.Linear(D, 10)
            weight = torch.stack([5 * self.planted[site]["io"][v] + 1.5 * w for v in VALUES["io"]] + [5 * self.planted[site]["s"][v] - 1.5 * w for v in VALUES["s"]])
            with torch.no_grad():
                read.weight.copy_(weight)
                read.bias.copy_(-weight @ self.u0[site])
            self.readout[site] = read

    def activations(self, prompts, g):
        return {
            site: torch.stack([self.u0[site] + sum(self.planted[site][a][p[a]] for a in VALUES) for p in prompts]) + NOISE * torch.randn(len(prompts), D, generator=g)
            for site in SITES
        }

    def forward(self, acts):
        return sum(self.readout[site](acts[site]) for site in SITES)


def draw(n, g):
    pick = lambda a: VALUES[a][int(torch.randint(len(VALUES[a]), (1,), generator=g))]  # noqa: E731
    return [{a: pick(a) for a in VALUES} for _ in range(n)]


def twin_of(p, attribute, g):
    """Differs in `attribute` alone: a different name, or the order flipped."""
    others = [v for v in VALUES[attribute] if v != p[attribute]]
    return {**p, attribute: others[int(torch.randint(len(others), (1,), generator=g))]}


def token(p, which):
    return VALUES["io"].index(p["io"]) if which == "io" else 5 + VALUES["s"].index(p["s"])


@pytest.fixture(scope="module")
def planted():
    return planted_world()


def planted_world():
    g = torch.Generator().manual_seed(0)
    model = PlantedModel()
    train, test = draw(4000, g), draw(300, g)
    fitter = {s: DictionaryFitter(VALUES, D) for s in SITES}
    train_acts = model.activations(train, g)
    for s in SITES:
        fitter[s].update(train_acts[s], train)
    dictionaries = {s: fitter[s].fit("mean") for s in SITES}
    model.lstsq = {s: fitter[s].fit("lstsq") for s in SITES}  # kept for the least-squares check

    answer = torch.tensor([token(p, "io" if p["order"] == 1 else "s") for p in test])
    distractor = torch.tensor([token(p, "s" if p["order"] == 1 else "io") for p in test])

    def run(acts):
        with torch.no_grad():
            logits = model(acts)
        return Outcome(logits.gather(1, answer[:, None])[:, 0] - logits.gather(1, distractor[:, None])[:, 0], logits.argmax(dim=1))

    acts = model.activations(test, g)
    twins = {a: [twin_of(p, a, g) for p in test] for a in VALUES}
    twin_acts = {a: model.activations(twins[a], g) for a in VALUES}
    world = dict(
        acts=acts,
        twin_acts=twin_acts,
        values={a: [p[a] for p in test] for a in VALUES},
        twin_values={a: [t[a] for t in twins[a]] for a in VALUES},
        clean=run(acts),
        patched=Recorder(acts, run),
        dictionaries=dictionaries,
    )
    return model, world


def test_mean_codes_recover_the_planted_vectors(planted):
    model, world = planted
    for s in SITES:
        for a, by_value in model.planted[s].items():
            for v, vector in by_value.items():
                assert torch.cosine_similarity(world["dictionaries"][s].codes[a][v], vector, dim=0) > 0.99


def test_supervised_dictionaries_pass_on_planted_truth(planted):
    _, world = planted
    world["patched"].calls = 0
    v = validate_supervised(**world)
    assert world["patched"].calls == 1
    assert v.clean_metric.value == pytest.approx(6.0, abs=0.1) and v.ablated_metric.value == pytest.approx(0.0, abs=0.1)
    for est in (v.sufficiency, v.logit_diff_recovered, v.necessity):
        assert est.value == pytest.approx(1.0, abs=0.02) and est.low <= est.value <= est.high
    for a in VALUES:
        c = v.control[a]
        assert c.edit_success.value > 0.97 and c.edit_success.value > c.no_intervention_agreement.value + 0.3
    for s in SITES:
        assert v.explained_variance[s].value > 0.95
        # Each attribute carries its share of the variance: ||P||^2 is 0.8, 0.8 and 1.
        shares = {a: v.attribute_variance_explained[s][a].value for a in VALUES}
        assert shares["order"] > shares["io"] > 0.2 and shares["io"] == pytest.approx(shares["s"], abs=0.05)
    strict_json(v)


def test_least_squares_dictionaries_validate_alike(planted):
    # Minimum-norm least-squares codes split the mean differently between bias and codes, but
    # reconstruct as well and carry the same attribute shares (which are centred for this).
    model, world = planted
    mean = validate_supervised(**world)
    lstsq = validate_supervised(**{**world, "dictionaries": model.lstsq})
    assert lstsq.sufficiency.value == pytest.approx(1.0, abs=0.02) and lstsq.necessity.value == pytest.approx(1.0, abs=0.02)
    for a in VALUES:
        assert lstsq.control[a].edit_success.value > 0.97
        for s in SITES:
            assert lstsq.attribute_variance_explained[s][a].value == pytest.approx(mean.attribute_variance_explained[s][a].value, abs=0.01)


def topk_sae(model, site, keep, seed):
    """A real sae_lens TopK SAE (k = 3: one latent per attribute) whose decoder holds the planted
    vectors in `keep` and random unit directions in the other latents. A planted latent's
    encoder column is the biorthogonal reader of its vector (e_v / 0.8 for the centred simplex
    vertex e_v - mean e, w for +-w), so it is exactly 1 on its value; a random latent reads its
    own direction."""
    g = torch.Generator().manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=D, d_sae=L_SAE, k=3))
    w_dec = torch.nn.functional.normalize(torch.randn(L_SAE, D, generator=g), dim=1)
    w_enc = w_dec.T.clone()
    for j, (a, v) in enumerate((a, v) for a in VALUES for v in VALUES[a]):
        if (a, v) in keep:
            w_dec[j] = model.planted[site][a][v]
            w_enc[:, j] = model.readers[site][a][v]
    with torch.no_grad():
        sae.W_dec.copy_(w_dec)
        sae.W_enc.copy_(w_enc)
        sae.b_enc.zero_()
        sae.b_dec.copy_(model.u0[site])
    return sae


ALL = {(a, v) for a in VALUES for v in VALUES[a]}
HALF = {("io", "io0"), ("io", "io1"), ("io", "io2"), ("s", "s0"), ("s", "s1"), ("order", 1)}  # 6 of 12


def sae_sites(saes, world):
    out = {}
    for s, sae in saes.items():
        with torch.no_grad():
            a_hat, f = reconstruct.direct(sae, world["acts"][s])
            twin_f = {a: sae.encode(world["twin_acts"][a][s]) for a in VALUES}
        out[s] = SaeSite(a_hat, f, twin_f, sae.W_dec.detach())
    return out


def test_saes_rank_perfect_half_random_on_planted_truth(planted):
    model, world = planted
    supervised = validate_supervised(**world)
    world = {k: v for k, v in world.items() if k != "twin_values"}
    world["patched"].calls = 0
    keeps = {"perfect": ALL, "half": HALF, "random": set()}
    saes = {name: sae_sites({s: topk_sae(model, s, keep, seed=i) for i, s in enumerate(SITES)}, world) for name, keep in keeps.items()}
    scores = score_saes(saes, supervised=supervised, ks=(1, 2, 4, 8), **world)
    assert world["patched"].calls == 1  # three SAEs, all edits and all k: one batched call
    perfect, half, random = scores["perfect"], scores["half"], scores["random"]

    def control_at(result, k):
        return sum(result.control[a].edit_success[k].value for a in VALUES) / len(VALUES)

    def per_site(result, name):
        return sum(getattr(result.per_site[s], name).value for s in SITES) / len(SITES)

    def interp(result, view):
        return sum(getattr(result.per_site[s].interpretability, view).value for s in SITES) / len(SITES)

    ordered = {
        "sufficiency": lambda r: r.sufficiency.value,
        "logit_diff_recovered": lambda r: r.logit_diff_recovered.value,
        "necessity": lambda r: r.necessity.value,
        "control at k=2": lambda r: control_at(r, 2),
        "control at k=4": lambda r: control_at(r, 4),
        "feature_centric": lambda r: interp(r, "feature_centric"),
        "value_centric": lambda r: interp(r, "value_centric"),
        "best_cosine": lambda r: per_site(r, "best_cosine"),
        "matched_cosine": lambda r: per_site(r, "matched_cosine"),
        "explained_variance": lambda r: per_site(r, "explained_variance"),
    }
    for name, read in ordered.items():
        assert read(perfect) > read(half) > read(random), f"{name}: {read(perfect)}, {read(half)}, {read(random)}"
    # The planted SAE is the ground truth in SAE form.
    for name in ("sufficiency", "logit_diff_recovered", "necessity", "control at k=2", "feature_centric", "value_centric", "best_cosine", "matched_cosine"):
        assert ordered[name](perfect) == pytest.approx(1.0, abs=0.03), name
    for a in VALUES:  # moving a value takes two latents: one off, one on
        assert perfect.control[a].min_k.value == 2
        assert perfect.control[a].edit_magnitude[2].value == pytest.approx(supervised.control[a].edit_magnitude.value, abs=0.05)
    # The random SAE controls nothing beyond what the target already agrees on, and explains no
    # attribute value.
    for a in VALUES:
        assert random.control[a].edit_success[2].value <= supervised.control[a].no_intervention_agreement.value + 0.05
    assert interp(random, "value_centric") < 0.2 and abs(random.sufficiency.value) < 0.3
    for result in scores.values():
        strict_json(result)


def test_a_relu_sae_with_the_planted_decoder_is_the_ground_truth_too(planted):
    # A StandardSAE (ReLU) thresholds instead of taking the top k: b_enc = -1/2 silences every
    # reader below 1/2, so a planted latent reads 1 - 1/2 on its value and nothing elsewhere;
    # decoder rows of twice the planted vectors restore the scale.
    model, world = planted
    supervised = validate_supervised(**world)
    world = {k: v for k, v in world.items() if k != "twin_values"}
    saes = {}
    for site in SITES:
        sae = StandardSAE(StandardSAEConfig(d_in=D, d_sae=L_SAE))
        keys = [(a, v) for a in VALUES for v in VALUES[a]]
        with torch.no_grad():
            sae.W_dec.copy_(torch.stack([2 * model.planted[site][a][v] for a, v in keys]))
            sae.W_enc.copy_(torch.stack([model.readers[site][a][v] for a, v in keys]).T)
            sae.b_enc.fill_(-0.5)
            sae.b_dec.copy_(model.u0[site])
        saes[site] = sae
    scores = score_sae(sae_sites(saes, world), supervised=supervised, ks=(1, 2, 4), **world)
    assert scores.sufficiency.value == pytest.approx(1.0, abs=0.03)
    for a in VALUES:
        assert scores.control[a].edit_success[2].value > 0.97 and scores.control[a].min_k.value == 2
    for s in SITES:
        site = scores.per_site[s]
        assert site.interpretability.feature_centric.value == 1.0 and site.interpretability.value_centric.value == 1.0
        assert all(e.value == 1.0 for e in site.interpretability.value_centric_by_attribute.values())
        assert site.l0.value == pytest.approx(3.0) and site.matched_cosine.value > 0.99  # against the fitted codes
