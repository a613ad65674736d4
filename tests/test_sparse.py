"""Sparse latents (runtime/sage/sparse.py) against the dense definitions they replace: every
metric of a small SAE computed on (N, d_sae) dense latents, as the score pass once did, agrees
with the sparse path to float tolerance."""

import math

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from scipy.optimize import linear_sum_assignment

from runtime.sage import alignment, control, interpretability, reconstruct, sparse
from runtime.sage.dictionaries import Dictionary
from runtime.sage.evaluate import SaeSite, score_site
from runtime.sage.sparse import Latents


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def relu_sae(d_in=6, d_sae=40, seed=0, bias=-0.6):
    g = torch.Generator().manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g))
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g))
        sae.b_enc.fill_(bias)  # fires on about a third of the prompts: some latents dead
        sae.b_dec.copy_(torch.randn(d_in, generator=g))
    return sae.eval()


def test_latents_operations_match_dense_ones():
    g = torch.Generator().manual_seed(1)
    a = torch.relu(torch.randn(7, 11, generator=g) - 0.5)
    b = torch.relu(torch.randn(7, 11, generator=g) - 0.5)
    b[2] = a[2]  # a row that does not change at all
    la, lb = Latents.from_dense(a), Latents.from_dense(b)
    assert torch.equal(la.to_dense(), a) and la.nnz == int((a != 0).sum())
    diff = lb.minus(la)
    assert torch.equal(diff.to_dense(), b - a) and bool((diff.value != 0).all()) and diff.crow[3] == diff.crow[2]
    j = torch.tensor([[0, 3, -1]] * 7)
    assert torch.equal(la.lookup(j), torch.where(j >= 0, a.gather(1, j.clamp_min(0)), torch.zeros(())))
    w = torch.randn(11, 4, generator=g)
    assert torch.allclose(la.decode(w), a @ w, atol=1e-6)
    assert torch.allclose(la.decode(w.to(torch.bfloat16)), a @ w.to(torch.bfloat16).float(), atol=1e-5)
    assert torch.equal(la.beside(lb).to_dense(), torch.cat([a, b], dim=1))
    assert torch.equal(Latents.cat([la.rows(0, 3), la.rows(3, 7)]).to_dense(), a)
    assert torch.equal(la.nonzero_per_row(), (a != 0).sum(dim=1)) and torch.equal(la.ever_nonzero(), (a != 0).any(dim=0))
    full = Latents.from_dense(torch.zeros(2, 3), keep_zeros=True)  # a basis keeps its zero coordinates
    assert full.nnz == 6 and int(full.nonzero_per_row().sum()) == 0


@pytest.mark.parametrize("make", [relu_sae, lambda: TopKSAE(TopKSAEConfig(d_in=6, d_sae=40, k=3)).eval()])
def test_chunked_encoding_is_the_saes_own(monkeypatch, make):
    sae = make()
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        dense = sae.encode(x)
        recon = sae.decode(dense)
    monkeypatch.setattr(sparse, "ENCODE_BUDGET", 40 * 2)  # two prompts a chunk
    f = sparse.encode(sae, x)
    assert torch.equal(f.to_dense(), dense) and bool((f.value != 0).all())
    # TopK's winners come out sparse while encoding here, and the SAE is left as it was
    assert getattr(sae.activation_fn, "use_sparse_activations", False) is False
    assert torch.allclose(sparse.decode(sae, f), recon, atol=1e-5)
    c = torch.randn(9, 6, generator=torch.Generator().manual_seed(3))
    c_hat, f_c = reconstruct.residual(sae, x, c)
    with torch.no_grad():
        assert torch.equal(f_c.to_dense(), sae.encode(x) - sae.encode(x - c))
        assert torch.allclose(c_hat, sae.decode(sae.encode(x)) - sae.decode(sae.encode(x - c)), atol=1e-5)


# --- the dense definitions, as the score pass computed them on (N, d_sae) latents -------------


def dense_value_centric(active, attributes, threshold=0.8):
    a = active.to(torch.float32)
    size_a = a.sum(dim=0)
    out = []
    for name, column in attributes.items():
        values, hot = interpretability._one_hot(column)
        tp, size_p = (hot.T @ a).T, hot.sum(dim=0)
        f1 = 2 * tp / (size_a[:, None] + size_p[None, :]).clamp_min(1)
        best = f1.argmax(dim=0)
        for v, value in enumerate(values):
            j = int(best[v])
            out.append((name, value, j, float(f1[j, v]), float(tp[j, v] / size_a[j]) if size_a[j] > 0 else math.nan, float(tp[j, v] / size_p[v]), int((f1[:, v] >= threshold).sum())))
    return out


