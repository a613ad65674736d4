# Induction (Elhage et al. 2021; Olsson et al. 2022, "In-context Learning and Induction Heads"):
# "Words: tiger candle rabbit guitar lemon wagon. Words: tiger candle rabbit" -> " guitar".
# Measures in-context copying: having seen "... rabbit guitar ...", the model predicts "guitar"
# after the repeated "rabbit". The words carry no meaning together, so only the earlier
# occurrence tells the answer.
# The metric is the log-probability mass of the copied word minus that of the list's five other
# words, so the model must single out the right one among the words it has seen.

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
  # copies only half the time then. Words are separated by spaces: with ",", ";" or " - "
  # between them it copies less often (0.63 to 0.79 of 64 prompts against 0.9 with spaces).
  template "Words: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}}. Words: {{w1}} {{w2}} {{w3}}"
  template "Here are some words: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}}. Again: {{w1}} {{w2}} {{w3}}"
  template "Remember: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}}. Repeat: {{w1}} {{w2}} {{w3}}"
  template "Words: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}}\nWords: {{w1}} {{w2}} {{w3}}"
  template "Read these words aloud: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}}. Now read them again: {{w1}} {{w2}} {{w3}}"
  template "Say: {{w1}} {{w2}} {{w3}} {{target}} {{w5}} {{w6}}. Say it again: {{w1}} {{w2}} {{w3}}"

  # Against the list's other words: the in-context candidates a copying mechanism must rule out.
  answer " {{target}}" against " {{w}}" for w in words where w == w1 or w == w2 or w == w3 or w == w5 or w == w6
  counterfactual resample target  # another word after the first w3: the clean answer is not copied

  position target = token of target  # the word to copy, at its only occurrence
  position cue = token of w3  # its predecessor, which a previous-token head copies into target
  position end = last

  attributes target
  split by template: train 0.5, test 0.5  # test prompts use list formats train never saw
  samples 256 seed 0
}
