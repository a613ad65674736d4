"""`sagec check --deep` on a spec file: tokenizer-level problems and SAE problems, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata
from transformers import GPT2Config, GPT2LMHeadModel

from runtime.execute.deep_check import deep_check
from sagec.check import load_spec
from sagec.diagnostics import SpecError
from tests.test_prompts import NAMES, PLACES, WORDS, word_tokenizer

SPEC = """\
model tiny {
  source path "@MODEL"
}

task ioi {
  var io    in ["Mary", "John", "Alice", "Bob"]
  var s     in ["Mary", "John", "Alice", "Bob"] where s != io
  var place in ["store", "park", "school", "garden"]
  var order in ["ABB", "BAB"]
  template when order == "ABB": "When {{io}} and {{s}} went to the {{place}}, {{s}} gave a drink to"
  template when order == "BAB": "When {{s}} and {{io}} went to the {{place}}, {{s}} gave a drink to"
  answer " {{io}}" against @ANSWER
  counterfactual resample io, s
  position io  = token of io
  position s2  = token of s occurrence 2
  position end = last
  attributes io, s, order
  split by place : train 0.5, test 0.5
  samples 64 seed 0
}

sae local {
  source path "@SAE_FOLDER"
}

sae pretrained {
  source sae_lens "gpt2-small-res-jb" "blocks.8.hook_resid_pr"
}

eval gt {
  model tiny
  task ioi
  locate {
    method attribution
    components heads, mlp
    positions io, s2, end
    select top 4
  }
  ground_truth {
    method mean
    validate sufficiency
  }
  saes @SAES reconstruct residual
  score sufficiency
  report "runs/x" as json
}
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("deep")
    torch.manual_seed(0)
    tok = word_tokenizer(NAMES + PLACES + tuple(WORDS))
    cfg = GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    sae = StandardSAE(StandardSAEConfig(d_in=48, d_sae=64, metadata=SAEMetadata(hook_name="blocks.1.hook_resid_pre")))
    sae.save_model(str(root / "sae48"))
    return root / "tiny", root / "sae48"


def spec_file(tmp_path: Path, folders: tuple[Path, Path], answer: str, saes: str, sae_id: str = "blocks.8.hook_resid_pr") -> Path:
    text = SPEC.replace("@MODEL", str(folders[0])).replace("@SAE_FOLDER", str(folders[1])).replace("@ANSWER", answer).replace("@SAES", saes)
    text = text.replace("blocks.8.hook_resid_pr", sae_id)
    path = tmp_path / "deep.sage"
    path.write_text(text)
    return path


def test_a_sound_spec_passes(tmp_path, folders):
    deep_check(load_spec(str(spec_file(tmp_path, folders, '" {{s}}"', "pretrained", "blocks.8.hook_resid_pre"))))


def test_every_problem_is_reported_at_its_line(tmp_path, folders):
    path = spec_file(tmp_path, folders, '" nobody"', "local, pretrained")
    with pytest.raises(SpecError) as e:
        deep_check(load_spec(str(path)))
    by_line = {d.line: d.message for d in e.value.diagnostics}
    assert "distractor ' nobody'" in by_line[12] and "unknown token" in by_line[12]
    assert "SAE local has d_in 48 at resid_pre 1" in by_line[22] and "model tiny" in by_line[22] and "d_model 32" in by_line[22]
    assert "has no SAE id 'blocks.8.hook_resid_pr'" in by_line[26]
    assert all(d.file == str(path) for d in e.value.diagnostics)
