# The paper's first setting: IOI on GPT-2 Small, judging Joseph Bloom's residual-stream SAEs
# (sae_lens release gpt2-small-res-jb, 24576 latents) at every layer.
#
# NEEDS A HUB: the model (openai-community/gpt2) and the 13 SAEs (about 150 MB each) come from the
# Hugging Face hub. Where it is reachable, `sagec run` downloads them into the Hugging Face cache;
# for a machine without it, run `sagec fetch specs/paper/ioi-gpt2-small.sage` once where the hub
# is reachable, then `HF_HUB_OFFLINE=1 sagec run specs/paper/ioi-gpt2-small.sage`.
#
# These SAEs were trained on TransformerLens's centred residual stream (center_writing_weights):
# sagec gives each the stream minus its per-token mean over d_model, adds the mean back to the
# reconstruction, and records it in results.json. All 13 SAEs are loaded at once.

include "tasks/ioi.sage"

model gpt2 {
  source hub "openai-community/gpt2"
  dtype float32
  device cpu
}

# resid_pre l for every layer l, and the stream after the last layer. By residual reconstruction
# the SAE at resid_pre l+1 (= resid_post l) serves the heads and MLP of layer l, and res_final
# those of layer 11; nothing is written before resid_pre 0, so res[0] serves no head or MLP and is
# reported with the reason.
sae res[l] for l in 0..11 {
  source sae_lens "gpt2-small-res-jb" "blocks.{{l}}.hook_resid_pre"
}

sae res_final {
  source sae_lens "gpt2-small-res-jb" "blocks.11.hook_resid_post"
}

eval ioi_gpt2_small {
  model gpt2
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
  saes res[*], res_final reconstruct residual  # SAGE: residual SAEs reconstruct sublayers
  score sufficiency, necessity, control, interpretability
  report "runs/ioi-gpt2-small" as html, json
}
