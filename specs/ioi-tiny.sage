# IOI on the zoo's tiny-ioi: the reference task on a 3-layer GPT-2 the project trains itself
# (runtime/zoo), so the whole pipeline runs in a minute or two on a laptop CPU. The task mirrors
# the one tiny-ioi was trained on (runtime/zoo/tasks.py): eight sentence frames in both orders;
# test prompts use places and frames no training prompt used. The zoo's four residual SAE kinds
# (standard L1, TopK k=8 and k=32, and a deliberately weak one) are scored against each other.

model tiny {
  source zoo "tiny-ioi"
}

vocab names = [
  "Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma", "David", "Anna", "Paul", "Lisa",
  "Mark", "Kate", "Peter", "Laura",
]
vocab places = [
  "store", "park", "school", "garden", "station", "office", "restaurant", "hospital", "library",
  "market", "beach", "museum",
]
vocab objects = ["drink", "book", "ball", "ring", "bone", "apple", "letter", "key"]

task ioi {
  var io in names
  var s in names where s != io
  var order in ["ABB", "BAB"]
  var frame in 0..7
  var place in places
  var object in objects

  template when frame == 0 and order == "ABB": "When {{io}} and {{s}} went to the {{place}}, {{s}} gave a {{object}} to"
  template when frame == 0 and order == "BAB": "When {{s}} and {{io}} went to the {{place}}, {{s}} gave a {{object}} to"
  template when frame == 1 and order == "ABB": "After {{io}} and {{s}} went to the {{place}}, {{s}} gave a {{object}} to"
  template when frame == 1 and order == "BAB": "After {{s}} and {{io}} went to the {{place}}, {{s}} gave a {{object}} to"
  template when frame == 2 and order == "ABB": "Then, {{io}} and {{s}} had a long argument. Afterwards {{s}} said to"
  template when frame == 2 and order == "BAB": "Then, {{s}} and {{io}} had a long argument. Afterwards {{s}} said to"
  template when frame == 3 and order == "ABB": "While {{io}} and {{s}} were working at the {{place}}, {{s}} gave a {{object}} to"
  template when frame == 3 and order == "BAB": "While {{s}} and {{io}} were working at the {{place}}, {{s}} gave a {{object}} to"
  template when frame == 4 and order == "ABB": "Then, {{io}} and {{s}} went to the {{place}}. {{s}} gave a {{object}} to"
  template when frame == 4 and order == "BAB": "Then, {{s}} and {{io}} went to the {{place}}. {{s}} gave a {{object}} to"
  template when frame == 5 and order == "ABB": "When {{io}} and {{s}} got a {{object}} at the {{place}}, {{s}} decided to give it to"
  template when frame == 5 and order == "BAB": "When {{s}} and {{io}} got a {{object}} at the {{place}}, {{s}} decided to give it to"
  template when frame == 6 and order == "ABB": "After {{io}} and {{s}} had a long day at the {{place}}, {{s}} gave a {{object}} to"
  template when frame == 6 and order == "BAB": "After {{s}} and {{io}} had a long day at the {{place}}, {{s}} gave a {{object}} to"
  template when frame == 7 and order == "ABB": "Then, {{io}} and {{s}} were working at the {{place}}. {{s}} handed the {{object}} to"
  template when frame == 7 and order == "BAB": "Then, {{s}} and {{io}} were working at the {{place}}. {{s}} handed the {{object}} to"

  answer " {{io}}" against " {{s}}"
  counterfactual resample io, s

  position io = token of io
  position s1 = token of s
  position s2 = token of s occurrence 2
  position end = last

  attributes io, s, order
  split by place, frame: train 0.75, test 0.25
  samples 512 seed 0
}

sae l1[l] for l in 0..2 {
  source zoo "tiny-ioi/relu-l1/resid_post.{{l}}"
}

sae topk8[l] for l in 0..2 {
  source zoo "tiny-ioi/topk-k8/resid_post.{{l}}"
}

sae topk32[l] for l in 0..2 {
  source zoo "tiny-ioi/topk-k32/resid_post.{{l}}"
}

sae weak[l] for l in 0..2 {
  source zoo "tiny-ioi/weak/resid_post.{{l}}"
}

eval tiny_ioi {
  model tiny
  task ioi
  locate {
    method attribution
    components heads, mlp
    positions s2, end
    select top 4
    verify patching
  }
  ground_truth {
    method mean
    validate sufficiency, necessity, control
  }
  saes l1[*], topk8[*], topk32[*], weak[*] reconstruct residual
  baselines pca, neurons, random
  score sufficiency, necessity, control, interpretability, alignment, explained_variance, l0, dead_fraction, spliced_metric
  report "runs/ioi-tiny" as html, json
}
