# Gendered pronoun resolution (Mathwin et al. 2023, "Identifying a preliminary circuit for
# predicting gendered pronouns in GPT-2 small"; Chintam et al. 2023): "Mary went to the store
# because" -> " she" over " he". Measures whether the model retrieves the gender of the name that
# opens the sentence when it must refer back to it. The metric is the logit difference of the
# pronoun that agrees with the name over the other one.

# First names that SmolLM2's tokenizer keeps as one token after a space.
vocab men = ["John", "Bob", "Tom", "James", "David", "Paul", "Mark", "Peter"]
vocab women = ["Mary", "Alice", "Sarah", "Emma", "Anna", "Lisa", "Kate", "Laura"]
vocab places = ["store", "park", "school", "garden", "office", "station", "library", "beach"]

task pronoun {
  var pronoun in ["he", "she"]  # the name's gender, as the pronoun that refers to it
  var man in men
  var woman in women
  var place in places

  # A man's name when the pronoun is "he", a woman's otherwise, always as the fourth token: a
  # name that opens the text (no leading space, no beginning-of-sequence token) leaves SmolLM2
  # near chance, 0.5 to 0.8 accuracy, while after a three-token opener it gets every prompt.
  template "After work, {{ man if pronoun == 'he' else woman }} went to the {{place}}, where"
  template "Last week, {{ man if pronoun == 'he' else woman }} went to the {{place}} because"
  template "That morning, {{ man if pronoun == 'he' else woman }} walked to the {{place}}, and"
  template "On Monday, {{ man if pronoun == 'he' else woman }} was at the {{place}} when"
  template "After lunch, {{ man if pronoun == 'he' else woman }} left the {{place}} because"
  template "Every day, {{ man if pronoun == 'he' else woman }} goes to the {{place}}, where"
  template "Last night, {{ man if pronoun == 'he' else woman }} called from the {{place}} and said that"
  template "At noon, {{ man if pronoun == 'he' else woman }} arrived at the {{place}}, and"

  answer " {{pronoun}}" against " {{p}}" for p in ["he", "she"] where p != pronoun
  counterfactual resample pronoun  # a name of the other gender: the other pronoun agrees

  position name = first + 3  # after the opener's two words and comma
  position end = last

  attributes pronoun
  split by place: train 0.5, test 0.5  # test prompts happen in places train never saw
  samples 256 seed 0
}
