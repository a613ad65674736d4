"""The execution plan: the contract between the compiler and the runtime.

A Plan is a DAG of pass nodes in topological order. Each node has a kind, typed parameters (frozen
dataclasses holding the parts of the checked spec the pass needs: the runtime never sees the AST
or the rest of the spec), the ids of its input nodes, and a content key. The key is a sha256 over
the kind, the parameters (source positions left out, so moving a line does not invalidate a
cache), the input keys, and the versions that change results. Two nodes with the same key compute
the same artifact, which is what makes the runtime's cache, resume and "adding an SAE runs only
that SAE's nodes" work.

Plain data throughout: `serial.to_data` / `serial.from_data` round-trip a Plan exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Union

from sagec import serial
from sagec.locations import CrossSection
from sagec.spec import Baseline, Eval, GroundTruth, Locate, Model, Sae, Task

PLAN_SCHEMA = 1

# Bump a pass's version when its implementation changes what it computes: every cached artifact
# of that kind (and everything downstream, through the input keys) is then recomputed.
PASS_VERSIONS = {
    "sample": 1,
    "locate": 3,  # 2: `select top K` is K in total; residual streams ranked apart; method integrated; 3: verified on the suffix path (the same numbers to float tolerance)
    "trace": 3,  # 2: the MLP's input (mlp_in) beside every MLP output, for transcoders; 3: only the rows later passes read (the twins' and counterfactual's test split)
    "ground_truth": 2,  # 2: sufficiency's direction is "one" (the closer to 1 the better)
    "score": 6,  # 2: results keyed by the spec's SAE name (zoo SAEs' own as zoo_name); 3: as ground_truth 2; 4: residual_pair; 5: TransformerLens preprocessing (centring); 6: latents held sparse (the same numbers to float tolerance)
    "baseline": 2,  # 2: a complete basis runs no splice and no removal (its spliced metric null with the reason)
    "suite": 3,  # 2: sparse latents read in decoder-row units; greedy in O(k C d); 3: a transcoder member reads its MLP input
    "corpus": 1,
    "text": 3,  # 1: ce_loss_score, kl_div_score, explained variance, L0, dead fraction on a corpus (METHOD.md section 8); 2: log-probabilities and KL a row at a time (the same numbers to float tolerance); 3: latents sparse (likewise)
    "report": 5,  # 2: seeds recorded; 3: as ground_truth 2; 4: baselines; 5: suites
}
PASS_ORDER = tuple(PASS_VERSIONS)

# The text metrics' corpus (METHOD.md section 8): texts cut to CORPUS_CONTEXT tokens, taken until
# CORPUS_TOKENS, SAEBench core's default for its reconstruction metrics (10 batches of 16
# prompts of 128 tokens; sae_bench/evals/core/main.py).
CORPUS_TOKENS = 20_480
CORPUS_CONTEXT = 128


@dataclass(frozen=True)
class SampleParams:
    """Build the prompt set of `task` with `model`'s tokenizer (METHOD.md section 1)."""

    task: Task
    model: Model  # only its tokenizer is used


@dataclass(frozen=True)
class LocateParams:
    """Rank the search space by attribution patching with the task's counterfactual and each
    attribute's own twin; select; optionally verify by real patching (METHOD.md section 2)."""

    model: Model
    locate: Locate
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class TraceParams:
    """One batched forward per prompt family (clean, and each kind of twin) collecting every
    activation downstream passes read: the located cross-sections, and at each of their layers and
    positions the residual stream before, between and after the sublayers (what residual SAE
    reconstruction reads), plus any `extra` locations. Also the task metric per prompt.

    The set depends on the located cross-sections, never on which SAEs the spec lists, so adding
    an SAE adds no model pass for activations."""

    model: Model
    extra: tuple[CrossSection, ...]


@dataclass(frozen=True)
class GroundTruthParams:
    """Fit supervised dictionaries on train at every cross-section; validate on test."""

    model: Model
    ground_truth: GroundTruth
    attributes: tuple[str, ...]


@dataclass(frozen=True)
class ScoreParams:
    """Score one SAE, through `reconstruct`, against the ground truth (METHOD.md section 5).

    `label` names the SAE in the results: its spec name, with the reconstruction added when the
    eval lists the SAE more than once. `partners`: with `residual_pair`, the eval's other
    residual_pair SAEs, among which the runtime finds the one on the other side of each
    sublayer (where an SAE reads is known only once it is loaded)."""

    label: str
    model: Model
    sae: Sae
    reconstruct: str
    metrics: tuple[str, ...]
    attributes: tuple[str, ...]
    partners: tuple[Sae, ...] = ()


@dataclass(frozen=True)
class BaselineParams:
    """Fit one trivial basis at every located cross-section on the train split and score it as
    an SAE (METHOD.md section 7), on all of them or, `beside` an SAE (its label), on exactly the
    cross-sections that SAE serves, read from its score node: control is judged on the sites an
    edit patches together, so an SAE is compared with a basis on the same ones. Score nodes
    never read a baseline, so adding one leaves their keys as they were."""

    baseline: Baseline
    model: Model
    attributes: tuple[str, ...]
    beside: str | None = None


