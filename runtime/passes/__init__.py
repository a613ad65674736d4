"""The passes of a plan, by node kind: each is `run(node, inputs, ctx) -> Artifact`."""

from runtime.passes import baseline, ground_truth, locate, report, sample, score, trace

PASSES = {
    "sample": sample.run,
    "locate": locate.run,
    "trace": trace.run,
    "ground_truth": ground_truth.run,
    "score": score.run,
    "baseline": baseline.run,
    "report": report.run,
}
