# Induction on the zoo's tiny-induction: in-context copying ("Words: tiger candle rabbit guitar
# lemon wagon. Words: tiger candle rabbit" -> " guitar"; Elhage et al. 2021, Olsson et al. 2022)
# on a 2-layer GPT-2 the project trains itself (runtime/zoo) on this very task file and on
# repeated random word sequences, so it copies from list formats it never saw: test prompts use
# templates no training prompt used. The zoo's four residual SAE kinds (standard L1, TopK k=8 and
# k=32, and a deliberately weak one) are scored against each other.

include "tasks/induction.sage"

model tiny {
  source zoo "tiny-induction"
}

sae l1[l] for l in 0..1 {
  source zoo "tiny-induction/relu-l1/resid_post.{{l}}"
}

sae topk8[l] for l in 0..1 {
  source zoo "tiny-induction/topk-k8/resid_post.{{l}}"
}

sae topk32[l] for l in 0..1 {
  source zoo "tiny-induction/topk-k32/resid_post.{{l}}"
}

sae weak[l] for l in 0..1 {
  source zoo "tiny-induction/weak/resid_post.{{l}}"
}

eval induction_tiny {
  model tiny
  task induction
  locate {
    method attribution
    components heads, mlp
    positions cue, target, end
    select top 4
    verify patching
  }
  saes l1[*], topk8[*], topk32[*], weak[*] reconstruct residual
  baselines pca, neurons, random
  score sufficiency, necessity, control, interpretability, explained_variance, l0
  report "runs/tiny/induction" as html, json
}
