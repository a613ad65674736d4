# Subject-verb agreement across a prepositional phrase (Marks et al. 2024, "Sparse Feature
# Circuits", the across-PP set; Linzen et al. 2016): "The keys near the cabinet" -> " are" over
# " is", on Gemma-3-270M. Measures whether the model carries the grammatical number of the
# subject past an attractor noun, whose own number may differ, to the verb. The metric is the
# logit difference of the verb that agrees with the subject over the one that does not.

include "tasks/agreement.sage"  # the task, shared with the zoo model trained on it

model gemma {
  source zoo "gemma-3-270m"  # the real Gemma-3-270M, dequantised from four PyPI chunk wheels
  dtype float32
  device cpu
}

# TopK SAEs from the zoo on the residual stream of the layers where the task happens on Gemma-3
# (tests/benchmarks/layer_scan.py: 58% of |attribution|): attention at the last token in layers
# 13 and 16, the MLPs of 13 and 14 there.
sae res[l] for l in 13..16 {
  source zoo "gemma-3-270m/topk-k8/resid_post.{{l}}"
}

eval agreement_ground_truth {
  model gemma
  task agreement
  locate {
    method attribution
    components heads, mlp
    layers 13..16  # the band the SAEs cover, so every selected cross-section can be reconstructed
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
  report "runs/agreement-gemma3" as html, json
}
