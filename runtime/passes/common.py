"""What the passes share: the loaded model of a run, counted forward calls, prompt groups as the
forward engine wants them, and the names under which activations are stored in artifacts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sagec.locations import CrossSection, Location
from sagec.spec import Model

from runtime import forward
from runtime.metric import task_metric
from runtime.prompts import Prompt


def loaded_model(ctx, model: Model):
    from runtime.models import load_model

    return ctx.resource("model", model.name, lambda: load_model(model))


def token_ids(prompts: Sequence[Prompt]) -> list[tuple[int, ...]]:
    return [p.ids for p in prompts]


def positions(prompts: Sequence[Prompt], names: Sequence[str]) -> dict[str, list[int]]:
    return {n: [p.positions[n] for p in prompts] for n in names}


def metric_of(prompts: Sequence[Prompt]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The task metric of each prompt against its own answers (forward.MetricFn)."""
    answers = [p.answer_ids for p in prompts]
    distractors = [p.distractor_ids for p in prompts]

    def metric(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        index = rows.tolist()
        return task_metric(logits, [answers[i] for i in index], [distractors[i] for i in index])

    return metric


def metric_values(logits: torch.Tensor, prompts: Sequence[Prompt]) -> torch.Tensor:
    return task_metric(logits, [p.answer_ids for p in prompts], [p.distractor_ids for p in prompts])


# Every call that runs the model goes through these, so a run can say how many model passes it
# made (and tests can check that adding an SAE adds none for activations).
def collect(ctx, loaded, prompts: Sequence[Prompt], names: Sequence[str], locations: Sequence[Location]) -> forward.Collected:
    ctx.count("forward", len(prompts))
    return forward.collect(loaded, token_ids(prompts), positions(prompts, names), locations)


def collect_with_grads(ctx, loaded, prompts: Sequence[Prompt], names: Sequence[str], locations: Sequence[Location]) -> forward.Collected:
    ctx.count("forward", len(prompts))
    ctx.count("backward", len(prompts))
    return forward.collect_with_grads(loaded, token_ids(prompts), positions(prompts, names), locations, metric_of(prompts))


def patched_logits(ctx, loaded, prompts: Sequence[Prompt], patches: Sequence[forward.Patch], prefix: forward.PrefixCache | None = None) -> torch.Tensor:
    if prefix is not None and prefix.serves(token_ids(prompts), patches):
        ctx.count("final_token_forward", len(prompts))
    else:
        ctx.count("forward", len(prompts))
    return forward.patched_logits(loaded, token_ids(prompts), patches, prefix=prefix)


def prefix_cache(ctx, loaded, prompts: Sequence[Prompt]) -> forward.PrefixCache:
    ctx.count("forward", len(prompts))  # the prefix is one forward of everything but the last token
    return forward.prefix_cache(loaded, token_ids(prompts))


def site_name(site: CrossSection) -> str:
    return f"{site.location}@{site.position}"


def parse_site(name: str) -> CrossSection:
    location, position = name.rsplit("@", 1)
    return CrossSection(Location.parse(location), position)


def chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
