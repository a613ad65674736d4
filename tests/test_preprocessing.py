"""TransformerLens preprocessing (runtime/saes/preprocessing.py, METHOD.md section 9): what each
option means at each location, the centring transform through every reconstruction, `accept
preprocessing` in the language, and the science: an SAE trained on a centred stream scores better
with the transform than without."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from runtime.execute.progress import Reporter
from runtime.execute.run import run_spec
from runtime.saes import preprocessing as P
from runtime.saes.loading import load_sae
from runtime.sage import reconstruct
from sagec import load_spec
from sagec.check import check_text
from sagec.diagnostics import SpecError
from sagec.fmt import format_source as format_text
from sagec.locations import Location
from sagec.lower import lower
from sagec.spec import Origin, Sae

RESID = Location("resid_pre", 3)


def test_each_option_at_each_location():
    centre = {"center_writing_weights": True}
    assert P.preprocessing_for(centre, RESID, "gpt2").centre
    assert P.preprocessing_for(centre, Location("head", 2, 1), "gpt_neox").centre  # a head's output is a write
    assert not P.preprocessing_for(centre, Location("head_z", 2, 1), "gpt2").centre  # z is not
    # RMSNorm models: TransformerLens leaves their writing weights alone (LN/LNPre only).
    for family in ("llama", "gemma2"):
        prep = P.preprocessing_for(centre, RESID, family)
        assert not prep.centre and prep.needs_nothing == ("center_writing_weights",)
    everything = {"fold_ln": True, "center_unembed": True, "center_writing_weights": True, "fold_value_biases": True, "dtype": "float32", "refactor_factored_attn_matrices": False}
    prep = P.preprocessing_for(everything, Location("mlp_out", 1), "gpt2")
    assert prep.centre and set(prep.needs_nothing) == {"fold_ln", "center_unembed", "fold_value_biases", "dtype", "refactor_factored_attn_matrices"}
    assert dict(prep.options) == everything and prep.accepted == ()
    with pytest.raises(P.UnreproducibleOption, match="fold_value_biases=True changes each head's z"):
        P.preprocessing_for({"fold_value_biases": True}, Location("head_z", 1, 0), "gpt2")
    with pytest.raises(P.UnreproducibleOption, match="refactor_factored_attn_matrices=True changes each head's output"):
        P.preprocessing_for({"refactor_factored_attn_matrices": True}, Location("head", 1, 0), "gpt2")
    with pytest.raises(P.UnreproducibleOption, match="first_n_layers=4 is a TransformerLens option sagec cannot reproduce"):
        P.preprocessing_for({"first_n_layers": 4}, RESID, "gpt2")
    accepted = P.preprocessing_for({"first_n_layers": 4, "center_writing_weights": True}, RESID, "gpt2", accepted=("first_n_layers",))
    assert accepted.accepted == ("first_n_layers",) and accepted.centre
    assert P.preprocessing_for(None, RESID, "gpt2") == P.NONE
    assert accepted.to_json() == {"transform": "centre", "description": P.DESCRIPTIONS["centre"], "options": {"center_writing_weights": True, "first_n_layers": 4},
                                  "needs_nothing": [], "accepted": ["first_n_layers"]}


class Centred:
    """An SAE trained on centred inputs, used on raw ones as TransformerLens's model would feed it:
    S'(x) = S(x - mean x) + mean x, written out by hand."""

    def __init__(self, sae):
        self.sae = sae

    def __call__(self, x):
        mu = x.mean(-1, keepdim=True)
        return self.sae.decode(self.sae.encode(x - mu)) + mu, self.sae.encode(x - mu)


@pytest.fixture
def sae():
    torch.manual_seed(0)
    s = StandardSAE(StandardSAEConfig(d_in=16, d_sae=48))
    with torch.no_grad():
        s.b_enc.normal_()
        s.b_dec.normal_()
    return s


def test_the_wrappers_are_the_centred_sae_in_each_reconstruction(sae):
    prep = P.Preprocessing(centre=True)
    other = StandardSAE(StandardSAEConfig(d_in=16, d_sae=48))
    r_before, c, extra = torch.randn(3, 5, 16) + 3.0 * torch.randn(3, 5, 1)  # streams with large per-token means
    r_after = r_before + c + extra
    S = Centred(sae)
    with torch.no_grad():
        c_hat, f = P.direct(sae, prep, c)
        assert torch.allclose(c_hat, S(c)[0], atol=1e-5) and torch.equal(f.to_dense(), S(c)[1].reshape(-1, 48))  # latents by row
        c_hat, f = P.residual(sae, prep, r_after, c)  # S'(r) - S'(r - c)
        assert torch.allclose(c_hat, S(r_after)[0] - S(r_after - c)[0], atol=1e-5)
        assert torch.allclose(f.to_dense(), (S(r_after)[1] - S(r_after - c)[1]).reshape(-1, 48), atol=1e-6)
        # residual_pair: c + (S'_after(r_after) - r_after) - (S_before(r_before) - r_before), the
        # partner uncentred
        c_hat, f = P.residual_pair(other, P.NONE, sae, prep, r_before, r_after, c)
        expected = c + (S(r_after)[0] - r_after) - (other.decode(other.encode(r_before)) - r_before)
        assert torch.allclose(c_hat, expected, atol=1e-5) and f.shape[-1] == 96
        # without the transform they are reconstruct.* themselves
        assert torch.equal(P.residual(sae, P.NONE, r_after, c)[0], reconstruct.residual(sae, r_after, c)[0])


