"""How well each spec's default model solves its task: mean metric and accuracy (metric > 0).

    HF_HUB_OFFLINE=1 python tests/benchmarks/task_accuracy.py specs/*.sage [--samples 64]

For every task of every spec: the clean prompts and each twin group (counterfactual, one per
attribute), overall and per template. The metric is the spec's own (runtime/task/metric.py): logit
difference for single-token answers, log-probability-mass difference for token sets. Prompts are
built exactly as `sagec run` builds them (runtime/task/prompts.py), with `--samples` overriding the
spec's count to keep runs short. The model is loaded once per distinct model declaration.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence

import torch

import runtime.zoo  # noqa: F401  (registers the zoo models a spec may name)
import sagec
from runtime.model.forward import patched_logits
from runtime.model.sources import load_model
from runtime.task.metric import task_metric
from runtime.task.prompts import PromptSet, build_prompt_set


def default_model(spec, task_name: str):
    """The model the spec evaluates the task with (its first eval naming the task), else its first model."""
    for e in spec.evals:
        if e.task == task_name:
            return spec.model(e.model)
    return spec.models[0]


def metrics(loaded, prompts: Sequence) -> torch.Tensor:
    logits = patched_logits(loaded, [p.ids for p in prompts], [])
    return task_metric(logits, [p.answer_ids for p in prompts], [p.distractor_ids for p in prompts])


def score_prompt_set(loaded, prompt_set: PromptSet, groups: Sequence[str] | None = None) -> dict[str, dict]:
    """Per group ("clean", "counterfactual", "twin:<attr>"; `groups` picks some): mean, accuracy,
    n, and per template."""
    out = {}
    for name, prompts in prompt_set.groups().items():
        if groups is not None and name not in groups:
            continue
        m = metrics(loaded, prompts)
        by_template: dict[int, list[float]] = defaultdict(list)
        for p, v in zip(prompts, m.tolist()):
            by_template[p.template].append(v)
        out[name] = {
            "n": len(prompts),
            "mean": float(m.mean()),
            "accuracy": float((m > 0).float().mean()),
            "templates": {t: (len(v), sum(v) / len(v), sum(x > 0 for x in v) / len(v)) for t, v in sorted(by_template.items())},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--samples", type=int, default=None, help="override each task's sample count")
    ap.add_argument("--templates", action="store_true", help="print per-template numbers for every group")
    ap.add_argument("--clean-only", action="store_true", help="score the clean prompts only, not the twins")
    ap.add_argument("--by", default=None, help="also break the clean prompts down by this variable")
    ap.add_argument("--worst", type=int, default=0, help="print the N clean prompts with the lowest metric")
    args = ap.parse_args()
    torch.set_num_threads(2)
    models: dict = {}
    for path in args.specs:
        spec = sagec.load_spec(path)
        for task in spec.tasks:
            if args.samples:
                task = dataclasses.replace(task, samples=args.samples)
            model = default_model(spec, task.name)
            if model not in models:
                t0 = time.time()
                models[model] = load_model(model)
                print(f"loaded {model.name} ({model.ref}) in {time.time() - t0:.1f} s")
            loaded = models[model]
            t0 = time.time()
            ps = build_prompt_set(task, loaded.tokenizer)
            result = score_prompt_set(loaded, ps, ["clean"] if args.clean_only else None)
            print(f"\n{path} task {task.name}: {len(ps.prompts)} prompts ({time.time() - t0:.1f} s)")
            for name, r in result.items():
                print(f"  {name:24s} n={r['n']:4d} mean={r['mean']:7.3f} acc={r['accuracy']:.3f}")
                if args.templates or name == "clean":
                    for t, (n, mean, acc) in r["templates"].items():
                        print(f"      template {t:2d}: n={n:4d} mean={mean:7.3f} acc={acc:.3f}   {task.templates[t].text[:70]!r}")
            if args.worst or args.by:
                m = metrics(loaded, ps.prompts).tolist()
            if args.by:
                by: dict = defaultdict(list)
                for v, p in zip(m, ps.prompts):
                    by[p.assignment[args.by]].append(v)
                for value, vs in sorted(by.items()):
                    print(f"      {args.by} = {value!r}: n={len(vs)} mean={sum(vs) / len(vs):7.3f} acc={sum(x > 0 for x in vs) / len(vs):.3f}")
            if args.worst:
                for v, p in sorted(zip(m, ps.prompts), key=lambda x: x[0])[: args.worst]:
                    print(f"    {v:7.3f}  {p.text!r} -> {p.answers} vs {p.distractors[:4]}")


if __name__ == "__main__":
    main()
