"""Transcoders and every sae_lens architecture through the whole score pass.

A transcoder built from the model's own MLP is the known answer: in a GPT-2 whose MLP uses ReLU,
W_enc = c_fc, W_dec = c_proj (with their biases) reproduce the MLP exactly, so read at mlp_in L
(the trace collects it beside every mlp_out L) it reconstructs mlp_out L perfectly: explained
variance, sufficiency and necessity are 1, and spliced in at every token of a text (the text
metrics, which read the MLP's input there too) so are ce_loss_score and kl_div_score. In the same run one SAE of every other sae_lens
architecture (tests/test_sae_architectures.py builds them) is scored at the same layer, each
through sae_lens's own encode and decode, and must produce numbers; so must one of each with
float16 weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from runtime.execute.progress import Reporter
from runtime.execute.run import run_spec
from sagec import load_spec
from tests import tiny_families
from tests.test_sae_architectures import BUILDERS, build
from tests.tiny_pipeline import make_project

D = 32  # the tiny GPT-2's width


def relu_gpt2(folder: Path) -> None:
    """tests/tiny_families' GPT-2 with a ReLU MLP."""
    config_cls, model_cls, kwargs = tiny_families.FAMILIES["gpt2"]
    torch.manual_seed(0)
    model = model_cls(config_cls(**kwargs, activation_function="relu")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith(".bias"):
                p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(folder)
    tiny_families.tokenizer().save_pretrained(folder)


def mlp_transcoder(model_folder: Path, layer: int, out: Path, d: int = D) -> None:
    """A sae_lens Transcoder that is layer `layer`'s MLP: relu(x @ c_fc + b_fc) @ c_proj + b_proj."""
    from sae_lens import Transcoder, TranscoderConfig
    from transformers import AutoModelForCausalLM

    mlp = AutoModelForCausalLM.from_pretrained(model_folder).transformer.h[layer].mlp
    d_mlp = mlp.c_fc.weight.shape[1]
    cfg = TranscoderConfig(d_in=d, d_sae=d_mlp, d_out=d, apply_b_dec_to_input=False)
    cfg.metadata.hook_name, cfg.metadata.hook_name_out = f"blocks.{layer}.hook_mlp_in", f"blocks.{layer}.hook_mlp_out"
    t = Transcoder(cfg)
    with torch.no_grad():  # GPT-2's Conv1D stores (in, out), as sae_lens's W_enc (d_in, d_sae) and W_dec (d_sae, d_out)
        t.W_enc.copy_(mlp.c_fc.weight)
        t.b_enc.copy_(mlp.c_fc.bias)
        t.W_dec.copy_(mlp.c_proj.weight)
        t.b_dec.copy_(mlp.c_proj.bias)
    t.save_model(str(out))


EVALS = """
sae exact[l] for l in 0..2 {
  source path "exact{{l}}"
}
KINDS
eval transcoders {
  model tiny
  task ioi
  locate { method attribution  components mlp  positions end  select top 3 }
  ground_truth { method mean  validate sufficiency, necessity, control }
  saes exact[*], ALL
  score sufficiency, necessity, control, interpretability, alignment, explained_variance, l0, ce_loss_score, kl_div_score
  corpus "corpus.txt"
  report "runs/transcoders" as json
}
"""
HALF = ("standard", "jumprelu", "transcoder")


def sae_name(kind: str) -> str:
    return kind.replace("_", "")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("transcoders")
    relu_gpt2(folder / "model")
    spec = make_project(folder)
    for layer in range(3):
        mlp_transcoder(folder / "model", layer, folder / f"exact{layer}")
    blocks = []
    for kind in BUILDERS:
        build(kind, folder / kind, seed=1, d=D)
        blocks.append(f'sae {sae_name(kind)} {{\n  source path "{kind}"\n}}')
    for kind in HALF:
        build(kind, folder / f"{kind}_f16", seed=1, d=D, dtype=torch.float16)
        blocks.append(f'sae {sae_name(kind)}16 {{\n  source path "{kind}_f16"\n}}')
    names = [sae_name(k) for k in BUILDERS] + [f"{sae_name(k)}16" for k in HALF]
    text = spec.read_text()
    spec.write_text(text[: text.index("sae res[l]")] + EVALS.replace("KINDS", "\n".join(blocks)).replace("ALL", ", ".join(names)))
    (folder / "corpus.txt").write_text("When Mary and John went to the store , John gave a drink to Mary\n\n"
                                       "Then Alice and Bob had lot of fun at school . Bob was in city\n")
    summary = run_spec(load_spec(str(spec)), cache_dir=folder / "cache", out_dir=folder / "out", reporter=Reporter("quiet"))
    return json.loads(summary.results["transcoders"].read_text())


def value(entry: dict, *path: str) -> float:
    for p in path:
        entry = entry[p]
    return entry["value"]


def test_a_transcoder_that_is_the_mlp_reconstructs_mlp_out_exactly(results):
    located = results["ground_truth"]["sites"]
    assert located and all(s.startswith("mlp_out") for s in located)
    scored = 0
    for layer in range(3):
        entry = results["saes"][f"exact[{layer}]"]
        assert entry["sae"]["architecture"] == "transcoder" and entry["sae"]["input_location"] == f"mlp_in {layer}"
        assert entry["sae"]["location"] == f"mlp_out {layer}"
        mine = [s for s in located if s.startswith(f"mlp_out {layer}@")]
        assert entry["sites"] == mine  # the transcoder serves its own layer's MLP output, and only that
        if not mine:
            assert entry["scores"] is None
            continue
        scored += 1
        assert set(entry["variant_per_site"].values()) == {"direct"}
        for metric in ("sufficiency", "necessity"):
            assert value(entry["scores"], metric) == pytest.approx(1.0, abs=1e-4), (layer, metric)
        for site in mine:
            assert value(entry["scores"]["per_site"][site], "explained_variance") == pytest.approx(1.0, abs=1e-5)
    assert scored


def test_a_suite_of_exact_transcoders_reads_each_one_s_mlp_input(results):
    """The family exact[*] as a suite: every located MLP output reconstructed by the transcoder of
    its layer, from that layer's MLP input, all at once: exactly the model."""
    suite = results["suites"]["exact"]
    assert suite["sites"] and all(s.startswith("mlp_out") for s in suite["sites"])
    for metric in ("sufficiency", "necessity"):
        assert value(suite["scores"], metric) == pytest.approx(1.0, abs=1e-4), metric
    for site in suite["sites"]:
        assert value(suite["scores"]["per_site"][site], "explained_variance") == pytest.approx(1.0, abs=1e-5), site


def test_every_architecture_scores_through_the_pass(results):
    located = results["ground_truth"]["sites"]
    assert any(s.startswith("mlp_out 1@") for s in located), located
    for kind in BUILDERS:
        for name in (sae_name(kind), f"{sae_name(kind)}16") if kind in HALF else (sae_name(kind),):
            entry = results["saes"][name]
            assert entry["sae"]["architecture"] == BUILDERS[kind][2], name
            assert entry["scores"] is not None, (name, entry.get("reason"))
            assert any(s.startswith("mlp_out 1@") for s in entry["sites"]), (name, entry["sites"])
            variants = set(entry["variant_per_site"].values())
            assert variants == ({"direct"} if "transcoder" in kind else {"residual"}), (name, variants)
            numbers = [value(entry["scores"], m) for m in ("sufficiency", "necessity")]
            numbers += [value(entry["scores"]["per_site"][s], "explained_variance") for s in entry["sites"]]
            assert all(isinstance(v, float) and v == v for v in numbers), (name, numbers)  # numbers, not null or NaN
            assert entry["scores"]["control"], name
            if name.endswith("16"):
                assert entry["sae"]["weights_dtype"] == "float16"


def test_spliced_on_text_the_exact_transcoder_recovers_all_the_loss(results):
    text = results["text"]["saes"]
    for layer in range(3):
        scores = text[f"exact[{layer}]"]["scores"]
        for metric in ("ce_loss_score", "kl_div_score", "explained_variance"):
            assert scores[metric]["value"] == pytest.approx(1.0, abs=1e-4), (layer, metric)
    for kind in BUILDERS:
        scores = text[sae_name(kind)]["scores"]
        v = scores["ce_loss_score"]["value"]
        assert v == v and abs(v - 1) > 1e-3, (kind, v)  # a number, and random weights change the loss


TINY_IOI = """
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
  position end = last
  attributes io, s
  split by place: train 0.5, test 0.5
  samples 48 seed 0
}
sae mlp[l] for l in 0..2 {
  source path "mlp{{l}}"
}
sae zoo_topk {
  source zoo "tiny-ioi/topk-k8/resid_post.1"
}
KINDS
eval e {
  model tiny
  task ioi
  locate { method attribution  components mlp  positions end  select top 3 }
  saes mlp[*], zoo_topk, ALL
  score sufficiency, necessity, explained_variance
  report "out" as json
}
"""


def fit_decoder(model_folder: Path, folder: Path, layer: int) -> None:
    """Refit a copied MLP transcoder's decoder by least squares on the MLP's own outputs over
    IOI sentences, so ReLU in GELU's place costs little."""
    import itertools

    from sae_lens import SAE
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(model_folder).eval()
    tok = AutoTokenizer.from_pretrained(model_folder)
    names, places = ["Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma"], ["store", "park", "school", "garden", "station", "office"]
    texts = [f"When {a} and {b} went to the {p}, {b} gave a drink to" for a, b in itertools.permutations(names, 2) for p in places]
    got = {}
    mlp = hf.transformer.h[layer].mlp
    handle = mlp.register_forward_hook(lambda m, args, out: got.update(x=args[0].flatten(0, 1), y=out.flatten(0, 1)))
    with torch.no_grad():
        hf(**tok(texts, return_tensors="pt", padding=True))
    handle.remove()
    t = SAE.load_from_disk(str(folder))
    with torch.no_grad():
        f = torch.cat([t.encode(got["x"]), torch.ones(len(got["x"]), 1)], dim=1)
        solution = torch.linalg.lstsq(f, got["y"]).solution
        t.W_dec.copy_(solution[:-1])
        t.b_dec.copy_(solution[-1])
    t.save_model(str(folder))


def test_on_tiny_ioi_a_transcoder_from_its_own_mlp_scores_beside_a_residual_sae(tmp_path):
    """tiny-ioi's MLPs use GELU, which no sae_lens transcoder (ReLU or JumpReLU) reproduces, so
    the transcoder built from each MLP (its encoder c_fc, ReLU in GELU's place, the decoder
    refit to the MLP's outputs) is close, not exact: it is scored direct at its own layer's MLP
    output, a residual SAE at resid_post 1 beside it, and a (random) fixture of every other
    architecture at layer 1."""
    import runtime.zoo  # noqa: F401  (registers the zoo)
    from runtime.zoo import resolve_model

    for layer in range(3):
        mlp_transcoder(resolve_model("tiny-ioi"), layer, tmp_path / f"mlp{layer}", d=64)
        fit_decoder(resolve_model("tiny-ioi"), tmp_path / f"mlp{layer}", layer)
    blocks = []
    for kind in BUILDERS:
        build(kind, tmp_path / kind, seed=2, d=64)
        blocks.append(f'sae {sae_name(kind)} {{\n  source path "{kind}"\n}}')
    names = ", ".join(sae_name(k) for k in BUILDERS)
    (tmp_path / "t.sage").write_text(TINY_IOI.replace("KINDS", "\n".join(blocks)).replace("ALL", names))
    summary = run_spec(load_spec(str(tmp_path / "t.sage")), cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", reporter=Reporter("quiet"))
    results = json.loads(summary.results["e"].read_text())
    located = results["ground_truth"]["sites"]
    assert sorted(located) == [f"mlp_out {l}@end" for l in range(3)]
    for layer in range(3):
        entry = results["saes"][f"mlp[{layer}]"]
        assert entry["sites"] == [f"mlp_out {layer}@end"] and entry["variant_per_site"] == {f"mlp_out {layer}@end": "direct"}
        assert value(entry["scores"]["per_site"][f"mlp_out {layer}@end"], "explained_variance") > 0.9, layer
        assert isinstance(value(entry["scores"], "sufficiency"), float)
    assert results["saes"]["zoo_topk"]["variant_per_site"] == {"mlp_out 1@end": "residual"}
    for kind in BUILDERS:
        entry = results["saes"][sae_name(kind)]
        assert entry["sae"]["architecture"] == BUILDERS[kind][2]
        assert entry["variant_per_site"] == {"mlp_out 1@end": "direct" if "transcoder" in kind else "residual"}, kind
        numbers = [value(entry["scores"], m) for m in ("sufficiency", "necessity")] + [value(entry["scores"]["per_site"]["mlp_out 1@end"], "explained_variance")]
        assert all(isinstance(v, float) and v == v for v in numbers), (kind, numbers)


def test_the_report_says_where_a_transcoder_reads_and_in_what_its_weights_are_stored(results):
    from runtime.report.html import render

    page = render(results)
    assert "mlp_in 1 → mlp_out 1" in page and "float16 weights, computed in float32" in page