def test_centring_loses_nothing_a_lossless_centred_sae_keeps(sae):
    """A lossless SAE on the centred subspace (an orthonormal basis of it and its negative, ReLU)
    reconstructs every raw vector exactly through the transform, and loses its mean without it."""
    d = 16
    basis = torch.linalg.qr(torch.eye(d) - 1.0 / d)[0][:, : d - 1]  # orthonormal, orthogonal to 1
    lossless = StandardSAE(StandardSAEConfig(d_in=d, d_sae=2 * (d - 1)))
    with torch.no_grad():
        lossless.W_enc.copy_(torch.cat([basis, -basis], dim=1))
        lossless.W_dec.copy_(torch.cat([basis, -basis], dim=1).T)
        lossless.b_enc.zero_()
        lossless.b_dec.zero_()
    x = torch.randn(4, d) + 5.0
    with torch.no_grad():
        assert torch.allclose(P.direct(lossless, P.Preprocessing(centre=True), x)[0], x, atol=1e-4)
        assert torch.allclose(P.direct(lossless, P.NONE, x)[0], x - x.mean(-1, keepdim=True), atol=1e-4)


# --- the language -----------------------------------------------------------------------------

SAE_BLOCK = """\
sae res {
  source path "SAE"
  accept   preprocessing   first_n_layers,fold_value_biases
}
"""


def test_accept_preprocessing_parses_checks_formats_and_keys(tmp_path):
    (tmp_path / "sae").mkdir()
    text = SAE_BLOCK.replace("SAE", str(tmp_path / "sae"))
    spec = check_text(text, str(tmp_path / "s.sage"))
    assert spec.sae("res").accept_preprocessing == ("first_n_layers", "fold_value_biases")
    formatted = format_text(text)
    assert "  accept preprocessing first_n_layers, fold_value_biases\n" in formatted and format_text(formatted) == formatted
    assert check_text(formatted, str(tmp_path / "s.sage")) == spec
    for bad, message in (("fold_value_bias", "unknown TransformerLens option 'fold_value_bias'"),
                         ("center_writing_weights", "'center_writing_weights' needs no accepting: sagec reproduces it"),
                         ("fold_ln, fold_ln", "'fold_ln' is listed twice")):
        with pytest.raises(SpecError, match=message):
            check_text(text.replace("first_n_layers,fold_value_biases", bad), str(tmp_path / "s.sage"))


def test_accepting_changes_the_score_nodes_key(tmp_path):
    import tests.tiny_pipeline as tiny

    spec_path = tiny.make_project(tmp_path, "res[1]")
    plain = lower(load_spec(str(spec_path)))
    spec_path.write_text(spec_path.read_text().replace('source path "sae{{l}}"', 'source path "sae{{l}}"\n  accept preprocessing first_n_layers'))
    accepting = lower(load_spec(str(spec_path)))
    assert plain.node("score[tiny_gt/res[1]]").key != accepting.node("score[tiny_gt/res[1]]").key
    assert plain.node("trace[tiny/ioi]").key == accepting.node("trace[tiny/ioi]").key


def test_an_unreproducible_option_is_refused_unless_accepted(tmp_path):
    cfg = StandardSAEConfig(d_in=32, d_sae=64)
    cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    cfg.metadata.model_from_pretrained_kwargs = {"first_n_layers": 2, "fold_ln": True}
    with pytest.warns(UserWarning, match="non-empty model_from_pretrained_kwargs"):  # sae_lens's own, on construction
        StandardSAE(cfg).save_model(str(tmp_path / "sae"))
    from runtime.model.architectures import GPT2, Architecture

    arch = Architecture(family=GPT2, n_layers=3, n_heads=4, d_model=32, d_head=8, vocab_size=50, parallel_residual=False)
    at = Origin("x.sage", 4, 1)
    with pytest.raises(SpecError) as e:
        load_sae(Sae("res", "path", str(tmp_path / "sae"), None, None, None, at), arch)
    (d,) = e.value.diagnostics
    assert "first_n_layers=2 is a TransformerLens option sagec cannot reproduce" in d.message and d.line == 4
    assert d.hint == "to evaluate it on the model's own activations all the same, write `accept preprocessing first_n_layers` in its sae block"
    loaded = load_sae(Sae("res", "path", str(tmp_path / "sae"), None, None, None, at, ("first_n_layers",)), arch)
    assert loaded.preprocessing.accepted == ("first_n_layers",) and loaded.preprocessing.needs_nothing == ("fold_ln",)


# --- the science ------------------------------------------------------------------------------

