"""Printing a plan for people (text) and for Graphviz (dot); `sagec.plan.to_json` is for machines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from sagec.estimate import Cost, FamilyBound, total
from sagec.plan import Node, Plan
from sagec.selection import describe

READS_LISTED = 12  # inputs named one by one; more are counted by kind


def _families(plan: Plan, node: Node) -> int:
    """The twin families a locate node ranks with: the task's counterfactual and each attribute's twin."""
    task = next(n.params.task for n in plan.upstream(node.id) if n.kind == "sample")
    return (1 if task.counterfactual else 0) + len(task.attributes)


def _summary(node: Node, plan: Plan) -> str:
    p = node.params
    if node.kind == "sample":
        t = p.task
        return f"{t.samples} prompts of task {t.name}, seed {t.seed}, split {t.split.train:g}/{t.split.test:g}" + (f" by {', '.join(t.split.by)}" if t.split.by else "")
    if node.kind == "locate":
        loc = p.locate
        method = f"integrated gradients ({loc.steps} steps)" if loc.method == "integrated" else loc.method
        return (f"{method} over {', '.join(loc.components)} at {', '.join(loc.positions)}; {describe(loc, _families(plan, node))}"
                + ("; verified by patching" if loc.verify else ""))
    if node.kind == "trace":
        return f"activations at the located cross-sections on model {p.model.name}"
    if node.kind == "ground_truth":
        return f"{p.ground_truth.method} codes for {', '.join(p.attributes)}; validate {', '.join(p.ground_truth.validate)}"
    if node.kind == "score":
        return f"SAE {p.sae.name} ({p.reconstruct}): {', '.join(p.metrics)}"
    if node.kind == "suite":
        return f"family {p.family} ({p.reconstruct}) as one system: {len(p.members)} members, each located cross-section by the member serving it, all patched at once"
    if node.kind == "baseline":
        where = f"on the cross-sections {p.beside} serves" if p.beside else "on every located cross-section"
        return f"basis {p.baseline.name}, fitted on train at each located cross-section, scored as an SAE {where}"
    if node.kind == "corpus":
        what = {"file": f"the text file {p.file}", "zoo": f"zoo model {p.model.ref}'s SAE corpus", "task": "the task's prompts"}[p.source]
        return f"{what}, up to {p.max_tokens} tokens in texts of at most {p.context}"
    if node.kind == "text":
        return f"SAE {p.sae.name} spliced in at its hook over the corpus: ce_loss_score, kl_div_score, explained variance, L0, dead fraction"
    if node.kind == "report":
        return f"{p.eval.report.out_dir} as {', '.join(p.eval.report.formats)}"
    return ""


def _reads(inputs: Sequence[str]) -> str:
    """A node's inputs, named one by one unless they are many: a whole-model report reads
    hundreds of score and baseline nodes, which the plan counts by kind instead."""
    if len(inputs) <= READS_LISTED:
        return ", ".join(inputs)
    kinds = Counter(i.split("[")[0] for i in inputs)
    named = [i for i in inputs if kinds[i.split("[")[0]] <= 2]
    counted = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n > 2)
    return ", ".join([*named, f"{counted} nodes"])


def _seconds(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def render_text(plan: Plan, costs: Mapping[str, Cost], cached: Callable[[str], bool], bounds: Sequence[FamilyBound] = ()) -> str:
    """`bounds` (sagec.estimate.after_locate_bound): per family, at most how many members run
    after locate; the total then counts those, not every member."""
    lines = [f"plan for {plan.spec_file} (spec {plan.spec_hash[:12]}), {len(plan.nodes)} nodes"]
    pending = 0  # score nodes not resolved yet: their cost is an upper bound
    for i, node in enumerate(plan.nodes, start=1):
        c = costs[node.id]
        hit = cached(node.key)
        state = "cached" if hit else _state(c)
        work = "" if hit or (c.forwards == 0 and c.backwards == 0) else f", {'at most ' if c.after_locate == 'unresolved' else ''}{c.forwards} fwd + {c.backwards} bwd prompt-passes, ~{_seconds(c.seconds)}"
        lines.append(f"  {i:>2}. {node.id}  [{state}{work}]  key {node.key[:12]}")
        lines.append(f"      {_summary(node, plan)}")
        if not hit and c.after_locate == "runs" and node.kind in ("score", "suite"):
            lines.append(f"      serves {', '.join(c.serves)}")
        if node.inputs:
            lines.append(f"      reads {_reads(node.inputs)}")
        if not hit:
            pending += node.kind == "score" and c.after_locate == "unresolved"
    total_f, total_b, total_s = total(plan, costs, cached, bounds)
    bound = "at most " if pending else ""
    if bounds:
        lines.append("after locate (only members serving a selected cross-section run, and locate selects at most K of them):")
        for kind in ("score", "baseline", "text"):
            mine = [(d, m, t) for b in bounds for k, d, m, t in b.nodes if k == kind]
            if mine:
                seconds = None if any(t is None for _, _, t in mine) else sum(t for _, _, t in mine)
                beside = " beside SAEs" if kind == "baseline" else ""
                lines.append(f"  {kind}: {sum(d for d, _, _ in mine)} declared{beside}, at most {sum(m for _, m, _ in mine)} run after locate, "
                             f"at most ~{_seconds(seconds)}")
        for b in bounds:
            lines.append(f"  {b.eval}/{b.family}: {b.members} member{'s' if b.members != 1 else ''}, at most {b.members_at_most} run, "
                         f"at most {b.forwards} fwd + {b.backwards} bwd prompt-passes, ~{_seconds(b.seconds)}")
    lines.append(f"to run: {bound}{total_f} forward and {total_b} backward prompt-passes, about {bound}{_seconds(total_s) if total_s is not None else '? (model size unknown)'}")
    if pending:
        lines.append(f"  {pending} score node(s) marked 'after locate': which SAEs serve a located cross-section is known once the "
                     f"locate artifact is cached; those that serve none are never loaded and cost nothing")
    return "\n".join(lines)


def _state(c: Cost) -> str:
    if c.after_locate == "unresolved":
        return "to run after locate"
    if c.after_locate == "unused":
        return "unused: serves none of the located cross-sections, loads nothing"
    if c.after_locate == "shared":
        return "to run: the same basis on the same cross-sections as an earlier baseline, scored once"
    return "to run"


def render_dot(plan: Plan, cached: Callable[[str], bool]) -> str:
    lines = ["digraph plan {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
    for node in plan.nodes:
        style = ', style=filled, fillcolor="#d8f0d8"' if cached(node.key) else ""
        label = f"{node.id}\\n{node.key[:12]}"
        lines.append(f'  "{node.id}" [label="{label}"{style}];')
        for i in node.inputs:
            lines.append(f'  "{i}" -> "{node.id}";')
    lines.append("}")
    return "\n".join(lines)
