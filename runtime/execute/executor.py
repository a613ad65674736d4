"""Runs a Plan: nodes in topological order, each artifact loaded from the cache when its key is
there and computed (then stored atomically) when it is not.

Because every artifact is stored under its key the moment it is finished, re-running the same
command after a crash resumes from the last finished node, and a spec edit that changes one node's
key recomputes that node and what depends on it, nothing else. A pass is a function
`run(node, inputs, ctx) -> Artifact` (runtime/passes/); the executor knows nothing of what
passes compute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from runtime.execute.progress import Reporter
from runtime.store.cache import Artifact, ArtifactCache, CorruptArtifact
from sagec.diagnostics import SpecError
from sagec.plan import Node, Plan

SAE_MEMORY = 1 << 30  # bytes of SAE weights a run keeps loaded beyond what the next node reads

Pass = Callable[[Node, dict[str, Artifact], "Context"], Artifact]
# Node kinds that load SAEs or read which serve the located cross-sections: every locate node
# comes before them in a plan's order (sagec/lower.py sorts by depth, then by PASS_ORDER).
AFTER_LOCATE = ("score", "suite", "baseline", "text", "report")


class NodeFailed(Exception):
    """A pass raised while computing a node; the message names the node."""

    def __init__(self, node: Node, cause: BaseException):
        self.node = node
        self.cause = cause
        super().__init__(f"{node.id} failed: {type(cause).__name__}: {cause}")


@dataclass
class Context:
    """What passes share during one run: loaded models and SAEs (each loaded once while some
    node still needs it), the reporter, and counters of model passes (tests and `sagec plan`
    estimates read them)."""

    cache: ArtifactCache
    reporter: Reporter
    resources: dict[tuple[str, str], object] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    loaded: list[tuple[str, str]] = field(default_factory=list)  # every resource ever loaded, in order

    def resource(self, kind: str, name: str, load: Callable[[], object]) -> object:
        key = (kind, name)
        if key not in self.resources:
            self.resources[key] = load()
            if key not in self.loaded:
                self.loaded.append(key)
        return self.resources[key]

    def release(self, kind: str, names: Iterable[str]) -> None:
        for name in names:
            self.resources.pop((kind, name), None)

    def count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n


@dataclass(frozen=True)
class NodeOutcome:
    node_id: str
    cached: bool
    seconds: float


def execute(
    plan: Plan,
    cache: ArtifactCache,
    passes: dict[str, Pass],
    *,
    reporter: Reporter,
    force: Iterable[str] = (),
    only: str | None = None,
    context: Context | None = None,
    after_locate: Callable[[dict[str, Artifact]], dict[str, Artifact] | None] | None = None,
) -> tuple[dict[str, Artifact], list[NodeOutcome]]:
    """`force`: node ids to recompute even when cached. `only`: run that node and what it needs.
    `after_locate(artifacts)`: called once, before the first node that loads an SAE, scores or
    reports (when every locate node is done), with the artifacts so far: where the run decides
    which SAEs it needs (runtime/execute/members.py). It may return artifacts for nodes that have
    nothing to do in this run (a text node of an SAE that serves no located cross-section): those
    are used as they are and never cached, since their keys do not depend on what was located."""
    nodes = plan.upstream(only) if only is not None else plan.nodes
    forced = set(force)
    ctx = context or Context(cache, reporter)
    artifacts: dict[str, Artifact] = {}
    outcomes: list[NodeOutcome] = []
    pending = after_locate
    transient: dict[str, Artifact] = {}
    # An SAE stays loaded until the last node that reads it is done, and while the SAEs held
    # weigh more than SAE_MEMORY only those the next node reads stay: a family of wide SAEs
    # over every layer would otherwise hold every member's weights at once (its score nodes,
    # then its suite, then its text nodes each read them all).
    last_use = {name: index for index, node in enumerate(nodes, start=1) for name in saes_read(node)}
    for index, node in enumerate(nodes, start=1):
        if pending is not None and node.kind in AFTER_LOCATE:
            transient = dict(pending(artifacts) or {})
            pending = None
        started = time.perf_counter()
        artifact = None if node.id in forced else _load(cache, node, reporter)
        cached = artifact is not None
        if artifact is None and node.id in transient:
            artifact = transient[node.id]
        elif artifact is None:
            reporter.node_started(node, index, len(nodes))
            inputs = {i: artifacts[i] for i in node.inputs}
            try:
                artifact = passes[node.kind](node, inputs, ctx)
            except (SpecError, KeyboardInterrupt):
                raise
            except Exception as e:
                raise NodeFailed(node, e) from e
            cache.save(node.key, artifact)
        artifacts[node.id] = artifact
        outcome = NodeOutcome(node.id, cached, time.perf_counter() - started)
        outcomes.append(outcome)
        reporter.node_finished(node, index, len(nodes), cached, outcome.seconds)
        ctx.release("sae", [name for name in saes_read(node) if last_use[name] == index])
        held = [name for kind, name in ctx.resources if kind == "sae"]
        if sum(_weight_bytes(ctx.resources["sae", name]) for name in held) > SAE_MEMORY:
            following = saes_read(nodes[index]) if index < len(nodes) else set()
            ctx.release("sae", [name for name in held if name not in following])
    return artifacts, outcomes


def _weight_bytes(loaded) -> int:
    module = getattr(loaded, "sae", None)
    return sum(p.numel() * p.element_size() for p in module.parameters()) if module is not None else 0


def saes_read(node: Node) -> set[str]:
    """The spec names of the SAEs a node may load: its own, a suite's members, the partners."""
    p = node.params
    names = {p.sae.name} if getattr(p, "sae", None) is not None else set()
    names.update(m.sae.name for m in getattr(p, "members", ()))
    names.update(s.name for s in getattr(p, "partners", ()))
    return names


def _load(cache: ArtifactCache, node: Node, reporter: Reporter) -> Artifact | None:
    if not cache.has(node.key):
        return None
    try:
        return cache.load(node.key)
    except CorruptArtifact as e:
        reporter.warn(f"{node.id}: cached artifact is corrupt and will be recomputed ({e})")
        cache.discard(node.key)
        return None
