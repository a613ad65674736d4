"""`sagec run`: lower a checked spec, execute its plan against the cache, write each eval's
results.json. The command line (sagec/cli/run.py) only parses options and reports errors."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import runtime.zoo  # noqa: F401  - registers the zoo's models and SAEs, which specs may name
from runtime.execute.executor import Context, NodeOutcome, execute
from runtime.execute.fits import check_saes
from runtime.execute.progress import Reporter
from runtime.store.atomic import write_json
from runtime.store.cache import ArtifactCache
from runtime.store.userdirs import cache_dir as default_cache_dir
from sagec import serial
from sagec.diagnostics import SpecError
from sagec.lower import lower
from sagec.plan import Plan, SampleParams, ScoreParams
from sagec.spec import Spec


@dataclass(frozen=True)
class RunSummary:
    plan: Plan
    outcomes: tuple[NodeOutcome, ...]
    results: dict[str, Path]  # eval name -> results.json written
    counters: dict[str, int]  # model passes, by kind
    reports: dict[str, Path] = field(default_factory=dict)  # eval name -> report.html written


def preflight(spec: Spec, reporter: Reporter) -> None:
    """Problems that would otherwise surface after minutes of work: a missing NDIF key, an NDIF
    that cannot be reached, client and server versions that differ where it matters."""
    used = {e.model for e in spec.evals}
    for model in (m for m in spec.models if m.name in used and m.remote == "ndif"):
        if model.source != "hub":
            raise SpecError.at(model.origin, f"model {model.name}: `remote ndif` runs models NDIF hosts, named by their hub id; this one has source {model.source}")
        if not os.environ.get("NDIF_API_KEY"):
            raise SpecError.at(model.origin, f"model {model.name} runs remotely on NDIF, but NDIF_API_KEY is not set", hint="get a key at login.ndif.us and `export NDIF_API_KEY=...`")
        from nnsight import ndif

        try:
            versions = ndif.compare()
        except Exception as e:  # noqa: BLE001 - any failure to reach the service means the same
            raise SpecError.at(model.origin, f"model {model.name} runs remotely on NDIF, which cannot be reached ({type(e).__name__}: {e})") from None
        for package, v in versions.critical_mismatches.items():
            reporter.warn(f"NDIF runs {package} {v['remote']} but this machine has {v['local']}; remote results may differ")


def run_spec(
    spec: Spec,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    only: str | None = None,
    reporter: Reporter | None = None,
) -> RunSummary:
    from runtime.passes import PASSES

    reporter = reporter or Reporter()
    preflight(spec, reporter)
    plan = lower(spec)
    if only is not None and only not in {n.id for n in plan.nodes}:
        known = ", ".join(n.id for n in plan.nodes)
        raise SpecError.at(spec.evals[0].origin if spec.evals else _origin(spec), f"--only {only!r} names no node of this plan; the nodes are: {known}")
    cache = ArtifactCache(cache_dir or default_cache_dir())
    ctx = Context(cache, reporter)
    nodes = plan.upstream(only) if only else plan.nodes
    scores = [n for n in nodes if n.kind == "score" and not cache.has(n.key)]
    _build_zoo_saes_together(scores)
    # Before the first model pass: an SAE that cannot run on its model is refused now, from its
    # configs, instead of in its score node after minutes of locating and tracing.
    for warning in check_saes(spec, [(sae, n.params.model) for n in scores for sae in (n.params.sae, *n.params.partners)], require=True):
        reporter.warn(warning)
    try:
        artifacts, outcomes = execute(plan, cache, PASSES, reporter=reporter, force=[n.id for n in nodes] if force else (), only=only, context=ctx)
    finally:
        gc.unfreeze()  # the sample pass froze its prompts for the run (runtime/passes/sample.py)
    written: dict[str, Path] = {}
    pages: dict[str, Path] = {}
    reports = [n for n in plan.by_kind("report") if n.id in artifacts]
    for node in reports:
        ev = node.params.eval
        upstream = {n.id for n in plan.upstream(node.id)}
        results = dict(artifacts[node.id].meta["results"])
        results["spec"] = {**results["spec"], "resolved": _resolved(plan, upstream)}
        results["versions"] = dict(plan.versions)
        results["plan"] = {n.id: n.key for n in plan.nodes if n.id in upstream}
        results["run"] = {
            "nodes": [{"id": o.node_id, "cached": o.cached, "seconds": round(o.seconds, 3)} for o in outcomes if o.node_id in upstream],
            "model_passes": dict(ctx.counters),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        written[ev.name] = write_json(_out_dir(ev, out_dir, len(plan.by_kind("report"))) / "results.json", results)
        if "html" in ev.report.formats:
            from runtime.report.html import write_report

            pages[ev.name] = write_report(written[ev.name].parent)
    return RunSummary(plan, tuple(outcomes), written, dict(ctx.counters), pages)


def _resolved(plan: Plan, upstream: set[str]) -> dict:
    """The model, task and SAEs an eval used, as checked: what `sagec diff` compares."""
    params = [n.params for n in plan.nodes if n.id in upstream]
    sample = next(p for p in params if isinstance(p, SampleParams))
    saes = {p.sae.name: serial.to_data(p.sae) for p in params if isinstance(p, ScoreParams)}  # once each, however many reconstructions
    return {"model": serial.to_data(sample.model), "task": serial.to_data(sample.task), "saes": list(saes.values())}


def _build_zoo_saes_together(scores) -> None:
    """Lazily built zoo SAEs (SmolLM2's) train from activations of a shared corpus: building all
    that this run needs at once takes one pass of the model over the corpus instead of one per
    layer. Unknown names are left to the score pass, which reports them against the spec."""
    refs = [n.params.sae.ref for n in scores if n.params.sae.source == "zoo"]
    if not refs:
        return
    from runtime.zoo import saes as zoo_saes

    known = []
    for ref in refs:
        try:
            zoo_saes.entry(ref)
            known.append(ref)
        except KeyError:
            continue
    if known:
        zoo_saes.prepare(known)


def _out_dir(ev, override: str | os.PathLike[str] | None, n_evals: int) -> Path:
    """The spec's `report` folder, or --out (with one subfolder per eval when there are several)."""
    if override is None:
        return Path(ev.report.out_dir)
    return Path(override) / ev.name if n_evals > 1 else Path(override)


def _origin(spec: Spec):
    from sagec.spec import Origin

    return Origin(spec.file, 1, 1)