def dense_feature_centric(active, attributes):
    """Each live latent's best single value or union of values, by exhaustive prefix search in
    order of precision, the definition feature_centric vectorises."""
    out = {}
    for j in torch.nonzero(active.any(dim=0)).flatten().tolist():
        a = active[:, j]
        best = -1.0
        for column in attributes.values():
            values = sorted(set(column), key=lambda v: (isinstance(v, str), v))
            masks = {v: torch.tensor([x == v for x in column]) for v in values}
            order = sorted(values, key=lambda v: -float((a & masks[v]).sum()) / float(masks[v].sum()))[:10]
            union = torch.zeros_like(a)
            for v in order:
                union = union | masks[v]
                best = max(best, 2 * float((a & union).sum()) / float(a.sum() + union.sum()))
        out[j] = best
    return out


def full_hungarian(codes, w_dec, absolute=False):
    cos = alignment.cosine_matrix(codes, w_dec)
    cos = cos.abs() if absolute else cos
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    return cos.max(dim=1), torch.as_tensor(cols), cos[torch.as_tensor(rows), torch.as_tensor(cols)]


def test_every_per_site_metric_agrees_with_the_dense_definition():
    torch.manual_seed(5)
    sae = relu_sae()
    n = 60
    x = torch.randn(n, 6)
    values = {"x": [["a", "b", "c"][i % 3] for i in range(n)], "y": [i % 2 for i in range(n)]}
    # Planted: latent 3 fires exactly on x == a, latent 7 never fires at all.
    with torch.no_grad():
        sae.W_enc[:, 7] = 0
        sae.b_enc[7] = -1
    a_hat, f = reconstruct.direct(sae, x)
    with torch.no_grad():
        dense = sae.encode(x)
    dense[:, 3] = torch.tensor([1.0 if v == "a" else 0.0 for v in values["x"]])
    f = Latents.from_dense(dense)
    codes = {"x": {v: torch.randn(6) for v in "abc"}, "y": {0: torch.randn(6), 1: torch.randn(6)}}
    site = SaeSite(a_hat, f, {}, sae.W_dec.detach())
    scores = score_site(site, x, Dictionary(torch.zeros(6), codes), values)
    nonzero = dense != 0
    assert scores.l0.value == pytest.approx(float(nonzero.sum(dim=1).double().mean()))
    assert scores.dead_fraction.value == pytest.approx(float((~nonzero.any(dim=0)).double().mean())) and scores.dead_fraction.value > 0
    active = dense > 0
    expected = dense_value_centric(active, values)
    got = [(m.attribute, m.value, m.latent, m.f1, m.precision, m.recall, m.latents_above_threshold) for m in scores.interpretability.values]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[:3] == e[:3] and g[6] == e[6] and all(u == pytest.approx(v, nan_ok=True) for u, v in zip(g[3:6], e[3:6], strict=True))
    assert got[0][2] == 3 and got[0][3] == pytest.approx(1.0)  # the planted latent is found
    reference = dense_feature_centric(active, values)
    properties = interpretability.feature_centric(f.where(f.value > 0), values)
    assert {p.latent: pytest.approx(p.f1) for p in properties} == reference
    assert scores.interpretability.feature_centric.value == pytest.approx(sum(v >= 0.8 for v in reference.values()) / len(reference))
    stacked = torch.stack([u for by in codes.values() for u in by.values()])
    (best, _), _, matched = full_hungarian(stacked, sae.W_dec.detach())
    assert scores.best_cosine.value == pytest.approx(float(best.mean())) and scores.matched_cosine.value == pytest.approx(float(matched.mean()))


def test_an_empty_active_set_matches_latent_zero_as_the_dense_search_did():
    values = {"x": ["a", "b"]}
    none = Latents.from_dense(torch.zeros(2, 5))
    assert [(m.latent, m.f1, math.isnan(m.precision)) for m in interpretability.value_centric(none, values)] == [(0, 0.0, True)] * 2
    only_four = torch.zeros(2, 5, dtype=torch.bool)
    only_four[0, 4] = True  # fires on a only: b overlaps no live latent
    sparse_matches = interpretability.value_centric(Latents.from_dense(only_four), values)
    for m, e in zip(sparse_matches, dense_value_centric(only_four, values), strict=True):
        assert (m.latent, m.f1, m.latents_above_threshold) == (e[2], e[3], e[6]) and (m.precision == e[4] or math.isnan(m.precision) and math.isnan(e[4]))