OFFSET = 10.0  # per-position mean added to the stream (LayerNorm makes it invisible to the model)

SPEC = """\
model tiny {
  source path "model"
}
TASK
sae trained_centred {
  source path "centred"
}
sae same_weights_fed_raw {
  source path "raw"
}
eval centring {
  model tiny
  task ioi
  locate { method attribution  components resid  layers 1  positions s2, end  select top 2 }
  ground_truth { method mean  validate sufficiency }
  saes trained_centred, same_weights_fed_raw reconstruct direct
  score sufficiency, explained_variance
  report "out" as json
}
"""


@pytest.mark.slow
def test_an_sae_trained_on_a_centred_stream_scores_better_with_the_transform(tmp_path):
    """The zoo's tiny-ioi (which solves IOI) with a per-position constant added to every
    coordinate of its position embeddings: LayerNorm removes it, so the model computes exactly
    what it did, but its residual stream now carries a large per-token mean, as HF GPT-2's does
    beside TransformerLens's centred one. An SAE trained by sae_lens on the centred stream at
    resid_post 1 is scored twice in one run: once with its config recording
    center_writing_weights (sagec centres its input and adds the mean back), once the same weights
    without it. With the transform it reconstructs the stream and recovers the logit difference;
    fed the raw stream, its latents are wrong."""
    from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runtime.task.prompts import build_prompt_set
    from runtime.zoo.models import tiny_folder

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_folder("tiny-ioi")).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder("tiny-ioi"))
    probe = tokenizer("When Mary and John went to the store, John gave a drink to", return_tensors="pt").input_ids
    with torch.no_grad():
        before = model(probe).logits
        model.transformer.wpe.weight += OFFSET * torch.randn(model.transformer.wpe.weight.shape[0], 1, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(model(probe).logits, before, atol=1e-3)  # the model is unchanged
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")

    text = (Path(__file__).resolve().parent.parent / "specs" / "ioi-tiny.sage").read_text()
    task = text[text.index("vocab names") : text.index("sae l1[l]")].replace("samples 512 seed 0", "samples 128 seed 0")
    (tmp_path / "spec.sage").write_text(SPEC.replace("TASK", task))
    (tmp_path / "centred").mkdir()
    (tmp_path / "raw").mkdir()
    spec = load_spec(str(tmp_path / "spec.sage"))

    # sae_lens's own trainer on the centred stream at resid_post 1 of the clean prompts
    prompts = build_prompt_set(spec.task("ioi"), tokenizer).prompts
    by_length: dict[int, list] = {}
    for p in prompts:
        by_length.setdefault(len(p.ids), []).append(p.ids)
    with torch.no_grad():
        acts = torch.cat([model(torch.tensor(rows), output_hidden_states=True).hidden_states[2].flatten(0, 1) for rows in by_length.values()])
    acts = acts - acts.mean(-1, keepdim=True)

    def batches(bs=256):
        g = torch.Generator().manual_seed(0)
        while True:
            order = torch.randperm(len(acts), generator=g)
            for i in range(0, len(acts) - bs + 1, bs):
                yield acts[order[i : i + bs]]

    trainer_cfg = SAETrainerConfig(total_training_samples=150 * 256, train_batch_size_samples=256, lr=3e-3, lr_end=3e-3, device="cpu",
                                   logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=5)
    trained = SAETrainer(cfg=trainer_cfg, sae=TopKTrainingSAE(TopKTrainingSAEConfig(d_in=64, d_sae=128, k=8)), data_provider=batches()).fit()
    trained.cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    for folder, options in (("centred", {"center_writing_weights": True}), ("raw", None)):
        trained.cfg.metadata.model_from_pretrained_kwargs = options
        trained.save_inference_model(str(tmp_path / folder))

    summary = run_spec(spec, cache_dir=tmp_path / "cache", reporter=Reporter("quiet"))
    results = json.loads(summary.results["centring"].read_text())
    good, bad = results["saes"]["trained_centred"], results["saes"]["same_weights_fed_raw"]
    assert good["preprocessing"]["transform"] == "centre" and bad["preprocessing"]["transform"] == "none"
    assert good["preprocessing"]["options"] == {"center_writing_weights": True}
    assert good["sites"] == bad["sites"] and len(good["sites"]) == 2
    for site in good["sites"]:
        ev_good = good["scores"]["per_site"][site]["explained_variance"]
        ev_bad = bad["scores"]["per_site"][site]["explained_variance"]
        assert ev_good["value"] > 0.8 and ev_good["ci95"][0] > ev_bad["ci95"][1], (site, ev_good, ev_bad)
    recovered_good, recovered_bad = good["scores"]["logit_diff_recovered"], bad["scores"]["logit_diff_recovered"]
    assert recovered_good["value"] > 0.9 and recovered_good["value"] > recovered_bad["value"] + 0.1, (recovered_good, recovered_bad)
    assert abs(good["scores"]["sufficiency"]["value"] - 1) < abs(bad["scores"]["sufficiency"]["value"] - 1)
