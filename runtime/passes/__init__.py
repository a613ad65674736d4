"""The passes of a plan, by node kind: each is `run(node, inputs, ctx) -> Artifact`."""

from runtime.passes import baseline, corpus, ground_truth, locate, report, sample, score, suite, text, trace

PASSES = {
    "sample": sample.run,
    "locate": locate.run,
    "trace": trace.run,
    "ground_truth": ground_truth.run,
    "score": score.run,
    "baseline": baseline.run,
    "suite": suite.run,
    "corpus": corpus.run,
    "text": text.run,
    "report": report.run,
}