def test_control_and_edit_magnitude_agree_with_dense_latents():
    torch.manual_seed(6)
    sae = relu_sae(d_sae=64, bias=-0.3)
    x, twin = torch.randn(12, 6).double(), torch.randn(12, 6).double()
    sae = sae.double()
    with torch.no_grad():
        fs, ft = sae.encode(x), sae.encode(twin)
    w = sae.W_dec.detach()
    ks = (1, 2, 4, 8)
    edits_dense, chosen_dense = control.greedy_edits(fs, ft, w, twin - x, ks)
    edits, chosen = control.greedy_edits(sparse.encode(sae, x), sparse.encode(sae, twin), w, twin - x, ks)
    assert torch.equal(chosen, chosen_dense) and all(torch.allclose(edits[k], edits_dense[k]) for k in ks)
    weights = control.latent_weights(fs, w)  # the dense (N, L) weights
    j = chosen.clamp_min(0)
    fraction = ((fs - ft) / fs.where(fs != 0, torch.ones_like(fs))).clamp(0, 1).where(fs > 0, torch.zeros_like(fs))
    expected = (weights.gather(1, j) * fraction.gather(1, j) * (chosen >= 0)).sum(dim=1)
    got = control.edit_magnitude(sparse.encode(sae, x), sparse.encode(sae, twin), w, chosen)
    assert torch.allclose(got, expected)


@pytest.mark.parametrize("absolute", [False, True])
def test_candidate_hungarian_is_the_full_one(monkeypatch, absolute):
    g = torch.Generator().manual_seed(7)
    for trial in range(5):
        codes, w_dec = torch.randn(9, 5, generator=g), torch.randn(300, 5, generator=g)
        if trial == 1:
            w_dec = torch.randn(9, 5, generator=g)  # exactly as many latents as codes
        if trial == 2:
            monkeypatch.setattr(alignment, "ROWS_BUDGET", 1)  # chunks as small as the kept candidates allow
        (best, best_at), cols, matched = full_hungarian(codes, w_dec, absolute)
        got = alignment.align(codes, w_dec, absolute=absolute)
        assert torch.allclose(got.best_cosine, best) and torch.equal(got.best_latent, best_at)
        assert torch.equal(got.matched_latent, cols) and torch.allclose(got.matched_cosine, matched)


def test_float32_screening_keeps_the_exact_best_among_near_ties(monkeypatch):
    """The decoder is screened in float32 and the survivors reranked in float64: rows whose
    cosines with a code differ by less than float32 resolves still come out in exact order."""
    g = torch.Generator().manual_seed(3)
    code = torch.randn(1, 64, generator=g)
    w_dec = torch.randn(2000, 64, generator=g)
    w_dec[100:106] = code + 1e-4 * torch.randn(6, 64, generator=g)  # six near-copies of the code
    monkeypatch.setattr(alignment, "ROWS_BUDGET", 256)
    index, cos = alignment.candidates(code, w_dec, 3)
    exact = alignment.cosine_matrix(code, w_dec)[0]
    assert torch.equal(index[0], exact.topk(3).indices) and torch.allclose(cos[0], exact.topk(3).values)


def test_latents_are_read_in_the_units_of_the_decoder_rows():
    """A TopK SAE with rescale_acts_by_decoder_norm decodes f_j / ||W_dec[j]|| along W_dec[j]:
    scaled by decoder_scale, f_j W_dec[j] is latent j's part of the reconstruction, as control
    and edit magnitude take it."""
    sae = TopKSAE(TopKSAEConfig(d_in=6, d_sae=40, k=3, rescale_acts_by_decoder_norm=True)).eval()
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 3.0, 40)[:, None])  # norms far from one
        sae.b_dec.normal_()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(9))
    c_hat, f = reconstruct.direct(sae, x)
    scale = reconstruct.decoder_scale(sae)
    assert torch.allclose(f.scaled(scale).decode(sae.W_dec.detach()) + sae.b_dec.detach(), c_hat, atol=1e-5)
    assert not torch.allclose(f.decode(sae.W_dec.detach()) + sae.b_dec.detach(), c_hat, atol=1e-3)
    assert reconstruct.decoder_scale(relu_sae()) is None
    pair = reconstruct.latent_scale(relu_sae(), sae)  # residual_pair: the after SAE's latents, then the before's
    assert torch.equal(pair, torch.cat([torch.ones(40), scale]))
