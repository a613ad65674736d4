# Greater-than (Hanna, Liu and Variengien 2023, "How does GPT-2 compute greater-than?"):
# "The war lasted from the year 1732 to the year 17" -> a year after 1732. Measures numerical
# comparison: the model must continue with a year later than the first one. SmolLM2's tokenizer
# splits numbers into single digits, so the answer is the next digit, the tens digit of the
# second year, and the metric is Hanna et al.'s probability-difference idea over digit sets: the
# log-probability mass of the tens digits above the first year's minus that of the digits below
# it (the equal digit is ambiguous and in neither set).

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
  template "The {{event}} ran from the year {{century}}{{tens}}{{ones}} to the year {{century}}"
  template "The {{event}} went on from {{century}}{{tens}}{{ones}} to the year {{century}}"
  template "In the year {{century}}{{tens}}{{ones}}, the {{event}} began. It lasted from the year {{century}}{{tens}}{{ones}} to the year {{century}}"

  answer "{{d}}" for d in 0..9 where d > tens against "{{d}}" for d in 0..9 where d < tens
  counterfactual resample tens  # another tens digit moves the boundary between the sets

  position end = last  # the second year's century digits end here
  # "... _ 1 7 3 2 _to _the _year _ 1 7": each digit is a token, and " 17" is " " + "1" + "7";
  # counted back from the final "7": 1, " ", year, the, to, then the first year's 2 and 3.
  position tens = end - 7  # the first year's tens digit
  position ones = end - 6

  attributes tens
  split by event: train 0.5, test 0.5  # test prompts are about events train never saw
  samples 256 seed 0
}
