"""Where a spec's task happens on its model: attribution patching of every layer's attention and
MLP outputs at the task's named positions, clean -> counterfactual twin, to choose the layer band
a spec's `locate { layers ... }` and its SAEs cover.

    HF_HUB_OFFLINE=1 python tests/benchmarks/layer_scan.py specs/capitals.sage [--samples 32]

Prints, per named position, the layers whose attention or MLP output carries the largest share of
the total |attribution| (the summed effect of patching it, to first order), and the share per
layer over all positions.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict

import torch

import runtime.zoo  # noqa: F401  (registers the zoo models a spec may name)
import sagec
from runtime.model.forward import collect, collect_with_grads
from runtime.model.sources import load_model
from runtime.task.metric import task_metric
from runtime.task.prompts import build_prompt_set
from sagec.locations import Location


def default_model(spec, task_name: str):
    """The model the spec evaluates the task with (its first eval naming the task), else its first model."""
    return next((spec.model(e.model) for e in spec.evals if e.task == task_name), spec.models[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(2)
    models: dict = {}
    for path in args.specs:
        spec = sagec.load_spec(path)
        for task in spec.tasks:
            task = dataclasses.replace(task, samples=args.samples)
            model = default_model(spec, task.name)
            if model not in models:
                models[model] = load_model(model)
            loaded = models[model]
            ps = build_prompt_set(task, loaded.tokenizer)
            clean, corrupt = ps.prompts, ps.counterfactual
            n_layers = loaded.arch.n_layers
            locations = [Location(c, l) for l in range(n_layers) for c in ("attn_out", "mlp_out")]
            answers = [p.answer_ids for p in clean]
            distractors = [p.distractor_ids for p in clean]

            def metric_fn(logits, rows, answers=answers, distractors=distractors):
                return task_metric(logits, [answers[i] for i in rows.tolist()], [distractors[i] for i in rows.tolist()])

            pos = {name: [p.positions[name] for p in clean] for name in ps.position_names}
            cpos = {name: [p.positions[name] for p in corrupt] for name in ps.position_names}
            got = collect_with_grads(loaded, [p.ids for p in clean], pos, locations, metric_fn)
            bad = collect(loaded, [p.ids for p in corrupt], cpos, locations)
            effect = {k: float(((bad.activations[k] - got.activations[k]) * got.gradients[k]).sum(-1).mean()) for k in got.activations}
            total = sum(abs(v) for v in effect.values())
            print(f"\n{path} task {task.name}: clean metric {float(got.metric.mean()):.2f}; total |attribution| {total:.2f}")
            for k, v in sorted(effect.items(), key=lambda kv: -abs(kv[1]))[: args.top]:
                print(f"  {str(k):40s} {v:8.3f}  ({abs(v) / total:.0%})")
            per_layer: dict[int, float] = defaultdict(float)
            for k, v in effect.items():
                loc = k[0] if isinstance(k, tuple) else k
                per_layer[loc.layer] += abs(v) / total
            print("  share per layer: " + " ".join(f"{l}:{s:.0%}" for l, s in sorted(per_layer.items()) if s >= 0.02))


if __name__ == "__main__":
    main()
