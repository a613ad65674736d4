"""A whole sagec project in a folder, small enough to run end to end in seconds: a tiny random
GPT-2 with a word-level tokenizer, residual SAEs in sae_lens's format, and a spec binding them.

The model is random, so the numbers mean nothing; these fixtures test the machinery (plan,
cache, resume, exit codes), while the science is tested on planted truth and on zoo models.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_families import build

SPEC = """\
model tiny {
  source path "model"
  batch_size 256
}
vocab names = ["Mary", "John", "Alice", "Bob", "Tom", "Sarah"]
task ioi {
  var io    in names
  var s     in names where s != io
  var place in ["store", "park", "school", "city"]
  template "When {{io}} and {{s}} went to the {{place}} , {{s}} gave a drink to"
  answer " {{io}}" against " {{s}}"
  counterfactual resample io, s
  position s2  = token of s occurrence 2
  position end = last
  attributes io, s
  split by place : train 0.5, test 0.5
  samples 32 seed 0
}
sae res[l] for l in 0..2 {
  source path "sae{{l}}"
}
eval tiny_gt {
  model tiny
  task ioi
  locate { method attribution  components heads, mlp  positions end  select top 2 per family }
  ground_truth { method mean  validate sufficiency, necessity, control }
  saes SAES reconstruct residual
  score sufficiency, necessity, control, interpretability
  report "runs/tiny" as json
}
"""


def make_project(folder: Path, saes: str = "res[1], res[2]") -> Path:
    """Write the model, three SAEs (layers 0-2) and `spec.sage` into `folder`; return the spec."""
    if not (folder / "model").exists():
        build("gpt2", folder / "model")
        from sae_lens import StandardSAE, StandardSAEConfig

        torch.manual_seed(0)
        for layer in range(3):
            cfg = StandardSAEConfig(d_in=32, d_sae=64)
            cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
            StandardSAE(cfg).save_model(str(folder / f"sae{layer}"))
    spec = folder / "spec.sage"
    spec.write_text(SPEC.replace("SAES", saes))
    return spec
