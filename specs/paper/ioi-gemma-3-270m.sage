# The paper's fourth setting: IOI on Gemma-3-270M, judging Gemma Scope 2's residual-stream SAEs
# (sae_lens release gemma-scope-2-270m-pt-res-all, 16k latents, the small-L0 variant, JumpReLU)
# after every layer.
#
# NEEDS A HUB: the model (google/gemma-3-270m, gated: accept its licence on the hub and log in with
# `hf auth login`) and the 18 SAEs come from the Hugging Face hub. Where it is reachable, `sagec
# run` downloads them into the Hugging Face cache; for a machine without it, run `sagec fetch
# specs/paper/ioi-gemma-3-270m.sage` once where the hub is reachable, then
# `HF_HUB_OFFLINE=1 sagec run specs/paper/ioi-gemma-3-270m.sage`.

include "tasks/ioi.sage"

model gemma3 {
  source hub "google/gemma-3-270m"
  dtype float32
  device cpu
}

# resid_post l after each of the 18 layers: by residual reconstruction each serves the heads and
# MLP of its layer.
sae scope[l] for l in 0..17 {
  source sae_lens "gemma-scope-2-270m-pt-res-all" "layer_{{l}}_width_16k_l0_small"
}

eval ioi_gemma_3_270m {
  model gemma3
  task ioi
  locate {
    method attribution
    components heads, mlp
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
  report "runs/ioi-gemma-3-270m" as html, json
}
