"""The method's mathematics against hand-computed values and planted truth."""

import math

import pytest
import torch

from runtime.sage import alignment, control, interpretability, reconstruct, validation
from runtime.sage.dictionaries import DictionaryFitter
from runtime.sage.statistics import bootstrap, mean_estimate, safe_ratio

# Four prompts, one dimension, attributes x in {a, b} and y in {0, 1}: a(p) = 4 + X + Y with
# X = -2/+2 and Y = -1/+1, so every mean code is known by hand.
ASSIGN = [{"x": "a", "y": 0}, {"x": "a", "y": 1}, {"x": "b", "y": 0}, {"x": "b", "y": 1}]
ACTS = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
VALUES = {"x": ["a", "b"], "y": [0, 1]}


def test_mean_codes_by_hand():
    fitter = DictionaryFitter(VALUES, width=1)
    fitter.update(ACTS[:3], ASSIGN[:3])  # streamed in two batches: same sums as one
    fitter.update(ACTS[3:], ASSIGN[3:])
    d = fitter.fit("mean")
    assert d.bias.item() == pytest.approx(4.0)
    assert d.codes["x"]["a"].item() == pytest.approx(-2.0) and d.codes["x"]["b"].item() == pytest.approx(2.0)
    assert d.codes["y"][0].item() == pytest.approx(-1.0) and d.codes["y"][1].item() == pytest.approx(1.0)
    assert torch.allclose(d.reconstruct(ASSIGN), ACTS)
    edited = d.edit(ACTS[:1], "x", ["a"], ["b"])  # (a, 0) -> (b, 0): 1 - (-2) + 2
    assert edited.item() == pytest.approx(5.0)


def test_least_squares_codes_are_the_minimum_norm_solution():
    torch.manual_seed(0)
    acts = torch.randn(4, 3)  # not additive: the fit is a true projection
    fitter = DictionaryFitter(VALUES, width=3)
    fitter.update(acts, ASSIGN)
    d = fitter.fit("lstsq", dtype=torch.float64)
    design = fitter.index.one_hot(ASSIGN, ("x", "y"))
    expected = torch.linalg.lstsq(design, acts.double(), driver="gelsd").solution
    ours = torch.stack([d.codes["x"]["a"], d.codes["x"]["b"], d.codes["y"][0], d.codes["y"][1], d.bias])
    assert torch.allclose(ours, expected, atol=1e-10)
    # Least squares can only fit at least as well as mean codes.
    mean = DictionaryFitter(VALUES, width=3)
    mean.update(acts, ASSIGN)
    err_mean = (mean.fit("mean").reconstruct(ASSIGN) - acts).pow(2).sum()
    err_lstsq = (d.reconstruct(ASSIGN).float() - acts).pow(2).sum()
    assert err_lstsq <= err_mean + 1e-6


def test_mean_codes_recover_planted_features():
    torch.manual_seed(1)
    width, names = 32, ["n0", "n1", "n2", "n3", "n4"]
    planted = {v: torch.randn(width) for v in names}
    u0 = torch.randn(width) * 3
    fitter = DictionaryFitter({"io": names}, width)
    for _ in range(10):  # ten streamed batches
        batch = [{"io": names[i % 5]} for i in torch.randint(0, 5, (64,)).tolist()]
        acts = u0 + torch.stack([planted[b["io"]] for b in batch]) + 0.05 * torch.randn(64, width)
        fitter.update(acts, batch)
    d = fitter.fit("mean")
    centred = {v: planted[v] - torch.stack(list(planted.values())).mean(0) for v in names}
    for v in names:
        assert torch.cosine_similarity(d.codes["io"][v], centred[v], dim=0) > 0.99


def test_dictionary_errors_name_the_value():
    fitter = DictionaryFitter(VALUES, width=1)
    with pytest.raises(ValueError, match="value 'c' of attribute 'x' has no code"):
        fitter.update(ACTS[:1], [{"x": "c", "y": 0}])
    with pytest.raises(ValueError, match="no activations"):
        fitter.fit("mean")


