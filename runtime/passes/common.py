"""What the passes share: the loaded model of a run, counted forward calls, prompt groups as the
forward engine wants them, and the names under which activations are stored in artifacts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from runtime.model import forward
from runtime.task.metric import task_metric
from runtime.task.prompts import Prompt
from sagec.estimate import SUFFIX_PATH_MIN_PARAMETERS, suffix_pays  # transformer-block weights (12 L d^2) that make it pay; `sagec plan` costs by it
from sagec.locations import CrossSection, Location
from sagec.spec import Model


def loaded_model(ctx, model: Model):
    from runtime.model.sources import load_model

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


def metric_and_argmax(prompts: Sequence[Prompt]) -> forward.Reduce:
    """A forward.Reduce to (metric, argmax token) per row, as float64 columns (a token id is
    exact in float64): all that the passes read of a patched forward's logits."""
    metric = metric_of(prompts)

    def reduce(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return torch.stack([metric(logits, rows).double(), logits.argmax(dim=-1).double()], dim=1)

    return reduce


# Every call that runs the model goes through these, so a run can say how many model passes it
# made (and tests can check that adding an SAE adds none for activations), and so a batch that
# does not fit in memory is halved and retried instead of failing the run.
def collect(ctx, loaded, prompts: Sequence[Prompt], names: Sequence[str], locations: Sequence[Location]) -> forward.Collected:
    ctx.count("forward", len(prompts))
    return _fitting(ctx, loaded, lambda b: forward.collect(loaded, token_ids(prompts), positions(prompts, names), locations, batch_size=b))


def collect_with_grads(ctx, loaded, prompts: Sequence[Prompt], names: Sequence[str], locations: Sequence[Location]) -> forward.Collected:
    ctx.count("forward", len(prompts))
    ctx.count("backward", len(prompts))
    metric = metric_of(prompts)
    return _fitting(ctx, loaded, lambda b: forward.collect_with_grads(loaded, token_ids(prompts), positions(prompts, names), locations, metric, batch_size=b))


def patched_logits(ctx, loaded, prompts: Sequence[Prompt], patches: Sequence[forward.Patch], prefix: forward.PrefixCache | None = None,
                   reduce: forward.Reduce | None = None) -> torch.Tensor:
    if prefix is not None and prefix.serves(token_ids(prompts), patches):
        ctx.count("suffix_tokens", len(prompts) * prefix.suffix)  # prompt-tokens recomputed on the clean prefix
        # ... and through how many layers: those before the first patched one are skipped
        ctx.count("suffix_layer_tokens", len(prompts) * prefix.suffix * (loaded.arch.n_layers - prefix.start))
        return forward.patched_logits(loaded, token_ids(prompts), patches, prefix=prefix, reduce=reduce)
    ctx.count("forward", len(prompts))
    return _fitting(ctx, loaded, lambda b: forward.patched_logits(loaded, token_ids(prompts), patches, batch_size=b, reduce=reduce))


def patched_gradients(ctx, loaded, prompts: Sequence[Prompt], patches: Sequence[forward.Patch]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    ctx.count("forward", len(prompts))
    ctx.count("backward", len(prompts))
    metric = metric_of(prompts)
    return _fitting(ctx, loaded, lambda b: forward.patched_gradients(loaded, token_ids(prompts), patches, metric, batch_size=b))


PREFIX_CACHES = 2  # key/value caches of the clean prompts a run keeps (the test split's, per suffix length)


def suffix_path(loaded, prompts: Sequence[Prompt], sites: Sequence[CrossSection]) -> tuple[int, int] | None:
    """(suffix, start): the final tokens a forward patching `sites` of `prompts` recomputes on
    the clean prefix's cache, and the first layer it runs; None when the full forward is
    cheaper: on a small model (a forward costs less than nnsight's per-trace overhead), or with
    a patch in the first quarter of a prompt (little prefix to reuse)."""
    arch = loaded.arch
    if 12 * arch.n_layers * arch.d_model**2 < SUFFIX_PATH_MIN_PARAMETERS or loaded.spec.remote is not None:
        return None
    ids = token_ids(prompts)
    shortest = min(len(t) for t in ids)
    need = forward.suffix_needed(ids, [[p.positions[site.position] for p in prompts] for site in sites])
    if not suffix_pays(need, shortest):
        return None
    return need, min(site.location.layer for site in sites)


def prefix_cache(ctx, loaded, prompts: Sequence[Prompt], suffix: int = 1, start: int = 0) -> forward.PrefixCache:
    """The clean prefix of `prompts`, shared by every node that patches them (the score,
    baseline and suite nodes of an eval all patch the test split), at most PREFIX_CACHES at a
    time: each holds every layer's keys and values."""
    ids = token_ids(prompts)
    name = f"{loaded.spec.name}|{hash(tuple(map(tuple, ids)))}|{suffix}"
    if ("prefix cache", name) not in ctx.resources:
        held = [n for kind, n in ctx.resources if kind == "prefix cache"]
        ctx.release("prefix cache", held[: max(0, len(held) - PREFIX_CACHES + 1)])

    def build() -> forward.PrefixCache:
        ctx.count("forward", len(prompts))  # the prefix is one forward of everything but the last `suffix` tokens
        return _fitting(ctx, loaded, lambda b: forward.prefix_cache(loaded, ids, batch_size=b, suffix=suffix))

    return ctx.resource("prefix cache", name, build).at_layer(loaded, start)


# Activation memory per prompt is about (tokens x d_model x layers) floats times the
# intermediates a layer keeps; a batch gets a fixed budget of it unless the spec sets batch_size.
BATCH_MEMORY = 1 << 30
TOKENS_GUESS = 16


def auto_batch_size(arch) -> int:
    per_prompt = TOKENS_GUESS * arch.d_model * arch.n_layers * 4 * 12
    size = 8
    while size * 2 * per_prompt <= BATCH_MEMORY and size < 512:
        size *= 2
    return size


def _is_out_of_memory(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", ())
    return isinstance(e, (MemoryError, *(oom if isinstance(oom, tuple) else (oom,)))) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e)))


def _fitting(ctx, loaded, call):
    sizes = ctx.resource("batch sizes", "all", dict)
    name = loaded.spec.name
    size = sizes.get(name) or loaded.spec.batch_size or auto_batch_size(loaded.arch)
    while True:
        try:
            result = call(size)
        except Exception as e:
            if not _is_out_of_memory(e) or size == 1:
                raise
            ctx.reporter.warn(f"model {name}: out of memory with batches of {size} prompts; continuing with {size // 2}")
            size //= 2
            continue
        sizes[name] = size
        return result


def site_name(site: CrossSection) -> str:
    return f"{site.location}@{site.position}"


def parse_site(name: str) -> CrossSection:
    location, position = name.rsplit("@", 1)
    return CrossSection(Location.parse(location), position)


def chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
