"""The report pass: everything one eval computed, gathered into the results document.

The document is what `sagec run` writes as results.json (adding the run's own timings); see
README.md "Results" for its layout. Every number carries its direction, description and 95%
interval where it has one; a number that could not be computed is null with a reason.
"""

from __future__ import annotations

import inspect

from runtime.sage.statistics import N_BOOT, bootstrap
from runtime.store.cache import Artifact
from sagec import serial
from sagec.plan import Node, ReportParams

RESULTS_SCHEMA = "sagec.results/1"
# Every estimate is drawn with the statistics module's default seed; read it, not restate it.
BOOTSTRAP_SEED = inspect.signature(bootstrap).parameters["seed"].default


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: ReportParams = node.params
    sample, locate, trace, gt, *rest = (inputs[i] for i in node.inputs)
    scores = [a for a in rest if "sae" in a.meta]
    bases = [a for a in rest if "baseline" in a.meta]
    suites = [a.meta for a in rest if "suite" in a.meta]
    corpus = next((a.meta["corpus"] for a in rest if "corpus" in a.meta), None)
    texts = [a.meta["text"] for a in rest if "text" in a.meta]
    ev = params.eval
    candidates = sorted(locate.meta["candidates"], key=lambda c: -max(abs(v) for v in c.get("integrated", c["attribution"]).values()))
    results = {
        "schema": RESULTS_SCHEMA,
        "eval": ev.name,
        "spec": {"file": params.spec_file, "hash": params.spec_hash, "eval": serial.to_data(ev)},
        "model": trace.meta["model"],
        "prompts": sample.meta["summary"],
        "seeds": {"prompts": sample.meta["summary"]["seed"], "bootstrap": BOOTSTRAP_SEED, "bootstrap_resamples": N_BOOT},
        "task_metric": trace.meta["metric"],
        "locate": {
            "method": locate.meta["method"],
            "families": locate.meta["families"],
            "selected": locate.meta["selected"],
            "steps": locate.meta["steps"],
            "selection": locate.meta["selection"],
            "attribution_patching_spearman": locate.meta["attribution_patching_spearman"],
            "integrated_patching_spearman": locate.meta["integrated_patching_spearman"],
            "agreement_by_pool": locate.meta["agreement_by_pool"],
            "verified_on_prompts": locate.meta["verified_on_prompts"],
            "candidates": candidates,
        },
        "activations": trace.meta["shapes"],
        "ground_truth": {"method": gt.meta["method"], "sites": gt.meta["sites"], **gt.meta["validation"]},
        "saes": {s.meta["sae"]["name"]: s.meta for s in scores},
        "baselines": _baselines(bases),
        # A family judged as one system on the whole located circuit (METHOD.md section 6).
        "suites": {m["suite"]: {k: v for k, v in m.items() if k != "suite"} for m in suites},
    }
    if corpus is not None:  # the eval's `score` lists a text metric (METHOD.md section 8)
        results["text"] = {"corpus": corpus, "saes": {t["name"]: {k: v for k, v in t.items() if k != "name"} for t in texts}}
    return Artifact({"results": results})


def _baselines(artifacts: list[Artifact]) -> dict:
    """Each baseline on every located cross-section, with its scores beside each SAE (on the
    cross-sections that SAE serves) under `beside`."""
    out: dict = {}
    for a in artifacts:
        if a.meta["beside"] is None:
            out[a.meta["baseline"]["name"]] = {k: v for k, v in a.meta.items() if k != "beside"} | {"beside": {}}
    for a in artifacts:
        if a.meta["beside"] is not None:
            entry = {k: a.meta[k] for k in ("sites", "scores", "reason") if k in a.meta}
            out[a.meta["baseline"]["name"]]["beside"][a.meta["beside"]] = entry
    return out

