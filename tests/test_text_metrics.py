"""Standard SAE metrics on text (METHOD.md section 8): ce_loss_score and kl_div_score by hand on tiny
models (a perfect SAE gives 1, one that outputs zeros gives 0, the raw cross-entropy against a
hand computation), explained variance, L0 and dead fraction on a planted case, where splicing
reads in every family, the null-with-reason case, and one end-to-end run on tiny-ioi."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from runtime.model.architectures import architecture
from runtime.model.splice import SPLICEABLE, spliced
from runtime.passes import text as text_pass
from runtime.passes.corpus import cut, take
from runtime.saes.preprocessing import NONE
from runtime.sage.loss_recovered import Tally
from sagec.locations import Location
from tests import tiny_families

WINDOWS = [[2, 4, 5, 6, 7, 8, 9, 10], [2, 11, 12, 13], [4, 14, 15, 16, 17, 18], [2, 19, 20]]


class _Sae(torch.nn.Module):
    """An SAE-like object: `perfect` reconstructs exactly (f = [relu(x), relu(-x)], x_hat = the
    difference), `zero` decodes to zeros, `half` to x / 2."""

    def __init__(self, d: int, kind: str):
        super().__init__()
        self.d, self.kind = d, kind
        eye = torch.eye(d) * {"perfect": 1.0, "zero": 0.0, "half": 0.5}[kind]
        self.W_dec = torch.cat([eye, -eye])  # the rows decode multiplies f by (sagec reads widths from it)

    def encode(self, x):
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=-1)

    def decode(self, f):
        x = f[..., : self.d] - f[..., self.d :]
        return {"perfect": x, "zero": torch.zeros_like(x), "half": x / 2}[self.kind]


def _loaded(family: str, tmp_path):
    folder = tiny_families.build(family, tmp_path / family)
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    return SimpleNamespace(model=SimpleNamespace(_module=hf), tokenizer=SimpleNamespace(pad_token_id=0), device=torch.device("cpu"),
                           arch=architecture(hf.config))


def _sae(loaded, kind: str, location: Location):
    d = loaded.arch.d_model
    return SimpleNamespace(sae=_Sae(d, kind), preprocessing=NONE, d_in=d, d_sae=2 * d, location=location)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return _loaded("gpt2", tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3", "gpt_neox"])
@pytest.mark.parametrize("component", SPLICEABLE)
def test_a_perfect_sae_scores_one_and_zeros_score_zero(family, component, tmp_path):
    loaded = _loaded(family, tmp_path)
    location = Location(component, 1)
    perfect = text_pass.measure(loaded, _sae(loaded, "perfect", location), WINDOWS).estimates()
    assert perfect["ce_loss_score"].value == pytest.approx(1, abs=1e-6)
    assert perfect["kl_div_score"].value == pytest.approx(1, abs=1e-6)
    assert perfect["kl_div_with_sae"].value == pytest.approx(0, abs=1e-7)
    assert perfect["explained_variance"].value == pytest.approx(1, abs=1e-9)
    zero = text_pass.measure(loaded, _sae(loaded, "zero", location), WINDOWS).estimates()
    assert zero["ce_loss_score"].value == pytest.approx(0, abs=1e-6)
    assert zero["kl_div_score"].value == pytest.approx(0, abs=1e-6)
    assert zero["kl_div_with_ablation"].value > 1e-3  # the ablation does change the model


def test_cross_entropy_and_kl_against_a_hand_computation(gpt2):
    """The raw quantities, recomputed here token by token with an explicit hook, and the score
    formula applied to them (SAELens's, sae_lens/evals.py)."""
    location = Location("resid_post", 1)
    est = text_pass.measure(gpt2, _sae(gpt2, "half", location), WINDOWS).estimates()
    hf = gpt2.model._module
    ce = {"clean": [], "sae": [], "ablated": []}
    kl = {"sae": [], "ablated": []}
    for w in WINDOWS:  # one window at a time: no padding at all
        ids = torch.tensor([w])
        with torch.no_grad():
            clean = torch.log_softmax(hf(ids).logits[0], -1)
            out = {}
            for name, factor in (("sae", 0.5), ("ablated", 0.0)):
                def hook(module, args, output, factor=factor):
                    h = output[0] if isinstance(output, tuple) else output
                    h = torch.cat([h[:, :1], factor * h[:, 1:]], dim=1)  # the first token left alone
                    return (h, *output[1:]) if isinstance(output, tuple) else h

                handle = hf.transformer.h[1].register_forward_hook(hook)
                out[name] = torch.log_softmax(hf(ids).logits[0], -1)
                handle.remove()
        for t in range(1, len(w) - 1):  # the first token is not scored; the last has no next token
            ce["clean"].append(-clean[t, w[t + 1]].item())
            for name in ("sae", "ablated"):
                ce[name].append(-out[name][t, w[t + 1]].item())
        for t in range(1, len(w)):
            for name in ("sae", "ablated"):
                kl[name].append(float((clean[t].exp() * (clean[t] - out[name][t])).sum()))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert est["ce_loss_without_sae"].value == pytest.approx(mean(ce["clean"]), rel=1e-5)
    assert est["ce_loss_with_sae"].value == pytest.approx(mean(ce["sae"]), rel=1e-5)
    assert est["ce_loss_with_ablation"].value == pytest.approx(mean(ce["ablated"]), rel=1e-5)
    assert est["kl_div_with_sae"].value == pytest.approx(mean(kl["sae"]), rel=1e-4)
    assert est["kl_div_with_ablation"].value == pytest.approx(mean(kl["ablated"]), rel=1e-4)
    hand = (mean(ce["ablated"]) - mean(ce["sae"])) / (mean(ce["ablated"]) - mean(ce["clean"]))
    assert est["ce_loss_score"].value == pytest.approx(hand, rel=1e-4)
    assert est["kl_div_score"].value == pytest.approx((mean(kl["ablated"]) - mean(kl["sae"])) / mean(kl["ablated"]), rel=1e-4)
    assert min(abs(est["ce_loss_score"].value), abs(est["ce_loss_score"].value - 1)) > 1e-3  # neither end: a real test
    assert est["ce_loss_score"].low <= est["ce_loss_score"].value <= est["ce_loss_score"].high
    assert est["ce_loss_score"].n == len(WINDOWS)  # texts are what the interval resamples


def test_batches_cut_by_logits_memory_change_no_number(gpt2, monkeypatch):
    location = Location("mlp_out", 0)
    whole = text_pass.measure(gpt2, _sae(gpt2, "half", location), WINDOWS).estimates()
    monkeypatch.setattr(text_pass, "LOGITS_BUDGET", 1)  # one window a batch
    monkeypatch.setattr(text_pass, "TOKEN_CHUNK", 3)  # a few tokens reconstructed at a time
    one = text_pass.measure(gpt2, _sae(gpt2, "half", location), WINDOWS).estimates()
    for name, e in whole.items():
        assert one[name].value == pytest.approx(e.value, rel=1e-5, abs=1e-9), name


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_splice_reads_the_locations_sagec_means(family, tmp_path):
    """resid_pre and resid_post are the layer's input and output (HF hidden_states), attn_out and
    mlp_out add up to the layer's change, resid_mid is resid_pre + attn_out."""
    loaded = _loaded(family, tmp_path)
    hf = loaded.model._module
    ids = torch.tensor([WINDOWS[0]])
    seen = {}

    def keep(name):
        def replace(a):
            seen[name] = a.clone()
            return a

        return replace

    with torch.no_grad():
        hidden = hf(ids, output_hidden_states=True).hidden_states
        for component in SPLICEABLE:
            with spliced(hf, loaded.arch, Location(component, 1), keep(component)):
                hf(ids)
    final = 2 == loaded.arch.n_layers - 1
    assert torch.allclose(seen["resid_pre"], hidden[1], atol=1e-5)
    if not final:  # HF applies the final norm to the last hidden state
        assert torch.allclose(seen["resid_post"], hidden[2], atol=1e-5)
    assert torch.allclose(seen["resid_pre"] + seen["attn_out"] + seen["mlp_out"], seen["resid_post"], atol=1e-4)
    assert torch.allclose(seen["resid_mid"], seen["resid_pre"] + seen["attn_out"], atol=1e-5)


def test_explained_variance_l0_and_dead_fraction_on_a_planted_case():
    """Two texts of two tokens each; x_hat misses a known part; latents 0 and 1 fire, 2 and 3 never."""
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    x_hat = x + torch.tensor([[0.5, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, -1.0]])
    f = torch.tensor([[1.0, 0, 0, 0], [1.0, 2.0, 0, 0], [0, 3.0, 0, 0], [1.0, 1.0, 0, 0]])
    tally = Tally(2, 2, 4)
    tally.add_reconstruction(torch.tensor([0, 0, 1, 1]), x, x_hat, f)
    est = tally.estimates()
    residual = 0.25 + 1.0
    mean = x.mean(0)
    total = float((x - mean).pow(2).sum())  # 1 + 9 + ... about the mean (1, 0)
    assert est["explained_variance"].value == pytest.approx(1 - residual / total)
    assert est["l0"].value == pytest.approx((1 + 2 + 1 + 2) / 4)
    assert est["dead_fraction"].value == pytest.approx(0.5)
    # the same as sae_lens 6's pooled formula: 1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2)
    pooled = 1 - (residual / 4) / (float(x.pow(2).sum(-1).mean()) - float(mean.dot(mean)))
    assert est["explained_variance"].value == pytest.approx(pooled)


def test_an_sae_at_a_head_is_null_with_a_reason(gpt2, tmp_path):
    artifact = text_pass.unscorable("h", Location("head", 1, 2), "blocks.1.attn.hook_result")
    assert "head" in artifact and "resid_pre" in artifact
    assert text_pass.unscorable("h", Location("resid_post", 1), "x") is None
    assert "every head's z" in text_pass.unscorable("z", None, "blocks.1.attn.hook_z")
    assert "transcoder" in text_pass.unscorable("t", Location("mlp_out", 1), "blocks.1.hook_mlp_in", Location("resid_mid", 1))
    assert text_pass.unscorable("t", Location("mlp_out", 1), "blocks.1.hook_mlp_in", Location("mlp_in", 1)) is None
    with pytest.raises(ValueError, match="only resid_pre"):
        with spliced(gpt2.model._module, gpt2.arch, Location("head_z", 1, 0), lambda a: a):
            pass


def test_corpus_windows_keep_the_special_prefix_and_the_budget():
    rows = [[2, 5, 6, 7, 8, 9], [10, 11], [12]]
    assert cut(rows, 4, {2}) == [[2, 5, 6, 7], [2, 8, 9], [10, 11]]  # [12] scores nothing
    assert take([[1, 2, 3], [4, 5, 6], [7, 8]], 5) == [[1, 2, 3], [4, 5]]


SPEC = """
model tiny {
  source zoo "tiny-ioi"
}
vocab names = ["Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma"]
vocab places = ["store", "park", "school", "garden", "station", "office"]
task ioi {
  var io in names
  var s in names where s != io
  var place in places
  template "When {{io}} and {{s}} went to the {{place}}, {{s}} gave a drink to"
  answer " {{io}}" against " {{s}}"
  counterfactual resample io, s
  position s2 = token of s occurrence 2
  position end = last
  attributes io, s
  split by place: train 0.5, test 0.5
  samples 48 seed 0
}
sae good {
  source zoo "tiny-ioi/topk-k32/resid_post.1"
}
sae weak {
  source zoo "tiny-ioi/weak/resid_post.1"
}
eval e {
  model tiny
  task ioi
  locate {
    method attribution
    components resid
    layers 1
    positions end
    select top 1
  }
  saes good, weak reconstruct direct
  score sufficiency, explained_variance, SCORE
  CORPUS
  report "out" as json
}
"""


def _write(tmp_path, score: str, corpus: str = "") -> str:
    path = tmp_path / "t.sage"
    path.write_text(SPEC.replace("SCORE", score).replace("CORPUS", corpus))
    return str(path)


def test_end_to_end_on_tiny_ioi_and_the_score_nodes_keep_their_keys(tmp_path):
    from runtime.execute.progress import Reporter
    from runtime.execute.run import run_spec
    from runtime.store.results import load
    from sagec import load_spec
    from sagec.lower import lower

    (tmp_path / "corpus.txt").write_text("When Mary and John went to the park, John gave a drink to Mary\n\nTom went to the school\n")
    plain = lower(load_spec(_write(tmp_path, "l0")))
    spec = load_spec(_write(tmp_path, "ce_loss_score, kl_div_score, l0"))
    texted = lower(spec)
    keys = lambda plan: {n.id: n.key for n in plan.nodes if n.kind != "report"}  # noqa: E731
    assert keys(plain).items() <= keys(texted).items()  # every other node as it was
    assert {n.id for n in texted.nodes if n.kind in ("corpus", "text")} == {"corpus[e]", "text[e/good]", "text[e/weak]"}

    run = run_spec(spec, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", reporter=Reporter("quiet"))
    results = load(run.results["e"])
    corpus = results["text"]["corpus"]
    assert corpus["source"] == "zoo" and corpus["name"] == "zoo corpus of tiny-ioi" and corpus["tokens"] > 1000
    good, weak = (results["text"]["saes"][n]["scores"] for n in ("good", "weak"))
    assert good["ce_loss_score"]["value"] > 0.8 and good["kl_div_score"]["value"] > 0.8
    assert weak["ce_loss_score"]["value"] < good["ce_loss_score"]["value"]
    assert weak["explained_variance"]["value"] < good["explained_variance"]["value"]
    assert good["l0"]["value"] == pytest.approx(32)  # TopK k=32 on every token
    assert good["ce_loss_score"]["ci95"][0] <= good["ce_loss_score"]["value"] <= good["ce_loss_score"]["ci95"][1]

    from runtime.report.html import render
    from runtime.report.saebench import envelopes

    exported = next(e for e in envelopes(results, 0).values() if e["sae_cfg_dict"]["name"] == "good")
    assert exported["eval_result_metrics"]["model_performance_preservation"]["ce_loss_score"] == good["ce_loss_score"]["value"]
    assert exported["eval_result_metrics"]["model_behavior_preservation"]["kl_div_score_ci95_low"] == good["kl_div_score"]["ci95"][0]
    assert exported["eval_result_metrics"]["token_stats"]["total_tokens_eval_reconstruction"] == corpus["scored_tokens"]

    results["text"]["saes"]["weak"] = {**results["text"]["saes"]["weak"], "scores": None, "reason": "planted reason"}
    page = render(results)
    assert "Loss recovered on text" in page and "zoo corpus of tiny-ioi" in page and "planted reason" in page

    filed = load_spec(_write(tmp_path, "ce_loss_score", 'corpus "corpus.txt"'))
    run = run_spec(filed, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out2", reporter=Reporter("quiet"))
    corpus = json.loads(run.results["e"].read_text())["text"]["corpus"]
    assert corpus["source"] == "file" and corpus["name"] == "file corpus.txt" and corpus["texts"] == 2
    assert corpus["tokens"] == 15 + 5 and corpus["scored_tokens"] == 14 + 4  # words and the comma; no special tokens
    assert not math.isnan(json.loads(run.results["e"].read_text())["text"]["saes"]["good"]["scores"]["kl_div_score"]["value"])


def _diagnostics(path: str) -> str:
    from sagec import load_spec
    from sagec.diagnostics import SpecError

    with pytest.raises(SpecError) as e:
        load_spec(path)
    return str(e.value)


def test_the_checker_knows_the_text_metrics_and_the_corpus(tmp_path):
    assert "did you mean 'ce_loss_score'?" in _diagnostics(_write(tmp_path, "ce_los_score"))
    assert "corpus: no such file" in _diagnostics(_write(tmp_path, "kl_div_score", 'corpus "missing.txt"'))
    (tmp_path / "c.txt").write_text("a text\n")
    message = _diagnostics(_write(tmp_path, "l0", 'corpus "c.txt"'))
    assert "nothing reads this corpus" in message and "t.sage:" in message


def test_fmt_keeps_the_corpus_line(tmp_path):
    from sagec.fmt import format_source

    (tmp_path / "c.txt").write_text("a text\n")
    text = open(_write(tmp_path, "ce_loss_score", 'corpus "c.txt"')).read()
    assert 'corpus "c.txt"' in format_source(text)


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_replaying_the_layers_below_the_hook_changes_no_number(family, tmp_path, monkeypatch):
    """The spliced and ablated forwards replay the clean forward's output of the layers below the
    hook instead of recomputing them (runtime/model/splice.skipped_below)."""
    from contextlib import nullcontext

    loaded = _loaded(family, tmp_path)
    sae = _sae(loaded, "half", Location("resid_post", 2))
    replayed = text_pass.measure(loaded, sae, WINDOWS).estimates()
    monkeypatch.setattr(text_pass, "skipped_below", lambda *a: nullcontext())
    recomputed = text_pass.measure(loaded, sae, WINDOWS).estimates()
    for name, e in recomputed.items():
        assert replayed[name].value == pytest.approx(e.value, rel=1e-6, abs=1e-9), name


def test_the_same_numbers_as_sae_lens_own_evals(gpt2):
    """sae_lens's `get_recons_loss` (sae_lens/evals.py) on the same weights as a TransformerLens
    model, with the first token (BOS) as its ignored special token: the clean and spliced
    cross-entropies and the spliced KL agree token for token. (Its ablation also zeroes BOS,
    where sagec neither splices nor ablates, so the ablated ones differ by design.)"""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.evals import get_recons_loss
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.training.activation_scaler import ActivationScaler
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    hf = gpt2.model._module
    c = hf.config
    cfg = HookedTransformerConfig(n_layers=c.n_layer, d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head, d_mlp=4 * c.n_embd,
                                  d_vocab=c.vocab_size, n_ctx=c.n_positions, act_fn="gelu_new", normalization_type="LN", default_prepend_bos=False)
    tl = HookedTransformer(cfg)
    tl.load_state_dict(convert_gpt2_weights(hf, cfg), strict=False)
    tl.eval()
    torch.manual_seed(1)
    sae = StandardSAE(StandardSAEConfig(d_in=c.n_embd, d_sae=64, metadata=SAEMetadata(hook_name="blocks.1.hook_resid_post")))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.3)
    windows = [[2, 4, 5, 6, 7, 8, 9], [2, 11, 12, 13, 14, 15, 16], [2, 17, 18, 19, 20, 4, 5]]  # BOS first, nowhere else
    theirs = get_recons_loss(sae.eval(), tl, ActivationScaler(), torch.tensor(windows), compute_kl=True, compute_ce_loss=True, ignore_tokens=[2])
    keep = torch.tensor(windows) != 2
    mean = {k: float(v[keep[:, : v.shape[1]]].mean()) for k, v in theirs.items()}  # as get_downstream_reconstruction_metrics masks
    ours = text_pass.measure(gpt2, SimpleNamespace(sae=sae, preprocessing=NONE, d_in=c.n_embd, d_sae=64, location=Location("resid_post", 1)),
                             windows).estimates()
    for name in ("ce_loss_without_sae", "ce_loss_with_sae", "kl_div_with_sae"):
        assert ours[name].value == pytest.approx(mean[name], rel=1e-4), name
    assert abs(mean["kl_div_with_sae"]) > 1e-3  # the SAE does change the model
