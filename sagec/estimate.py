"""What a plan will cost, from configs alone (no weights): prompts, model passes, a time guess.

Passes are counted in prompt-forwards (one prompt through the model once); a backward counts as
two forwards. The time guess divides the work of a forward, 2 x tokens x the parameters every
token multiplies by (all but the embedding) plus 2 x the unembedding's (its final position
alone: sagec never asks for other logits), by a throughput measured on this project's reference
machine (2 CPU cores: SmolLM2-135M ran 896 tokens in 64 prompts in about 2 s), so it is an order
of magnitude, not a promise. Counting the embedding per token would make Gemma-3-270M, whose
262k-token embedding is 63% of its parameters, look twice as slow as it is.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sagec.locations import Location
from sagec.plan import CORPUS_CONTEXT, CORPUS_TOKENS, Node, Plan
from sagec.selection import pools

# The runtime recomputes only a prompt's last tokens, from the first patched layer on, on the
# clean prefix's key/value cache once a model's blocks (12 L d^2 weights) reach this size and
# `suffix_pays` (runtime/passes/common.py `suffix_path` decides by both); on a smaller model one
# long batch of full forwards is cheaper.
SUFFIX_PATH_MIN_PARAMETERS = 20_000_000


def suffix_pays(suffix: int, length: float) -> bool:
    """Whether recomputing a prompt's last `suffix` of `length` tokens beats the full forward: the
    patch lies in the last three quarters of it, so enough prefix is reused."""
    return suffix <= max(1, (3 * length) // 4) and suffix < length

# Model FLOP/s on 2 CPU cores by the model's dtype. float32: 2 x (896 tokens x 106e6 + 64 prompts x
# 28e6) in about 2 s. bfloat16 runs on the CPU's bf16 dot products (avx512_bf16): the main job's
# nodes took 138-158 s against float32's 318-413 s. float16 has no such kernels: a matmul runs at
# 2.4 GFLOP/s, 70 times slower than float32.
CPU_FLOPS = {"float32": 1.0e11, "bfloat16": 2.5e11, "float16": 3.0e9}
SPARSE_CONTROL_KS = 7  # runtime.sage.control.KS has seven k values
VERIFY_PROMPTS = 64  # locate verifies each candidate on at most this many train prompts
TOKENS_GUESS = 20  # prompt length when the prompts are not sampled yet

# Sizes of the built-in models, so `sagec plan` needs no download to estimate: (layers,
# parameters per token, parameters of the unembedding).
KNOWN_SIZES = {"smollm2-135m": (30, 106_203_456, 28_311_552), "gemma-3-270m": (18, 100_326_016, 167_772_160)}


@dataclass(frozen=True)
class Cost:
    prompts: int
    forwards: int  # prompt-forwards
    backwards: int  # prompt-backwards
    seconds: float | None  # None when the model's size is unknown
    # Score nodes (and baselines beside them) are resolved after locate (DESIGN.md "The plan"):
    # "unresolved" while their locate artifact is not cached (the cost is then an upper bound:
    # the SAE serving every located cross-section), "runs" or "unused" (costs nothing) once it is,
    # or for a baseline "shared": an earlier node scores the same basis on the same sites.
    after_locate: str | None = None
    serves: tuple[str, ...] = ()  # the located cross-sections it serves, once resolved

    def to_json(self) -> dict:
        out = {"prompts": self.prompts, "forwards": self.forwards, "backwards": self.backwards, "seconds": self.seconds}
        if self.after_locate is not None:
            out["after_locate"] = self.after_locate
            if self.after_locate != "unresolved":
                out["serves"] = list(self.serves)
        return out


def model_size(node: Node) -> tuple[int, int, int] | None:
    """(layers, parameters per token, unembedding parameters) from the model's config.json where
    it is on disk (a folder, or the local Hugging Face cache for a hub model), else known sizes."""
    model = node.params.model  # every pass but report carries its model
    if model.source == "zoo" and model.ref in KNOWN_SIZES:
        return KNOWN_SIZES[model.ref]
    config = None
    if model.source == "path":
        config = Path(model.ref) / "config.json"
    elif model.source == "hub":
        from huggingface_hub import try_to_load_from_cache  # plain files; does not import torch

        cached = try_to_load_from_cache(model.ref, "config.json")
        config = Path(cached) if isinstance(cached, str) else None
    if config is not None:
        try:
            c = json.loads(config.read_text())
        except (OSError, ValueError):
            return None
        d = c.get("hidden_size") or c.get("n_embd")
        layers = c.get("num_hidden_layers") or c.get("n_layer")
        vocab = c.get("vocab_size")
        if d and layers and vocab:
            return layers, 12 * layers * d * d, vocab * d
    return None


def estimate(plan: Plan, served: Mapping[str, Sequence[str]] | None = None, located: Mapping[str, Sequence[str]] | None = None) -> dict[str, Cost]:
    """`served`: for score nodes whose locate artifact is cached, the located cross-sections each
    serves (runtime/execute/members.py; empty: it loads nothing and costs nothing). `located`:
    the cross-sections each cached locate node selected."""
    served, located = served or {}, located or {}
    out: dict[str, Cost] = {}
    shared = _shared_baselines(plan, served, located)
    for node in plan.nodes:
        if node.kind == "report":
            out[node.id] = Cost(0, 0, 0, 0.0)
            continue
        if node.kind == "text" and _unused_text(plan, node, served):
            out[node.id] = Cost(0, 0, 0, 0.0, "unused", ())
            continue
        if node.kind in ("corpus", "text"):
            out[node.id] = _text_cost(node)
            continue
        resolved = _resolved(node, served)
        if resolved == ():
            out[node.id] = Cost(0, 0, 0, 0.0, "unused", ())
            continue
        if node.id in shared:  # the same basis on the same sites: the run scores it once
            out[node.id] = Cost(0, 0, 0, 0.0, "shared", tuple(resolved or ()))
            continue
        task = _task(plan, node)
        n, n_train = task.samples, round(task.samples * task.split.train)
        n_test = n - n_train
        groups = 1 + (1 if task.counterfactual else 0) + len(task.attributes)
        forwards = backwards = 0
        if node.kind == "locate":
            loc = node.params.locate
            selected = (loc.top or 8) * (groups - 1 if loc.per_family or loc.top is None else 1) * len(pools(loc))
            forwards = n_train * groups + (min(n_train, VERIFY_PROMPTS) * selected * 3 // 2 if loc.verify else 0)
            backwards = n_train
            if loc.method == "integrated":
                # steps forward-and-backward passes per family and site group (a component of
                # a layer: runtime/passes/locate.py groups); the layers from the config, else 30.
                size = model_size(node)
                layers = len(loc.layers) if loc.layers is not None else size[0] if size is not None else 30
                extra = n_train * (groups - 1) * layers * len(loc.components) * loc.steps
                forwards, backwards = forwards + extra, backwards + extra
        elif node.kind == "trace":
            forwards = n + n_test * (groups - 1)  # every clean prompt, the other groups' test split
        elif node.kind == "ground_truth":
            forwards = n_test * (3 + 2 * len(task.attributes))
        elif node.kind == "score":
            forwards = n_test * (4 + 2 * len(task.attributes) + len(task.attributes) * SPARSE_CONTROL_KS)
        elif node.kind == "suite":
            # Its members' reconstructions patched together: spliced, removed, every edit.
            forwards = n_test * (2 + len(task.attributes) * SPARSE_CONTROL_KS)
        elif node.kind == "baseline":
            # Scored as an SAE, against the supervised reference its ground truth or SAE already
            # validated in the run; SAEs that serve the same cross-sections share it (not counted).
            # A complete basis (all its directions kept) runs no splice and no removal.
            complete = node.params.baseline.components is None
            forwards = n_test * (0 if complete else 2) + n_test * len(task.attributes) * SPARSE_CONTROL_KS
        size = model_size(node)
        seconds = None
        if size is not None:
            tokens = TOKENS_GUESS * size[1]
            if node.kind in ("ground_truth", "score", "suite", "baseline"):
                tokens = _patched_tokens(plan, node, task, size, resolved, located)
            seconds = (forwards + 2 * backwards) * 2 * (tokens + size[2]) / CPU_FLOPS[node.params.model.dtype]
        state = None if resolved is None and not _after_locate(node) else ("unresolved" if resolved is None else "runs")
        out[node.id] = Cost(n if node.kind != "sample" else n * groups, forwards, backwards, seconds, state, tuple(resolved or ()))
    return out


def _patched_tokens(plan: Plan, node: Node, task, size: tuple[int, int, int], resolved: tuple[str, ...] | None,
                    located: Mapping[str, Sequence[str]]) -> float:
    """Token-parameters one patched prompt-forward of `node` multiplies by: on the suffix path,
    the tokens from the earliest patched position on, through the layers from the first patched
    one (the sites it patches, once known; before locate, the worst its search space allows: the
    earliest position searched, the first layer searched), else every token of the prompt."""
    length, from_end = prompt_shape(task)
    full = length * size[1]
    if size[1] < SUFFIX_PATH_MIN_PARAMETERS:
        return full
    sites = resolved if resolved else located.get(node.inputs[1])
    if sites:
        names = [s.rpartition("@")[2] for s in sites]
        first = min(_layer(s.rpartition("@")[0]) for s in sites)
    else:
        loc = plan.node(node.inputs[1]).params.locate
        names, first = list(loc.positions), min(loc.layers) if loc.layers else 0
    suffix = max(from_end.get(n, length) for n in names)
    if not suffix_pays(suffix, length):
        return full
    return suffix * size[1] * (size[0] - first) / size[0]


def _layer(location: str) -> int:
    """The layer of a location as str(Location) writes it ("mlp_out 0", "head 23.3")."""
    return Location.parse(location).layer


def prompt_shape(task) -> tuple[float, dict[str, int]]:
    """The task's prompts' length in tokens and, per named position, the most tokens from it to
    the end (what a patch there recomputes), guessed from the templates without a tokenizer:
    a word or punctuation mark per token and one per variable (vocabularies are single tokens as
    a rule); the most over templates, the length their mean."""
    lengths, from_end = [], {}
    for template in task.templates:
        text = re.sub(r"{%.*?%}|{#.*?#}", "", template.text)
        tokens = [m.group(1) or "" for m in re.finditer(r"{{\s*(\w+)[^}]*}}|\w+|[^\w\s]", text)]
        n = max(1, len(tokens))
        lengths.append(n)
        for p in task.positions:
            if p.kind == "last":
                at = n - 1
            elif p.kind == "first":
                at = 0
            else:
                hits = [i for i, t in enumerate(tokens) if t == p.variable]
                if not hits or (p.occurrence > 0 and p.occurrence > len(hits)):
                    continue
                at = hits[p.occurrence - 1] if p.occurrence > 0 else hits[p.occurrence]
            at = min(max(at + p.offset, 0), n - 1)
            from_end[p.name] = max(from_end.get(p.name, 0), n - at)
    return (sum(lengths) / len(lengths) if lengths else TOKENS_GUESS), from_end


def _shared_baselines(plan: Plan, served: Mapping[str, Sequence[str]], located: Mapping[str, Sequence[str]]) -> set[str]:
    """Baseline nodes beside an SAE that serves the same sites as an earlier baseline of the
    same basis in the same eval (or as the eval's own, on every located site): the run scores
    the basis there once."""
    seen: set[tuple] = set()
    out = set()
    for node in plan.by_kind("baseline"):
        locate = node.inputs[1]
        if node.params.beside is None:
            sites = located.get(locate)
        else:
            score = node.inputs[-1]
            sites = served.get(score) if score in served else None
        if sites is None:
            continue
        key = (locate, node.params.baseline, tuple(sorted(sites)))
        if key in seen and node.params.beside is not None:
            out.add(node.id)
        seen.add(key)
    return out


def _text_cost(node: Node) -> Cost:
    """A text node runs the corpus three times (clean, SAE spliced in, zero-ablated), with the
    logits at every token; the corpus node only tokenizes (the zoo's corpus is generated with
    its SAEs)."""
    if node.kind == "corpus":
        return Cost(0, 0, 0, 0.0)
    texts = -(-CORPUS_TOKENS // CORPUS_CONTEXT)
    size = model_size(node)
    seconds = None if size is None else 3 * 2 * CORPUS_TOKENS * (size[1] + size[2]) / CPU_FLOPS[node.params.model.dtype]
    return Cost(texts, 3 * texts, 0, seconds)
def _unused_text(plan: Plan, node: Node, served: Mapping[str, Sequence[str]]) -> bool:
    """A text node whose SAE serves no located cross-section in any of its eval's score nodes:
    the run loads nothing for it (runtime/execute/run.py)."""
    eval_name = node.id[len("text["):].split("/", 1)[0]
    mine = [n.id for n in plan.by_kind("score") if n.id.startswith(f"score[{eval_name}/") and n.params.sae.name == node.params.sae.name]
    return bool(mine) and all(i in served and not served[i] for i in mine)


def _after_locate(node: Node) -> bool:
    """A score or suite node, or a baseline beside an SAE: whether it does anything depends on
    what locate finds."""
    return node.kind in ("score", "suite") or (node.kind == "baseline" and node.params.beside is not None)


def _resolved(node: Node, served: Mapping[str, Sequence[str]]) -> tuple[str, ...] | None:
    """The sites a resolved score node (or the score node a baseline sits beside) serves; None
    while unresolved or for other nodes."""
    if node.kind == "score":
        return tuple(served[node.id]) if node.id in served else None
    if node.kind == "baseline" and node.params.beside is not None:
        score = node.inputs[-1]
        return tuple(served[score]) if score in served else None
    if node.kind == "suite":
        members = node.inputs[4:]
        if not all(m in served for m in members):
            return None
        return tuple(dict.fromkeys(s for m in members for s in served[m]))
    return None


def _task(plan: Plan, node: Node):
    """The task a node works on: its own (sample) or that of the sample node it descends from."""
    for upstream in plan.upstream(node.id):
        if upstream.kind == "sample":
            return upstream.params.task
    raise ValueError(f"internal: {node.id} has no sample node upstream")


# --- an upper bound on what runs after locate, before the locate artifact exists -------------
#
# A locate block selects at most K cross-sections per pool (sagec.selection.budget; residual
# streams have their own budget), so at most K (component, layer) classes hold a selected site,
# and a member runs only if it can serve one of them. Per family the members that run are then at
# most the sum, over each pool's K distinct serving sets with the most members, of their sizes: min(members, K x members per layer) for a suite with one member per layer. The
# baselines beside a member and its text node run only when the member does, so each member is
# costed as a bundle and a family's bound is its most expensive bundles. Which classes a member
# can serve comes from configs (the CLI asks runtime.saes.serving; None: not known, counted as
# serving everything), so the bound is still an upper bound and never counts a member twice.


@dataclass(frozen=True)
class FamilyBound:
    """One family of one eval (or a single SAE) before locate: its members and node counts as
    declared, at most how many run, and the bound on its cost (nodes not cached only)."""

    eval: str
    family: str
    members: int
    members_at_most: int
    nodes: tuple[tuple[str, int, int, float | None], ...]  # (kind, declared, at most run, at most seconds)
    forwards: int
    backwards: int
    seconds: float | None
    covers: tuple[str, ...] = ()  # the ids of every node in its members' bundles

    def to_json(self) -> dict:
        return {"eval": self.eval, "family": self.family, "members": self.members, "members_at_most": self.members_at_most,
                "nodes": {k: {"declared": d, "at_most": m, "seconds": t} for k, d, m, t in self.nodes},
                "forwards": self.forwards, "backwards": self.backwards, "seconds": self.seconds}


def candidates(plan: Plan, locate: Node, n_layers: int | None = None) -> tuple[tuple[str, object], ...] | None:
    """The (pool, Location) classes a locate node's search space ranks, one per component and
    layer (a head stands for every head of its layer: they are served by the same SAEs); the
    layers are the block's, else `n_layers` (from the model's architecture), else from configs
    (model_size); None when none of them is known."""
    from sagec.selection import pool_of

    loc = locate.params.locate
    size = model_size(locate) if n_layers is None and loc.layers is None else None
    n_layers = n_layers if n_layers is not None else size[0] if size is not None else None
    layers = loc.layers if loc.layers is not None else range(n_layers) if n_layers is not None else None
    if layers is None:
        return None
    out = []
    for component in loc.components:
        for layer in layers:
            head = 0 if component in ("head", "head_z") else None
            out.append((pool_of(component), Location(component, layer, head)))
    return tuple(out)


def after_locate_bound(plan: Plan, costs: Mapping[str, Cost], reach: Mapping[str, frozenset[str] | None],
                       cached: Callable[[str], bool], space: Mapping[str, tuple | None] | None = None) -> tuple[FamilyBound, ...]:
    """Per family of every eval whose score nodes are unresolved: at most how many members, and
    nodes beside them, run once located. `reach[score id]`: str() of the candidate Locations (as
    `candidates` gives them) its SAE could serve under its reconstruction, None when unknown
    (then it may serve any); a score node missing from `reach` is counted as serving any.
    `space[locate id]`: its candidates, where the caller knows the layer count better."""
    from sagec.selection import budget

    out = []
    for locate in plan.by_kind("locate"):
        ev = locate.id[len("locate["):-1]
        scores = [n for n in plan.by_kind("score") if n.inputs[1] == locate.id and costs[n.id].after_locate == "unresolved"]
        if not scores:
            continue
        cands = space[locate.id] if space is not None and locate.id in space else candidates(plan, locate)
        families = 0
        for up in plan.upstream(locate.id):
            if up.kind == "sample":
                families = (1 if up.params.task.counterfactual else 0) + len(up.params.task.attributes)
        k = budget(locate.params.locate, families)
        groups: dict[str, dict[str, list[Node]]] = {}  # family -> SAE name -> its score nodes
        for n in scores:
            groups.setdefault(n.params.sae.name.split("[")[0], {}).setdefault(n.params.sae.name, []).append(n)
        for family, members in groups.items():
            out.append(_family_bound(plan, ev, family, members, costs, reach, cached, cands, k))
    return tuple(out)


def _family_bound(plan, ev, family, members, costs, reach, cached, cands, k) -> FamilyBound:
    # Each member's bundle: its score nodes, the baselines beside them, its text node.
    bundles: dict[str, list[Node]] = {}
    serves: dict[str, set[str] | None] = {}
    for name, scores in members.items():
        ids = {n.id for n in scores}
        beside = [b for b in plan.by_kind("baseline") if b.params.beside is not None and b.inputs[-1] in ids]
        text = [t for t in plan.by_kind("text") if t.id == f"text[{ev}/{name}]"]
        bundles[name] = [*scores, *beside, *text]
        classes: set[str] | None = set()
        for n in scores:
            r = reach.get(n.id)
            classes = None if r is None or classes is None else classes | set(r)
        serves[name] = classes
    if cands is None:
        at_most = len(members)
    else:
        unknown = sum(1 for c in serves.values() if c is None)
        known = [c for c in serves.values() if c is not None]
        reaching = unknown + sum(1 for c in known if c)
        # Classes served by the same members (a layer's heads, attention and MLP for a residual
        # SAE) count once: K selected sites meet at most K distinct serving sets.
        pools: dict[str, set[frozenset[str]]] = {}
        for pool, location in cands:
            pools.setdefault(pool, set()).add(frozenset(name for name, c in serves.items() if c is not None and str(location) in c))
        if k is None:
            at_most = reaching
        else:
            # Every selected class may also be served by each member of unknown location.
            by_count = sum(sum(sorted((len(m) for m in sets), reverse=True)[:k]) for sets in pools.values())
            at_most = min(reaching, unknown + by_count)
    cost = [(sum(costs[n.id].forwards for n in b if not cached(n.key)), sum(costs[n.id].backwards for n in b if not cached(n.key)),
             [costs[n.id].seconds for n in b if not cached(n.key)]) for b in bundles.values()]
    top = sorted(cost, key=lambda c: (c[0] + 2 * c[1], sum(s or 0.0 for s in c[2])), reverse=True)[:at_most]
    seconds = None if any(s is None for c in top for s in c[2]) else sum(s for c in top for s in c[2])
    kinds = Counter(n.kind for b in bundles.values() for n in b)
    # Per kind at most: the at_most members with the most nodes, and the most seconds, of that kind.
    nodes = tuple((kind, declared, sum(sorted((sum(1 for n in b if n.kind == kind) for b in bundles.values()), reverse=True)[:at_most]),
                   _top_seconds([[costs[n.id].seconds for n in b if n.kind == kind and not cached(n.key)] for b in bundles.values()], at_most))
                  for kind, declared in kinds.items())
    return FamilyBound(ev, family, len(members), at_most, nodes, sum(c[0] for c in top), sum(c[1] for c in top), seconds,
                       tuple(n.id for b in bundles.values() for n in b))


def _top_seconds(per_member: list[list[float | None]], n: int) -> float | None:
    """The seconds of the n members costing most (None when a model's size is unknown)."""
    if any(s is None for m in per_member for s in m):
        return None
    return sum(sorted((sum(m) for m in per_member), reverse=True)[:n])


def total(plan: Plan, costs: Mapping[str, Cost], cached: Callable[[str], bool], bounds: Sequence[FamilyBound] = ()) -> tuple[int, int, float | None]:
    """(forwards, backwards, seconds or None when a model's size is unknown) of every node not
    cached, the members of `bounds`' families counted by their bound instead of one by one."""
    bounded = {i for b in bounds for i in b.covers}
    parts = [(c.forwards, c.backwards, c.seconds) for n in plan.nodes if not cached(n.key) and n.id not in bounded for c in (costs[n.id],)]
    parts += [(b.forwards, b.backwards, b.seconds) for b in bounds]
    seconds = None if any(s is None for _, _, s in parts) else sum(s for _, _, s in parts)
    return sum(f for f, _, _ in parts), sum(b for _, b, _ in parts), seconds
