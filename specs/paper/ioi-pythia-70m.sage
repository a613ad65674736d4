# The paper's second setting: IOI on Pythia-70M-deduped, judging Samuel Marks's residual-stream
# dictionaries (sae_lens release pythia-70m-deduped-res-sm, 32768 latents) after every layer.
#
# NEEDS A HUB: the model (EleutherAI/pythia-70m-deduped) and the SAEs come from the Hugging Face
# hub. Where it is reachable, `sagec run` downloads them into the Hugging Face cache; for a machine
# without it, run `sagec fetch specs/paper/ioi-pythia-70m.sage` once where the hub is reachable,
# then `HF_HUB_OFFLINE=1 sagec run specs/paper/ioi-pythia-70m.sage`.

include "tasks/ioi.sage"

model pythia {
  source hub "EleutherAI/pythia-70m-deduped"
  dtype float32
  device cpu
}

# resid_post l after each of the 6 layers: by residual reconstruction each serves the heads and
# MLP of its layer. (The release's embedding SAE, blocks.0.hook_resid_pre, would serve none.)
sae res[l] for l in 0..5 {
  source sae_lens "pythia-70m-deduped-res-sm" "blocks.{{l}}.hook_resid_post"
}

eval ioi_pythia_70m {
  model pythia
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
  saes res[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayers
  score sufficiency, necessity, control, interpretability
  report "runs/ioi-pythia-70m" as html, json
}
