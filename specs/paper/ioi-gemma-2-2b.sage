# The paper's third setting: IOI on Gemma-2-2B, judging Gemma Scope's canonical residual-stream
# SAEs (sae_lens release gemma-scope-2b-pt-res-canonical, 16k latents, JumpReLU).
#
# NEEDS A HUB: the model (google/gemma-2-2b, gated: accept its licence on the hub and log in with
# `hf auth login`) and the SAEs come from the Hugging Face hub. Where it is reachable, `sagec run`
# downloads them into the Hugging Face cache; for a machine without it, run `sagec fetch
# specs/paper/ioi-gemma-2-2b.sage` once where the hub is reachable, then
# `HF_HUB_OFFLINE=1 sagec run specs/paper/ioi-gemma-2-2b.sage`.
#
# Each SAE is 2304 x 16384 (300 MB in float32) and every SAE an eval lists is loaded at once, so
# the band is four layers; widen `layers` and the family together where memory allows.

include "tasks/ioi.sage"

model gemma {
  source hub "google/gemma-2-2b"
  dtype float32
  device cpu
}

# resid_post l: by residual reconstruction each serves the heads and MLP of its layer.
sae scope[l] for l in 12..15 {
  source sae_lens "gemma-scope-2b-pt-res-canonical" "layer_{{l}}/width_16k/canonical"
}

eval ioi_gemma_2_2b {
  model gemma
  task ioi
  locate {
    method attribution
    components heads, mlp
    layers 12..15  # the band the SAEs cover, so every selected cross-section can be reconstructed
    positions s2, end
    select top 8
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes scope[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayers
  score sufficiency, necessity, control, interpretability
  report "runs/ioi-gemma-2-2b" as html, json
}
