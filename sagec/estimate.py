"""What a plan will cost, from configs alone (no weights): prompts, model passes, a time guess.

Passes are counted in prompt-forwards (one prompt through the model once); a backward counts as
two forwards. The time guess divides the work, 2 x parameters x tokens FLOPs per forward, by a
throughput measured on this project's reference machine (2 CPU cores: SmolLM2-135M ran 896 tokens
in about 2 s), so it is an order of magnitude, not a promise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sagec.plan import Node, Plan

CPU_FLOPS = 1.2e11  # measured: 896 tokens x 2 x 135e6 parameters in about 2 s on 2 cores
SPARSE_CONTROL_KS = 7  # runtime.sage.control.KS has seven k values
VERIFY_PROMPTS = 64  # locate verifies each candidate on at most this many train prompts
TOKENS_GUESS = 20  # prompt length when the prompts are not sampled yet

# Sizes of the built-in models, so `sagec plan` needs no download to estimate.
KNOWN_SIZES = {"smollm2-135m": (30, 134_515_008)}


@dataclass(frozen=True)
class Cost:
    prompts: int
    forwards: int  # prompt-forwards
    backwards: int  # prompt-backwards
    seconds: float | None  # None when the model's size is unknown

    def to_json(self) -> dict:
        return {"prompts": self.prompts, "forwards": self.forwards, "backwards": self.backwards, "seconds": self.seconds}


def model_size(node: Node) -> tuple[int, int] | None:
    """(layers, parameters) from the model's config.json where it is on disk (a folder, or the
    local Hugging Face cache for a hub model), else known sizes."""
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
            return layers, 12 * layers * d * d + vocab * d
    return None


def estimate(plan: Plan) -> dict[str, Cost]:
    out: dict[str, Cost] = {}
    for node in plan.nodes:
        if node.kind == "report":
            out[node.id] = Cost(0, 0, 0, 0.0)
            continue
        task = _task(plan, node)
        n, n_train = task.samples, round(task.samples * task.split.train)
        n_test = n - n_train
        groups = 1 + (1 if task.counterfactual else 0) + len(task.attributes)
        forwards = backwards = 0
        if node.kind == "locate":
            selected = (node.params.locate.top or 8) * groups
            forwards = n_train * groups + (min(n_train, VERIFY_PROMPTS) * selected * 3 // 2 if node.params.locate.verify else 0)
            backwards = n_train
        elif node.kind == "trace":
            forwards = n * groups
        elif node.kind == "ground_truth":
            forwards = n_test * (3 + 2 * len(task.attributes))
        elif node.kind == "score":
            forwards = n_test * (4 + 2 * len(task.attributes) + len(task.attributes) * SPARSE_CONTROL_KS)
        size = model_size(node)
        seconds = None if size is None else (forwards + 2 * backwards) * TOKENS_GUESS * 2 * size[1] / CPU_FLOPS
        out[node.id] = Cost(n if node.kind != "sample" else n * groups, forwards, backwards, seconds)
    return out


def _task(plan: Plan, node: Node):
    """The task a node works on: its own (sample) or that of the sample node it descends from."""
    for upstream in plan.upstream(node.id):
        if upstream.kind == "sample":
            return upstream.params.task
    raise ValueError(f"internal: {node.id} has no sample node upstream")