def test_validation_formulas_by_hand():
    clean = torch.tensor([2.0, 4.0])  # mean 3
    interv = torch.tensor([1.0, 2.0])  # mean 1.5
    ablated = torch.tensor([0.0, 0.0])
    removed = torch.tensor([0.4, 0.8])  # mean 0.6
    assert validation.sufficiency(clean, interv).value == pytest.approx(0.5)
    assert validation.logit_diff_recovered(clean, interv, ablated).value == pytest.approx(0.5)
    assert validation.necessity(clean, removed, ablated).value == pytest.approx(0.8)
    success = validation.edit_success(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 0]))
    assert success.value == pytest.approx(0.5) and success.n == 4


def test_bootstrap_interval_behaviour():
    constant = mean_estimate(torch.full((50,), 2.5))
    assert (constant.value, constant.low, constant.high) == pytest.approx((2.5, 2.5, 2.5))
    torch.manual_seed(0)
    sample = torch.randn(400) + 1.0
    est = mean_estimate(sample, seed=3)
    assert est.low < est.value < est.high
    half_width = 1.96 * sample.std().item() / math.sqrt(400)  # the normal-theory interval
    assert est.high - est.low == pytest.approx(2 * half_width, rel=0.2)
    assert mean_estimate(sample, seed=3) == est  # seeded: reproducible


def test_undefined_ratio_is_nan_with_a_reason_never_a_sentinel():
    est = validation.sufficiency(torch.zeros(10), torch.ones(10))
    assert math.isnan(est.value) and "zero denominator" in est.reason
    as_json = est.to_json()
    assert as_json["value"] is None and as_json["reason"]
    assert torch.isnan(safe_ratio(torch.tensor([1.0]), torch.tensor([0.0]))).all()
    empty = bootstrap({"x": torch.zeros(0)}, lambda m: m["x"])
    assert math.isnan(empty.value) and empty.n == 0


class LinearSae:
    """encode = x W_enc, decode = f W_dec: a dictionary with no nonlinearity and no bias."""

    def __init__(self, w_dec, relu=False):
        self.W_dec = w_dec
        self.relu = relu

    def encode(self, x):
        f = x @ torch.linalg.pinv(self.W_dec)
        return f.clamp_min(0) if self.relu else f

    def decode(self, f):
        return f @ self.W_dec + 0.7  # a decoder bias that the residual variant must cancel


def test_residual_reconstruction_recovers_a_sublayer_through_a_lossless_sae():
    torch.manual_seed(0)
    sae = LinearSae(torch.eye(4))
    r_before, c = torch.randn(5, 4), torch.randn(5, 4)
    c_hat, f_c = reconstruct.residual(sae, r_before + c, c)
    assert torch.allclose(c_hat, c, atol=1e-5) and torch.allclose(f_c.to_dense(), c, atol=1e-5)
    pair_hat, _ = reconstruct.residual_pair(sae, sae, r_before, r_before + c, c)
    assert torch.allclose(pair_hat, c, atol=1e-5)
    direct_hat, _ = reconstruct.direct(sae, c)
    assert torch.allclose(direct_hat, c + 0.7, atol=1e-5)


def test_residual_reconstruction_by_hand_with_a_relu():
    sae = LinearSae(torch.eye(2), relu=True)
    r_after, c = torch.tensor([[1.0, -1.0]]), torch.tensor([[2.0, 0.0]])
    # E(r_after) = [1, 0]; E(r_after - c) = relu([-1, -1]) = [0, 0]: the features c contributes
    # are [1, 0], and the reconstruction is [1, 0] (the negative part is invisible to a ReLU).
    c_hat, f_c = reconstruct.residual(sae, r_after, c)
    assert torch.allclose(f_c.to_dense(), torch.tensor([[1.0, 0.0]])) and torch.allclose(c_hat, torch.tensor([[1.0, 0.0]]))