@dataclass(frozen=True)
class CorpusParams:
    """The text the text metrics run on (METHOD.md section 8), tokenized by `model`'s tokenizer:
    `source` "file" (the eval's `corpus`, one text a line), "zoo" (the zoo model's own SAE
    corpus, runtime/zoo/corpus.py) or "task" (the prompts of the sample node it reads). Texts are
    shuffled (seeded) and cut to `context` tokens, and taken until `max_tokens`. The file is
    keyed by its content (`file_sha256`), not where it lies."""

    model: Model
    source: str
    max_tokens: int
    context: int
    file: str | None = None
    file_sha256: str | None = None


@dataclass(frozen=True)
class TextParams:
    """One SAE spliced in at its own hook over the corpus (METHOD.md section 8): ce_loss_score,
    kl_div_score, and explained variance, L0 and dead fraction on the same tokens. Independent of
    the eval's reconstruction variant and of the task's cross-sections, so one node per SAE."""

    label: str
    model: Model
    sae: Sae


@dataclass(frozen=True)
class SuiteMember:
    """One member of a suite: its label in the results (its score node's) and its SAE."""

    label: str
    sae: Sae


@dataclass(frozen=True)
class SuiteParams:
    """Score a family of SAEs as one dictionary system (METHOD.md section 6): each located
    cross-section reconstructed by the member serving it (read from the members' score nodes,
    the one at its own hook first), all patched at once; control with k latents in total across
    the members; coverage. `partners`: the eval's residual_pair SAEs, which members may read
    beside them (their score nodes say which)."""

    family: str  # the name results key it by: the family, with the reconstruction when listed under two
    model: Model
    members: tuple[SuiteMember, ...]
    reconstruct: str
    metrics: tuple[str, ...]
    attributes: tuple[str, ...]
    partners: tuple[Sae, ...] = ()


@dataclass(frozen=True)
class ReportParams:
    """Gather everything of one eval into results.json (and the report)."""

    eval: Eval
    spec_file: str
    spec_hash: str


Params = Union[SampleParams, LocateParams, TraceParams, GroundTruthParams, ScoreParams, BaselineParams, SuiteParams, CorpusParams, TextParams, ReportParams]


@dataclass(frozen=True)
class Node:
    id: str  # readable and unique in the plan, e.g. "score[ioi_ground_truth/res[2]]"
    kind: str  # one of PASS_ORDER
    params: Params
    inputs: tuple[str, ...]  # ids of the nodes whose artifacts this one reads
    key: str  # sha256 hex, see the module docstring


@dataclass(frozen=True)
class Plan:
    schema: int
    spec_file: str
    spec_hash: str  # sha256 of the checked spec, positions left out
    versions: tuple[tuple[str, str], ...]  # (package, version) pairs that enter every key
    nodes: tuple[Node, ...]  # topological order

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def by_kind(self, kind: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.kind == kind)

    def upstream(self, node_id: str) -> tuple[Node, ...]:
        """The node and everything it depends on, in plan order."""
        wanted: set[str] = set()
        stack = [node_id]
        while stack:
            current = stack.pop()
            if current not in wanted:
                wanted.add(current)
                stack.extend(self.node(current).inputs)
        return tuple(n for n in self.nodes if n.id in wanted)


def identity_data(obj: Any) -> Any:
    """The plain data of `obj` without source positions: what a key is computed over."""
    data = serial.to_data(obj)
    return _strip_origins(data)


# Fields that say how or where to compute, not what: a batch size, a device or a backend does not
# change an artifact (beyond float noise), so changing them must not invalidate the cache. Nor
# does where a corpus file lies: its content is keyed, as CorpusParams.file_sha256.
_NOT_IN_KEY = {"Model": {"batch_size", "device", "remote"}, "CorpusParams": {"file"}}


def _strip_origins(data: Any) -> Any:
    if isinstance(data, dict):
        skip = _NOT_IN_KEY.get(data.get("type"), set()) | {"origin"}
        return {k: _strip_origins(v) for k, v in data.items() if k not in skip}
    if isinstance(data, list):
        return [_strip_origins(x) for x in data]
    return data


def content_hash(obj: Any) -> str:
    text = json.dumps(identity_data(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def node_key(kind: str, params: Params, input_keys: tuple[str, ...], versions: tuple[tuple[str, str], ...]) -> str:
    payload = {
        "kind": kind,
        "pass_version": PASS_VERSIONS[kind],
        "params": identity_data(params),
        "inputs": list(input_keys),
        "versions": [list(v) for v in versions],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_json(plan: Plan) -> str:
    return json.dumps(serial.to_data(plan), indent=1, sort_keys=True, allow_nan=False)


def from_json(text: str) -> Plan:
    plan = serial.from_data(json.loads(text))
    if not isinstance(plan, Plan):
        raise ValueError("not a sagec plan")
    return plan


serial.register(*(v for v in list(globals().values()) if isinstance(v, type) and dataclasses.is_dataclass(v)))
