"""Gemma-3-270M, the zoo's second real model: its location table on the real weights, that it
solves IOI, its lazily built SAEs, and the Gemma Scope 2 SAEs a user with a hub swaps in.

The tests marked slow build the real model into the user cache on first use (download, assembly
and dequantisation: about a minute; later loads take seconds). The tiny random Gemma-3's
identities are in tests/test_architectures.py and tests/test_forward.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

import sagec
from runtime.model.architectures import Architecture, architecture
from runtime.model.forward import pad_left, patched_logits
from runtime.model.locations import access
from runtime.model.sources import load_model, model_architecture
from runtime.saes.loading import SaeDescription, check_fits, config_location
from runtime.task.metric import task_metric
from runtime.task.prompts import build_prompt_set
from runtime.zoo import gemma3
from runtime.zoo import saes as zoo_saes
from sagec.diagnostics import SpecError
from sagec.locations import Location
from sagec.spec import Model, Origin, Sae

SPEC = Path(__file__).resolve().parent.parent / "specs" / "ioi-gemma3.sage"
MODEL = Model("gemma", "zoo", gemma3.NAME, "float32", "cpu", None, 32, Origin("t.sage", 1, 1))


@pytest.fixture(scope="module")
def loaded():
    torch.set_num_threads(2)
    return load_model(MODEL)


@pytest.fixture(scope="module")
def ioi(loaded):
    task = dataclasses.replace(sagec.load_spec(str(SPEC)).tasks[0], samples=64)
    return build_prompt_set(task, loaded.tokenizer).prompts


@pytest.mark.slow
def test_gemma3_is_the_real_model_with_its_identity(loaded):
    assert loaded.identity["gguf_sha256"] == gemma3.MODEL.sha256 and loaded.identity["weights_sha256"]
    assert architecture(loaded.model.config) == loaded.arch == model_architecture(MODEL)  # the embedded config is right
    assert (loaded.arch.family.name, loaded.arch.d_model, loaded.arch.n_heads, loaded.arch.d_head) == ("gemma3", 640, 4, 256)
    assert loaded.tokenizer("Paris").input_ids[0] == loaded.tokenizer.bos_token_id == 2


@pytest.mark.slow
def test_gemma3_solves_ioi(loaded, ioi):
    """The prompts of specs/ioi-gemma3.sage: logit(IO) - logit(S) > 0 on more than 90% of them."""
    logits = patched_logits(loaded, [p.ids for p in ioi], [])
    metric = task_metric(logits, [p.answer_ids for p in ioi], [p.distractor_ids for p in ioi])
    accuracy = float((metric > 0).float().mean())
    assert accuracy > 0.9 and float(metric.mean()) > 2.0, (accuracy, float(metric.mean()))


@pytest.mark.slow
def test_head_shares_sum_to_the_attention_output_on_the_real_model(loaded, ioi):
    """At layer 11 of the real model, on IOI prompts: the four heads' shares (taken at the
    post-attention norm's input, under its frozen scale) sum to attn_out, and the residual
    identity holds, at every position of a left-padded batch."""
    arch, model = loaded.arch, loaded.model
    batch = pad_left([p.ids for p in ioi[:8]], loaded.tokenizer.pad_token_id)
    mask = batch.attention_mask
    heads = [Location("head", 11, h) for h in range(arch.n_heads)]
    around = [Location(c, 11) for c in ("resid_pre", "attn_out", "mlp_out", "resid_post")]
    with torch.no_grad(), model.trace(batch.input_ids, attention_mask=mask, position_ids=batch.position_ids):
        cap = access(model, arch, [*heads, *around])
    v = cap.values
    attn = v[Location("attn_out", 11)][mask.bool()]
    total = sum(v[h] for h in heads)[mask.bool()]
    scale = attn.abs().max()
    assert scale > 10  # the stream is large here: the tolerance below is relative to it
    torch.testing.assert_close(total, attn, atol=1e-5 * float(scale), rtol=1e-5)
    pre, mlp, post = (v[Location(c, 11)][mask.bool()] for c in ("resid_pre", "mlp_out", "resid_post"))
    torch.testing.assert_close(pre + attn + mlp, post, atol=1e-5 * float(post.abs().max()), rtol=1e-5)
    assert min(float(v[h].abs().max()) for h in heads) > 1e-2 * float(scale)  # every head contributes


# --- Gemma Scope 2, from sae_lens's bundled directory alone ------------------------------------


def describe_gemma_scope_2(sae: Sae, arch: Architecture) -> SaeDescription:
    """What can be known of a Gemma Scope 2 SAE without its files: the release and id checked
    against sae_lens's bundled directory, the hook from sae_lens's own inference of a Gemma 3
    SAE's config from its folder name (the config the loader builds when the repo has no
    config.json), d_sae from the id's width, and d_in as the width at that hook of the model it
    was trained on, which must be the zoo model's upstream."""
    from sae_lens.loading.pretrained_sae_loaders import _infer_gemma_3_raw_cfg_dict
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    entry = get_pretrained_saes_directory()[sae.release]
    folder = entry.saes_map[sae.sae_id]  # KeyError: not in the directory
    raw = _infer_gemma_3_raw_cfg_dict(entry.repo_id, folder)
    assert entry.model == gemma3.UPSTREAM, f"{sae.release} was trained on {entry.model}, not {gemma3.UPSTREAM}"
    hf_hook = raw["hf_hook_point_in"].removesuffix(".output")  # the module whose output it reads
    location, layer, hook = config_location(type("Metadata", (), {"hook_name": hf_hook}), arch.family)
    width = re.search(r"width_(\d+)([km])", sae.sae_id)
    d_sae = int(width.group(1)) * {"k": 1024, "m": 1024 * 1024}[width.group(2)]
    d_in = architecture(gemma3.config()).width(location)
    return SaeDescription(sae.name, "sae_lens", location, layer, False, hook, d_in, d_sae, raw["architecture"],
                          entry.model, (), None, sae.origin)


