# Indirect object identification (Wang et al. 2022, "Interpretability in the Wild"), the task the
# paper's settings share: "When Mary and John went to the store, John gave a drink to" -> " Mary".
# The metric is the logit difference of the indirect object over the subject. Included by every
# spec in specs/paper/.

# Names, places and objects that GPT-2's, Pythia's and Gemma's tokenizers keep as one token after
# a space (`sagec check --deep` on each spec checks it with that model's own tokenizer).
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
  var frame in ["when", "then"]

  # Two of the paper's sentence frames, each in both name orders (ABB: the indirect object first).
  template when frame == "when" and order == "ABB": "When {{io}} and {{s}} went to the {{place}}, {{s}} gave a {{object}} to"
  template when frame == "when" and order == "BAB": "When {{s}} and {{io}} went to the {{place}}, {{s}} gave a {{object}} to"
  template when frame == "then" and order == "ABB": "Then, {{io}} and {{s}} had a lot of fun at the {{place}}. {{s}} gave a {{object}} to"
  template when frame == "then" and order == "BAB": "Then, {{s}} and {{io}} had a lot of fun at the {{place}}. {{s}} gave a {{object}} to"

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