def test_residual_pair_by_hand_with_relus():
    before, after = LinearSae(torch.eye(2), relu=True), LinearSae(torch.eye(2), relu=True)
    r_before, c = torch.tensor([[1.0, -1.0]]), torch.tensor([[2.0, 3.0]])
    r_after = r_before + c  # [3, 2]: the SAEs bracket exactly this sublayer
    # S_before(r_before) = relu([1, -1]) + 0.7 = [1.7, 0.7]; S_after(r_after) = [3.7, 2.7]:
    # c_hat = [2, 2] (the before side's negative part is lost, as a ReLU SAE loses it).
    c_hat, f = reconstruct.residual_pair(before, after, r_before, r_after, c)
    assert torch.allclose(c_hat, torch.tensor([[2.0, 2.0]]))
    assert torch.allclose(f.to_dense(), torch.tensor([[3.0, 2.0, 1.0, 0.0]]))  # after's latents, then before's
    w = reconstruct.pair_decoder(before, after)
    assert torch.allclose(w, torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    # The latents through the pair's decoder give S_after(r_after) - S_before(r_before), biases cancelled.
    assert torch.allclose(f.to_dense() @ w, after.decode(after.encode(r_after)) - before.decode(before.encode(r_before)))


def test_residual_pair_takes_what_else_lies_between_the_saes_exactly():
    """SAEs at resid_pre L and resid_post L around one head: the other heads and the MLP, which
    also write between the two points, come from the model as they are, so only the two SAEs'
    errors reach c_hat."""
    sae = LinearSae(torch.eye(2), relu=True)
    r_before, head, rest = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 4.0]])
    r_after = r_before + head + rest  # [1.5, 3]: after's error is the bias 0.7; before's is [0.7, 1.7]
    c_hat, _ = reconstruct.residual_pair(sae, sae, r_before, r_after, head)
    assert torch.allclose(c_hat, head + torch.tensor([[0.7, 0.7]]) - torch.tensor([[0.7, 1.7]]))  # [0.5, -1]


def test_explained_variance_by_hand():
    a = torch.tensor([[1.0], [3.0]])  # total variance sum 2
    assert reconstruct.explained_variance(a, a) == pytest.approx(1.0)
    assert reconstruct.explained_variance(a, torch.tensor([[2.0], [2.0]])) == pytest.approx(0.0)
    assert reconstruct.explained_variance(a, torch.tensor([[1.5], [3.0]])) == pytest.approx(1 - 0.25 / 2)