def commented_scope_saes(tmp_path: Path) -> list[Sae]:
    """The Gemma Scope 2 block commented out in specs/ioi-gemma3.sage, uncommented into a copy of
    the spec and checked like any spec."""
    text = SPEC.read_text()
    block = "\n".join(line[2:] for line in text.splitlines() if re.match(r"^# (sae scope|  source sae_lens|})", line))
    assert block.startswith("sae scope[l]"), block
    (tmp_path / "spec.sage").write_text(text + "\n" + block + "\n")
    return [s for s in sagec.load_spec(str(tmp_path / "spec.sage")).saes if s.name.startswith("scope")]


def test_gemma_scope_2_block_of_the_ioi_spec_resolves_offline_and_fits_the_model(tmp_path, monkeypatch):
    from runtime.model.architectures import LLAMA
    from runtime.saes.loading import check_source

    monkeypatch.setenv("SAGEC_CACHE_DIR", str(tmp_path))  # the model's config without any build
    saes = commented_scope_saes(tmp_path)
    assert [(s.release, s.sae_id) for s in saes] == [("gemma-scope-2-270m-pt-res-all", f"layer_{l}_width_16k_l0_small") for l in (11, 12)]
    arch = model_architecture(MODEL)
    for layer, sae in zip((11, 12), saes):
        check_source(sae)  # the names exist in sae_lens's directory
        described = describe_gemma_scope_2(sae, arch)
        assert (described.location, described.d_in, described.d_sae) == (Location("resid_post", layer), 640, 16384)
        check_fits(described, arch, "gemma")
    # the same SAE on another model's stream is refused, naming both widths
    smol = Architecture(LLAMA, 30, 9, 576, 64, 49152, False)
    with pytest.raises(SpecError, match="has d_in 640 at resid_post 11 .*d_model 576"):
        check_fits(describe_gemma_scope_2(saes[0], arch), smol, "smol")
    # the id the issue first suggested is not in the release (-res-all has no l0_medium)
    wrong = dataclasses.replace(saes[0], sae_id="layer_11_width_16k_l0_medium")
    with pytest.raises(SpecError, match="(?s)has no SAE id 'layer_11_width_16k_l0_medium'.*did you mean.*'layer_11_width_16k_l0_small'"):
        check_source(wrong)


# --- zoo SAEs -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_gemma3_sae_builds_lazily_on_a_corpus_after_bos(tmp_path: Path, monkeypatch, loaded):
    """One Gemma-3 SAE built on first use with a shrunken corpus and budget: every corpus text
    starts with <bos>, which is left out of the activations (their norms stay far below the
    ~1e5 the residual stream reaches there)."""
    from sae_lens import SAE

    from runtime.zoo import resolve_sae
    from runtime.zoo.corpus import CorpusRecipe
    from runtime.zoo.sae_training import Budget

    plan = dataclasses.replace(zoo_saes.PLANS[gemma3.NAME], budget=Budget(steps=20, batch_size=128, width_scale=0.25),
                               corpus=CorpusRecipe(prompts=32, generated=4, new_tokens=8, bos=True))
    monkeypatch.setitem(zoo_saes.PLANS, gemma3.NAME, plan)
    monkeypatch.setattr(zoo_saes, "cache_dir", lambda: tmp_path)
    name = f"{gemma3.NAME}/topk-k8/resid_post.12"
    assert zoo_saes.entry(name).status == "lazy"
    folder = resolve_sae(name)
    assert folder.is_relative_to(tmp_path) and zoo_saes.entry(name).status == "built"
    sae = SAE.load_from_disk(str(folder))
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k, sae.cfg.metadata.hook_name) == (640, 640, 8, "blocks.12.hook_resid_post")
    store = next((tmp_path / "saes" / gemma3.NAME).glob("activations-*"))
    rows = json.loads((store / "corpus.json").read_text())["rows"]
    assert rows and all(r[0] == 2 for r in rows)
    from safetensors.torch import load_file

    acts = load_file(store / "resid_post.12.safetensors")["acts"]
    assert len(acts) == sum(len(r) - 1 for r in rows)
    assert float(acts.norm(dim=-1).max()) < 5e4  # the BOS position (~1e5 at layer 12) is not among them
