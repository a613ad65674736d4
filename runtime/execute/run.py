"""`sagec run`: lower a checked spec, execute its plan against the cache, write each eval's
results.json. The command line (sagec/cli/run.py) only parses options and reports errors."""

from __future__ import annotations

import gc
import os
import re
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
    unused: dict[str, str] = field(default_factory=dict)  # score node id -> why it loaded nothing
    saes_loaded: tuple[str, ...] = ()  # spec names of the SAEs this run loaded (weights read)


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
    from runtime.execute.malloc import bound_allocator
    from runtime.passes import PASSES

    bound_allocator()
    reporter = reporter or Reporter()
    preflight(spec, reporter)
    plan = lower(spec)
    if only is not None and only not in {n.id for n in plan.nodes}:
        known = ", ".join(n.id for n in plan.nodes)
        raise SpecError.at(spec.evals[0].origin if spec.evals else _origin(spec), f"--only {only!r} names no node of this plan; the nodes are: {known}")
    cache = ArtifactCache(cache_dir or default_cache_dir())
    ctx = Context(cache, reporter)
    nodes = plan.upstream(only) if only else plan.nodes
    scores = [n for n in nodes if n.kind == "score" and (force or not cache.has(n.key))]
    # Before the first model pass: an SAE that cannot run on its model is refused now, from its
    # configs, instead of in its score node after minutes of locating and tracing. A zoo SAE not
    # built yet has no config: it is checked once built, if the located cross-sections need it.
    pairs = [(sae, n.params.model) for n in scores for sae in (n.params.sae, *n.params.partners)]
    for warning in check_saes(spec, [(s, m) for s, m in pairs if not _lazy(s)], require=True):
        reporter.warn(warning)
    texts = [n for n in nodes if n.kind == "text" and (force or not cache.has(n.key))]
    members = _Members(spec, plan, scores, texts, reporter, [n for n in nodes if n.kind == "score"])
    try:
        artifacts, outcomes = execute(plan, cache, PASSES, reporter=reporter, force=[n.id for n in nodes] if force else (), only=only,
                                      context=ctx, after_locate=members)
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
    loaded = tuple(name for kind, name in ctx.loaded if kind == "sae")
    return RunSummary(plan, tuple(outcomes), written, dict(ctx.counters), pages, dict(members.unused), loaded)


def _resolved(plan: Plan, upstream: set[str]) -> dict:
    """The model, task and SAEs an eval used, as checked: what `sagec diff` compares."""
    params = [n.params for n in plan.nodes if n.id in upstream]
    sample = next(p for p in params if isinstance(p, SampleParams))
    saes = {p.sae.name: serial.to_data(p.sae) for p in params if isinstance(p, ScoreParams)}  # once each, however many reconstructions
    return {"model": serial.to_data(sample.model), "task": serial.to_data(sample.task), "saes": list(saes.values())}


def _lazy(sae) -> bool:
    """A zoo SAE built on first use and not built yet (its config does not exist)."""
    if sae.source != "zoo":
        return False
    from runtime.zoo import saes as zoo_saes

    try:
        return not zoo_saes.entry(sae.ref).built
    except KeyError:
        return False  # an unknown name: the fit check reports it against the spec


class _Members:
    """Called by the executor once every locate node is done: resolves which score nodes serve a
    located cross-section (runtime/execute/members.py), builds the zoo SAEs those need together
    (one pass over the corpus instead of one per layer), and checks them against their model
    before any is scored. Members that serve nothing are named, never loaded or built."""

    def __init__(self, spec: Spec, plan: Plan, scores, texts, reporter: Reporter, every_score=()):
        self.spec, self.plan, self.scores, self.texts, self.reporter = spec, plan, list(scores), list(texts), reporter
        self.every_score = list(every_score) or self.scores
        self.unused: dict[str, str] = {}

    def __call__(self, artifacts) -> dict:
        from runtime.execute.members import architectures, resolve_all

        def meta(node_id: str):
            return artifacts[node_id].meta if node_id in artifacts else None

        todo = {n.id for n in self.scores}
        everything = resolve_all(self.plan, self.every_score, meta, architectures())
        resolved = {i: r for i, r in everything.items() if i in todo}
        self.unused = {i: r.reason for i, r in resolved.items() if not r.runs and r.reason}
        models = {n.id: n.params.model for n in self.scores}
        needed = list(dict.fromkeys((sae, models[i]) for i, r in resolved.items() for sae in r.needs))
        skipped = self._unused_texts(everything, artifacts)
        # Text metrics splice an SAE in at its own hook whatever was located, if it serves one:
        # built in the same pass.
        needed += [(n.params.sae, n.params.model) for n in self.texts if n.id not in skipped and (n.params.sae, n.params.model) not in needed]
        if self.unused:
            self.reporter.info(f"{len(resolved) - len(self.unused)} of {len(resolved)} score nodes serve a located cross-section; "
                               f"unused (never loaded): {', '.join(sorted((self.plan.node(i).params.label for i in self.unused), key=_numbers_as_numbers))}")
        lazy = [sae for sae, _ in needed if _lazy(sae)]
        if lazy:
            from runtime.zoo import saes as zoo_saes

            zoo_saes.prepare([sae.ref for sae in lazy])
            for warning in check_saes(self.spec, [(s, m) for s, m in needed if s in lazy], require=True):
                self.reporter.warn(warning)
        return skipped

    def _unused_texts(self, resolved, artifacts) -> dict:
        """Text nodes of SAEs that serve no located cross-section in any of their eval's score
        nodes: not loaded for text metrics either (issue 13: an unused member costs no load).
        Their artifact says so; the executor does not cache it, since a text node's key does not
        depend on what was located."""
        from runtime.store.cache import Artifact

        out = {}
        for node in self.texts:
            eval_name = node.id[len("text["):].split("/", 1)[0]
            mine = [n for n in self.every_score if n.id.startswith(f"score[{eval_name}/") and n.params.sae.name == node.params.sae.name]
            if not mine or not all(n.id in resolved and not resolved[n.id].runs for n in mine):
                continue
            reason = resolved[mine[0].id].reason or "it serves no located cross-section"
            corpus = artifacts.get(node.inputs[0])
            sae = node.params.sae
            out[node.id] = Artifact({"text": {"name": node.params.label, "location": None, "hook": sae.hook or f"{sae.source} {sae.ref or sae.sae_id}",
                                              "corpus": corpus.meta["corpus"]["name"] if corpus is not None else "", "scores": None,
                                              "reason": f"{reason}; its text metrics were not computed either"}})
        return out


def _out_dir(ev, override: str | os.PathLike[str] | None, n_evals: int) -> Path:
    """The spec's `report` folder, or --out (with one subfolder per eval when there are several)."""
    if override is None:
        return Path(ev.report.out_dir)
    return Path(override) / ev.name if n_evals > 1 else Path(override)


def _origin(spec: Spec):
    from sagec.spec import Origin

    return Origin(spec.file, 1, 1)


def _numbers_as_numbers(label: str) -> list:
    """Sort key for member labels: l1[2] before l1[10]."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]
