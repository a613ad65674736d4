# Country -> capital recall: "The capital of France is" -> " Paris".
# Measures factual recall of an entity attribute (the country's capital), the setting of
# Meng et al. 2022 (ROME) and Geva et al. 2023 on factual associations; listed among
# shared/METHOD.md "Tasks". The metric is the log-probability mass of the right capital minus
# that of every other capital in the list, so the model must single out the right one.

# Countries whose name and capital SmolLM2's tokenizer keeps as one token after a space.
vocab countries = [
  "France", "Germany", "Italy", "Spain", "Japan", "China", "Russia", "Egypt", "Greece", "Canada",
  "Poland", "Austria", "Portugal", "Ireland", "Norway", "Sweden", "Finland", "Denmark", "Hungary",
  "Iran", "Iraq", "Kenya", "Peru", "Cuba", "England", "Belgium", "Afghanistan", "Australia",
]
vocab capitals = [
  "Paris", "Berlin", "Rome", "Madrid", "Tokyo", "Beijing", "Moscow", "Cairo", "Athens", "Ottawa",
  "Warsaw", "Vienna", "Lisbon", "Dublin", "Oslo", "Stockholm", "Helsinki", "Copenhagen", "Budapest",
  "Tehran", "Baghdad", "Nairobi", "Lima", "Havana", "London", "Brussels", "Kabul", "Canberra",
]

task capital {
  var country in countries

  template "The capital of {{country}} is"
  template "The capital city of {{country}} is"
  template "In {{country}}, the capital city is"
  template "The seat of government of {{country}} is the city of"
  template "Welcome to {{country}}! Our capital,"
  template "Q: What is the capital of {{country}}?\nA: The capital of {{country}} is"
  template "I flew to {{country}} and spent a week in its capital,"
  template "The government of {{country}} sits in the capital city of"

  # The pairs, written once per side: the answer is the capital paired with the country, the
  # distractor set every other capital.
  answer " {{c}}" for c in capitals where country + "/" + c in [
    "France/Paris", "Germany/Berlin", "Italy/Rome", "Spain/Madrid", "Japan/Tokyo", "China/Beijing",
    "Russia/Moscow", "Egypt/Cairo", "Greece/Athens", "Canada/Ottawa", "Poland/Warsaw",
    "Austria/Vienna", "Portugal/Lisbon", "Ireland/Dublin", "Norway/Oslo", "Sweden/Stockholm",
    "Finland/Helsinki", "Denmark/Copenhagen", "Hungary/Budapest", "Iran/Tehran", "Iraq/Baghdad",
    "Kenya/Nairobi", "Peru/Lima", "Cuba/Havana", "England/London", "Belgium/Brussels",
    "Afghanistan/Kabul", "Australia/Canberra",
  ] against " {{c}}" for c in capitals where country + "/" + c not in [
    "France/Paris", "Germany/Berlin", "Italy/Rome", "Spain/Madrid", "Japan/Tokyo", "China/Beijing",
    "Russia/Moscow", "Egypt/Cairo", "Greece/Athens", "Canada/Ottawa", "Poland/Warsaw",
    "Austria/Vienna", "Portugal/Lisbon", "Ireland/Dublin", "Norway/Oslo", "Sweden/Stockholm",
    "Finland/Helsinki", "Denmark/Copenhagen", "Hungary/Budapest", "Iran/Tehran", "Iraq/Baghdad",
    "Kenya/Nairobi", "Peru/Lima", "Cuba/Havana", "England/London", "Belgium/Brussels",
    "Afghanistan/Kabul", "Australia/Canberra",
  ]
  counterfactual resample country  # another country: the clean capital is no longer the answer

  position country = token of country occurrence last
  position end = last

  attributes country
  split by template: train 0.5, test 0.5  # test prompts use sentence frames train never saw
  samples 256 seed 0
}
