"""The runtime: executes a Plan against nnsight models and sae_lens SAEs.

One folder per concept; imports point from the top of this list down, never back up:
    execute/  running a plan (executor, progress, `sagec run`) and `sagec check --deep`
    passes/   one module per pass: sample, locate, trace, ground_truth, score, report
    report/   reading results: report.html, the SAEBench export, `sagec diff`
    zoo/      built-in models and SAEs, registered with model/ and saes/ when imported
    saes/     loading SAEs through sae_lens and where each one reads
    task/     prompt sets: assignments, rendering, tokenized prompts, the task metric
    model/    models: sources, architectures, locations, the forward engine, GGUF
    sage/     the method's mathematics on tensors (no models, no files)
    store/    the artifact cache, atomic writes, results.json and its schema, user folders
"""
