"""Lowering: a checked Spec becomes a Plan (sagec/plan.py), without loading any weights.

Per eval: sample -> locate -> trace -> ground_truth -> score (one per SAE) and baseline (one per
listed basis) -> suite (one per family of two members or more, reading its members' score
nodes) -> report. Nodes that
compute the same thing (same key) are shared between evals: two evals on one task and model share
the prompt set, and one trace node per (model, prompt set) serves every eval on them, since the
runtime collects the union of the cross-sections all their locate nodes selected.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from importlib import metadata
from pathlib import Path

from sagec.plan import (
    CORPUS_CONTEXT,
    CORPUS_TOKENS,
    PASS_ORDER,
    PLAN_SCHEMA,
    BaselineParams,
    CorpusParams,
    GroundTruthParams,
    LocateParams,
    Node,
    Params,
    Plan,
    ReportParams,
    SampleParams,
    ScoreParams,
    SuiteMember,
    SuiteParams,
    TextParams,
    TraceParams,
    content_hash,
    node_key,
)
from sagec.names import TEXT_METRICS
from sagec.spec import Eval, Model, Sae, Spec

# The packages whose versions change results: a new version invalidates every artifact.
RESULT_PACKAGES = ("sagec", "torch", "transformers", "nnsight", "sae-lens")


def package_versions() -> tuple[tuple[str, str], ...]:
    out = []
    for name in RESULT_PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "absent"))
    return tuple(out)


def files_fingerprint(path: str) -> str:
    """A cheap identity of local weights (names, sizes, modification times), read at plan time
    without opening the weights: a retrained or replaced model gets a new key."""
    root = Path(path)
    if not root.exists():
        return "missing"
    entries = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in entries:
        st = p.stat()
        h.update(f"{p.relative_to(root) if p != root else p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _model_identity(model: Model) -> str:
    return files_fingerprint(model.ref) if model.source in ("path", "gguf") else model.ref


def _sae_identity(sae: Sae) -> str:
    if sae.source == "path" and sae.ref is not None:
        return files_fingerprint(sae.ref)
    return f"{sae.release}/{sae.sae_id}" if sae.source == "sae_lens" else str(sae.ref)


class _Builder:
    def __init__(self, versions: tuple[tuple[str, str], ...]):
        self.versions = versions
        self.nodes: dict[str, Node] = {}

    def add(self, node_id: str, kind: str, params: Params, inputs: tuple[str, ...], identity: str = "") -> str:
        # `identity` carries what the params cannot show at plan time (a fingerprint of local
        # weights); it enters the key through a pseudo-version.
        versions = self.versions + ((("weights", identity),) if identity else ())
        key = node_key(kind, params, tuple(self.nodes[i].key for i in inputs), versions)
        existing = self.nodes.get(node_id)
        if existing is not None and existing.key != key:
            raise ValueError(f"internal: two different {kind} nodes named {node_id}")
        self.nodes[node_id] = Node(node_id, kind, params, inputs, key)
        return node_id


def lower(spec: Spec, versions: tuple[tuple[str, str], ...] | None = None) -> Plan:
    versions = package_versions() if versions is None else versions
    b = _Builder(versions)
    spec_hash = content_hash(spec)

    # Traces are fused per (model, task): gather every locate node that feeds each first.
    locates_by_trace: dict[tuple[str, str], list[str]] = {}
    per_eval: list[tuple[str, str, str]] = []  # (eval name, sample id, locate id)
    for ev in spec.evals:
        model, task = spec.model(ev.model), spec.task(ev.task)
        ident = _model_identity(model)
        sample = b.add(f"sample[{task.name}@{model.name}]", "sample", SampleParams(task, model), (), ident)
        locate = b.add(f"locate[{ev.name}]", "locate", LocateParams(model, ev.locate, task.attributes), (sample,), ident)
        locates_by_trace.setdefault((model.name, task.name), []).append(locate)
        per_eval.append((ev.name, sample, locate))

    for ev, (_, sample, locate) in zip(spec.evals, per_eval, strict=True):
        model, task = spec.model(ev.model), spec.task(ev.task)
        ident = _model_identity(model)
        trace_inputs = (sample, *locates_by_trace[(model.name, task.name)])
        trace = b.add(f"trace[{model.name}/{task.name}]", "trace", TraceParams(model, ()), trace_inputs, ident)
        gt = b.add(
            f"ground_truth[{ev.name}]",
            "ground_truth",
            GroundTruthParams(model, ev.ground_truth, task.attributes),
            (sample, locate, trace),
            ident,
        )
        scores = []
        paired = [spec.sae(u.sae) for u in ev.saes if u.reconstruct == "residual_pair"]
        uses = Counter(u.sae for u in ev.saes)
        for use in ev.saes:
            sae = spec.sae(use.sae)
            label = sae.name if uses[sae.name] == 1 else f"{sae.name} ({use.reconstruct})"
            partners = tuple(p for p in paired if p.name != sae.name) if use.reconstruct == "residual_pair" else ()
            scores.append(
                b.add(
                    f"score[{ev.name}/{label}]",
                    "score",
                    # Text metrics are not the score node's: listing them keeps its key.
                    ScoreParams(label, model, sae, use.reconstruct, tuple(m for m in ev.score if m not in TEXT_METRICS), task.attributes, partners),
                    (sample, locate, trace, gt),
                    "|".join([ident, *map(_sae_identity, (sae, *partners))]),
                )
            )
        baselines = []
        for base in ev.baselines:
            inputs = (sample, locate, trace, gt)
            baselines.append(b.add(f"baseline[{ev.name}/{base.name}]", "baseline", BaselineParams(base, model, task.attributes), inputs, ident))
            for score in scores:
                label = b.nodes[score].params.label
                params = BaselineParams(base, model, task.attributes, beside=label)
                baselines.append(b.add(f"baseline[{ev.name}/{base.name} beside {label}]", "baseline", params, (*inputs, score), ident))
        suites = _suite_nodes(b, ev, scores, (sample, locate, trace, gt), tuple(paired), ident)
        text = _text_nodes(b, spec, ev, sample, ident)
        b.add(
            f"report[{ev.name}]",
            "report",
            ReportParams(ev, spec.file, spec_hash),
            (sample, locate, trace, gt, *scores, *baselines, *suites, *text),
        )

    depth: dict[str, int] = {}
    for node in b.nodes.values():  # inputs are always added before their consumers
        depth[node.id] = 1 + max((depth[i] for i in node.inputs), default=-1)
    ordered = sorted(b.nodes.values(), key=lambda n: (depth[n.id], PASS_ORDER.index(n.kind), n.id))
    return Plan(PLAN_SCHEMA, spec.file, spec_hash, versions, tuple(ordered))


def _suite_nodes(b: _Builder, ev, scores: list[str], inputs: tuple[str, ...], paired: tuple[Sae, ...], ident: str) -> tuple[str, ...]:
    """One suite node per family the eval lists with two members or more (`res[*]`, or
    `res[1], res[2]`), per reconstruction (METHOD.md section 6). It reads its members' score
    nodes (which sites each serves), so a member's key changes the suite's, and adding a suite
    changes no score node's key."""
    families: dict[tuple[str, str], list[str]] = {}
    for node_id in scores:
        params = b.nodes[node_id].params
        if "[" in params.sae.name:
            families.setdefault((params.sae.name.split("[")[0], params.reconstruct), []).append(node_id)
    twice = Counter(family for family, _ in families)
    out = []
    for (family, reconstruct), members in families.items():
        if len(members) < 2:
            continue
        label = family if twice[family] == 1 else f"{family} ({reconstruct})"
        first = b.nodes[members[0]].params
        params = SuiteParams(label, first.model, tuple(SuiteMember(b.nodes[m].params.label, b.nodes[m].params.sae) for m in members),
                             reconstruct, first.metrics, first.attributes, paired if reconstruct == "residual_pair" else ())
        out.append(b.add(f"suite[{ev.name}/{label}]", "suite", params, (*inputs, *members), ident))
    return tuple(out)


def _text_nodes(b: _Builder, spec: Spec, ev: Eval, sample: str, ident: str) -> tuple[str, ...]:
    """The corpus and one text node per SAE, when the eval's `score` lists a text metric. A text
    node reads only the corpus (and the task's prompts only when they are the corpus), so adding
    text metrics changes no other node's key, and an SAE listed under two reconstructions is
    spliced in once."""
    if not any(m in TEXT_METRICS for m in ev.score):
        return ()
    model = spec.model(ev.model)
    if ev.corpus is not None:
        params = CorpusParams(model, "file", CORPUS_TOKENS, CORPUS_CONTEXT, ev.corpus, _sha256(ev.corpus))
    else:
        params = CorpusParams(model, "zoo" if model.source == "zoo" else "task", CORPUS_TOKENS, CORPUS_CONTEXT)
    corpus = b.add(f"corpus[{ev.name}]", "corpus", params, (sample,) if params.source == "task" else (), ident)
    texts = []
    for name in dict.fromkeys(u.sae for u in ev.saes):
        sae = spec.sae(name)
        texts.append(b.add(f"text[{ev.name}/{name}]", "text", TextParams(name, model, sae), (corpus,), "|".join([ident, _sae_identity(sae)])))
    return (corpus, *texts)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
