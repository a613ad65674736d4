# Subject-verb agreement across a prepositional phrase (Marks et al. 2024, "Sparse Feature
# Circuits", the across-PP set; Linzen et al. 2016): "The keys near the cabinet" -> " are" over
# " is". Measures whether the model carries the grammatical number of the subject past an
# attractor noun, whose own number may differ, to the verb. The metric is the logit difference
# of the verb that agrees with the subject over the one that does not.

# Nouns whose singular and "-s" plural SmolLM2's tokenizer keeps as one token after a space.
vocab subjects = [
  "key", "dog", "book", "friend", "teacher", "student", "girl", "boy", "bird", "author", "doctor",
  "farmer", "player", "painting", "cat", "manager", "officer", "artist", "worker", "singer",
  "pilot", "nurse", "lawyer", "engineer",
]
vocab attractors = [
  "cabinet", "table", "window", "house", "car", "tree", "door", "road", "letter", "picture",
  "building", "computer", "chair", "bottle", "flower", "wall",
]

task agreement {
  var number in ["singular", "plural"]  # of the subject: the verb must follow it
  var attractor_number in ["singular", "plural"]  # of the noun between subject and verb
  var subject in subjects
  var attractor in attractors
  var prep in ["near", "beside", "next to", "across from", "in front of", "under", "above"]

  template "The {{subject}}{{ 's' if number == 'plural' else '' }} {{prep}} the {{attractor}}{{ 's' if attractor_number == 'plural' else '' }}"

  answer "{{ ' is' if number == 'singular' else ' are' }}" against "{{ ' are' if number == 'singular' else ' is' }}"
  counterfactual resample number  # the subject's number flipped: the other verb agrees

  position subject = first + 1  # the subject noun ("The" is the first token)
  position end = last  # the attractor noun, where the verb is predicted

  attributes number, attractor_number
  split by attractor: train 0.5, test 0.5  # test prompts use attractor nouns train never saw
  samples 256 seed 0
}