def test_greedy_sparse_edit_by_hand():
    w_dec = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    f_src = torch.tensor([[1.0, 0.0, 0.0]])
    f_tgt = torch.tensor([[0.0, 0.0, 1.0]])
    true_delta = torch.tensor([[0.0, 1.0]])  # from [1, 0] to [1, 1]
    edits, chosen = control.greedy_edits(f_src, f_tgt, w_dec, true_delta, ks=(1, 2, 3))
    # Steps on offer: d0 = -[1, 0], d2 = +[1, 1]. Distances to [0, 1] after one step:
    # d0 -> ||[-1, -1]|| = 1.41, d2 -> ||[1, 0]|| = 1: take latent 2, then latent 0 gives [0, 1].
    assert chosen[0].tolist() == [2, 0, -1]
    assert torch.allclose(edits[1], torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(edits[2], true_delta) and torch.allclose(edits[3], true_delta)


def test_latent_weights_and_edit_magnitude_by_hand():
    w_dec = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    f = torch.tensor([[3.0, 1.0]])  # x = [3, 2]: weights 9/13 and 4/13
    weights = control.latent_weights(f, w_dec)
    assert torch.allclose(weights, torch.tensor([[9 / 13, 4 / 13]]))
    # The edit lowers latent 0 from 3 to 0 (fully removed) and raises latent 1: magnitude 9/13.
    magnitude = control.edit_magnitude(f, torch.tensor([[0.0, 5.0]]), w_dec, torch.tensor([[0, 1]]))
    assert magnitude.item() == pytest.approx(9 / 13)
    half = control.edit_magnitude(f, torch.tensor([[1.5, 1.0]]), w_dec, torch.tensor([[0, -1]]))
    assert half.item() == pytest.approx(9 / 26)
    sup = control.supervised_edit_magnitude(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    assert sup.item() == pytest.approx(0.5)


def test_interpretability_finds_planted_latents():
    xs = ["a", "b", "c", "d"] * 25
    active = torch.zeros(100, 3, dtype=torch.bool)
    active[:, 0] = torch.tensor([x == "a" for x in xs])  # exactly x == a
    active[:, 1] = torch.tensor([x in ("b", "c") for x in xs])  # a union of two values
    active[::7, 2] = True  # scattered
    props = {p.latent: p for p in interpretability.feature_centric(active, {"x": xs})}
    assert props[0].f1 == pytest.approx(1.0) and props[0].values == ("a",)
    assert props[1].f1 == pytest.approx(1.0) and set(props[1].values) == {"b", "c"}
    assert props[2].f1 < 0.5
    by_value = {m.value: m for m in interpretability.value_centric(active, {"x": xs})}
    assert by_value["a"].latent == 0 and by_value["a"].f1 == pytest.approx(1.0)
    assert by_value["a"].precision == pytest.approx(1.0) and by_value["a"].recall == pytest.approx(1.0)
    # For b alone, latent 1 has precision 1/2 and recall 1: F1 = 2/3, below the threshold.
    assert by_value["b"].latent == 1 and by_value["b"].f1 == pytest.approx(2 / 3)
    assert by_value["b"].latents_above_threshold == 0


def test_alignment_matches_one_to_one():
    codes = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]])
    w_dec = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    a = alignment.align(codes, w_dec)
    assert a.best_latent.tolist() == [1, 1]  # both codes prefer latent 1 ...
    assert a.matched_latent.tolist() == [1, 2]  # ... the matching gives it to the closer one
    assert a.matched_cosine[0] == pytest.approx(1.0)
    assert a.matched_cosine[1] == pytest.approx(0.1 / math.sqrt(0.82))


def naive_greedy(f_src, f_tgt, w_dec, true_delta, steps):
    """The definition, one pair and one candidate at a time."""
    out = []
    for p in range(len(f_src)):
        running, left, picks = torch.zeros(w_dec.shape[1], dtype=torch.float64), set(torch.nonzero(f_tgt[p] != f_src[p]).flatten().tolist()), []
        for _ in range(steps):
            if not left:
                break
            step = {j: (f_tgt[p, j] - f_src[p, j]).double() * w_dec[j].double() for j in left}
            j = min(sorted(left), key=lambda j: (running + step[j] - true_delta[p].double()).norm().item())
            running, picks = running + step[j], picks + [j]
            left.discard(j)
        out.append(picks + [-1] * (steps - len(picks)))
    return torch.tensor(out)


def test_greedy_edits_match_the_definition_and_chunking_changes_nothing(monkeypatch):
    torch.manual_seed(3)
    n, width, d = 20, 12, 5
    f_src = torch.relu(torch.randn(n, width) - 0.8).double()
    f_tgt = torch.relu(torch.randn(n, width) - 0.8).double()
    f_tgt[0] = f_src[0]  # a pair whose latents do not differ at all: an empty edit
    w_dec, true_delta = torch.randn(width, d).double(), torch.randn(n, d).double()
    edits, chosen = control.greedy_edits(f_src, f_tgt, w_dec, true_delta, ks=(1, 3, 6))
    assert torch.equal(chosen, naive_greedy(f_src, f_tgt, w_dec, true_delta, 6))
    for k in (1, 3, 6):
        picks = chosen[:, :k]
        expected = torch.stack([sum(((f_tgt[p, j] - f_src[p, j]) * w_dec[j] for j in picks[p].tolist() if j >= 0), torch.zeros(d, dtype=torch.float64)) for p in range(n)])
        assert torch.allclose(edits[k], expected)
    monkeypatch.setattr(control, "GATHER_BUDGET", 1)  # one row per chunk
    edits_1, chosen_1 = control.greedy_edits(f_src, f_tgt, w_dec, true_delta, ks=(1, 3, 6))
    assert torch.equal(chosen_1, chosen) and all(torch.allclose(edits_1[k], edits[k]) for k in edits)
    for share in (0.0, 2.0):  # whole-decoder products for every pair, or gathered rows for every pair
        monkeypatch.setattr(control, "DENSE_SHARE", share)
        edits_2, chosen_2 = control.greedy_edits(f_src, f_tgt, w_dec, true_delta, ks=(1, 3, 6))
        assert torch.equal(chosen_2, chosen) and all(torch.allclose(edits_2[k], edits[k]) for k in edits)


@pytest.mark.parametrize("dense_share", [0.25, 2.0])  # products with the whole decoder, or gathered rows
def test_greedy_edits_match_the_definition_with_thousands_of_candidates(monkeypatch, dense_share):
    """A densely firing SAE: every latent differs between p and p', C = 3000 candidates per
    pair. Each step of the definition, vectorised over candidates: the distance of every
    candidate's running sum to the target, taken whole (no incremental dot products)."""
    g = torch.Generator().manual_seed(8)
    n, width, d, steps = 3, 3000, 16, 8
    f_src = torch.rand(n, width, generator=g, dtype=torch.float64) + 0.1
    f_tgt = torch.rand(n, width, generator=g, dtype=torch.float64) + 0.1
    w_dec, true_delta = torch.randn(width, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    monkeypatch.setattr(control, "DENSE_SHARE", dense_share)
    edits, chosen = control.greedy_edits(f_src, f_tgt, w_dec, true_delta, ks=(1, 4, steps))
    for p in range(n):
        step = (f_tgt[p] - f_src[p])[:, None] * w_dec  # (C, d)
        running, left = torch.zeros(d, dtype=torch.float64), torch.ones(width, dtype=torch.bool)
        for k in range(steps):
            distance = (running + step - true_delta[p]).norm(dim=1).masked_fill(~left, math.inf)
            j = int(distance.argmin())
            assert int(chosen[p, k]) == j
            running, left[j] = running + step[j], False
            if k + 1 in edits:
                assert torch.allclose(edits[k + 1][p], running)


def test_edit_magnitude_matches_the_dense_weights():
    torch.manual_seed(4)
    f_src, f_tgt = torch.relu(torch.randn(6, 9)).double(), torch.relu(torch.randn(6, 9)).double()
    w_dec = torch.randn(9, 4).double()
    chosen = torch.tensor([[0, 3, -1]] * 6)
    weights = control.latent_weights(f_src, w_dec)
    fraction = ((f_src - f_tgt) / f_src.where(f_src != 0, torch.ones_like(f_src))).clamp(0, 1).where(f_src > 0, torch.zeros_like(f_src))
    expected = weights[:, 0] * fraction[:, 0] + weights[:, 3] * fraction[:, 3]
    assert torch.allclose(control.edit_magnitude(f_src, f_tgt, w_dec, chosen), expected)
    empty = control.edit_magnitude(torch.zeros(1, 9).double(), f_tgt[:1], w_dec, chosen[:1])
    assert torch.isnan(empty).all()  # nothing reconstructed: no weight to speak of
    assert torch.isnan(control.supervised_edit_magnitude(torch.zeros(1, 2), torch.zeros(1, 2))).all()
