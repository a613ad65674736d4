"""The forward engine the passes share: batched reads, patches and gradients over ragged prompts.

Prompts arrive as ragged token-id lists with per-prompt positions (indices into the unpadded
prompt). Batches are padded on the left, so every prompt's final token is column -1 and the
metric reads `logits[:, -1]`; position ids are counted from each prompt's first real token, so a
padded row computes exactly what the prompt alone would (absolute position embeddings included).
Prompts are sorted by length before batching to waste little compute on padding; results come
back in the caller's order.

Everything a pass needs at a set of locations comes out of one forward per batch: `collect`
gathers activations at the named positions only (not the whole (B, T, d) tensors), and
`patched_logits` applies any number of patches in one forward.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import nnsight
import torch

from runtime.model.locations import Write, access, envoy_at
from runtime.model.sources import LoadedModel
from sagec.locations import Location

Key = tuple[Location, str]  # (location, position name)
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (final logits (B, V), prompt indices (B,)) -> (B,)
Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (final logits (B, V) float32, prompt indices (B,)) -> (B,) or (B, m)


@dataclass(frozen=True)
class Padded:
    """One left-padded batch; `offsets[i]` turns prompt i's positions into column indices."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)
    offsets: torch.Tensor  # (B,)
    lengths: torch.Tensor  # (B,)

    def columns(self, positions: Sequence[int] | torch.Tensor, name: str = "position") -> torch.Tensor:
        """Per-prompt positions (negative counts from the end) -> padded column indices (B,)."""
        pos = torch.as_tensor(positions, dtype=torch.long)
        pos = torch.where(pos < 0, pos + self.lengths, pos)
        bad = (pos < 0) | (pos >= self.lengths)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise IndexError(f"{name} {int(torch.as_tensor(positions)[i])} is outside batch row {i} of {int(self.lengths[i])} tokens")
        return pos + self.offsets

    def rows(self, index: torch.Tensor) -> Padded:
        """The batch's rows `index` (repeats allowed), still padded to the batch's width."""
        return Padded(self.input_ids[index], self.attention_mask[index], self.position_ids[index], self.offsets[index], self.lengths[index])


def pad_left(token_ids: Sequence[Sequence[int]], pad_id: int) -> Padded:
    sizes = [len(t) for t in token_ids]
    if not sizes or min(sizes) == 0:
        raise ValueError("pad_left needs at least one prompt and no empty prompt")
    width = max(sizes)
    # One tensor from one flat list: a copy per row costs more than the forward on a tiny model.
    ids = torch.tensor([x for row in token_ids for x in ([pad_id] * (width - len(row)) + list(row))], dtype=torch.long).view(len(sizes), width)
    lengths = torch.tensor(sizes, dtype=torch.long)
    mask = (torch.arange(width) >= (width - lengths)[:, None]).long()
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return Padded(ids, mask, position_ids, width - lengths, lengths)


@dataclass(frozen=True)
class Patch:
    """Replace `location` at per-prompt `positions` (N,) with `values` (N, width)."""

    location: Location
    positions: Sequence[int] | torch.Tensor
    values: torch.Tensor


@dataclass(frozen=True)
class Collected:
    activations: dict[Key, torch.Tensor]  # (N, width) per (location, position name)
    logits: torch.Tensor  # (N, vocab) at each prompt's final token
    gradients: dict[Key, torch.Tensor] | None = None  # d metric / d activation, like `activations`
    metric: torch.Tensor | None = None  # (N,)


def collect(
    loaded: LoadedModel,
    token_ids: Sequence[Sequence[int]],
    positions: Mapping[str, Sequence[int]],
    locations: Iterable[Location],
    batch_size: int | None = None,
) -> Collected:
    """Activations at every location x named position, and final-position logits."""
    return _run(loaded, token_ids, positions, tuple(dict.fromkeys(locations)), None, batch_size)


def collect_with_grads(
    loaded: LoadedModel,
    token_ids: Sequence[Sequence[int]],
    positions: Mapping[str, Sequence[int]],
    locations: Iterable[Location],
    metric_fn: MetricFn,
    batch_size: int | None = None,
) -> Collected:
    """`collect` plus d metric(p) / d activation at each location and position (attribution
    patching). Prompts do not interact, so one backward of the summed metric gives every prompt's
    own gradient."""
    return _run(loaded, token_ids, positions, tuple(dict.fromkeys(locations)), metric_fn, batch_size)


def patched_logits(
    loaded: LoadedModel,
    token_ids: Sequence[Sequence[int]],
    patches: Sequence[Patch],
    batch_size: int | None = None,
    prefix: PrefixCache | None = None,
    reduce: Reduce | None = None,
) -> torch.Tensor:
    """Final-position logits (N, vocab) with every patch applied, all in the same forward.

    With `prefix` (from `prefix_cache` on prompts that include every one of `token_ids`, in any
    order and any number of times) and every patch within each prompt's last `prefix.suffix`
    tokens, only those tokens are recomputed, on top of the clean prefix's key/value cache: under
    causal attention nothing before a patch can change. Otherwise the full forward runs.

    With `reduce`, each forward's logits are reduced as they come (to the task metric and the
    argmax, say) and its (N,) or (N, m) results are returned: the whole vocabulary of every row is then
    never held at once, nor copied into one tensor (a tenth of a small model's patched forward).
    """
    _check_patches(loaded, token_ids, patches)
    if prefix is not None and prefix.serves(token_ids, patches):
        return _suffix_logits(loaded, prefix, token_ids, patches, reduce)
    order, batches = _batches(token_ids, batch_size or loaded.batch_size)
    model = loaded.model
    positions = [torch.as_tensor(p.positions, dtype=torch.long) for p in patches]
    remote = loaded.spec.remote is not None
    out = []
    with _session(loaded):
        for rows in batches:
            padded = pad_left([token_ids[i] for i in rows], _pad_id(loaded))
            writes = _writes(patches, positions, rows, padded, loaded)
            ids, kwargs = _inputs(padded, loaded)
            with torch.no_grad(), model.trace(ids, **kwargs):
                access(model, loaded.arch, (), writes)
                logits = model.output.logits[:, -1].save()
            out.append(logits if remote else _reduced(logits, rows, reduce))
        if remote:
            out = nnsight.save(out)  # what a remote session brings back
    if remote:
        out = [_reduced(logits, rows, reduce) for logits, rows in zip(out, batches, strict=True)]
    return _unsort(torch.cat(out), order)


def _reduced(logits: torch.Tensor, rows: Sequence[int] | torch.Tensor, reduce: Reduce | None) -> torch.Tensor:
    logits = logits.float().cpu()
    return logits if reduce is None else reduce(logits, torch.as_tensor(rows, dtype=torch.long))


def patched_gradients(
    loaded: LoadedModel,
    token_ids: Sequence[Sequence[int]],
    patches: Sequence[Patch],
    metric_fn: MetricFn,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The metric (N,) with every patch applied, and d metric / d each patch's written values,
    shaped like the values (N, width): the gradient at the patched point, which integrated
    gradients averages along a path (runtime/passes/locate.py).

    The written values are made leaves of the graph, so the gradient is that of the value the
    write puts at the site, whatever the component (a replaced tensor has no gradient at the
    replaced entries; the written value does)."""
    _check_patches(loaded, token_ids, patches)
    if loaded.spec.remote is not None:
        raise ValueError("gradients at patched values need the model here; a remote model's graph stays on the server")
    order, batches = _batches(token_ids, batch_size or loaded.batch_size)
    model = loaded.model
    positions = [torch.as_tensor(p.positions, dtype=torch.long) for p in patches]
    metrics, grads = [], [[] for _ in patches]
    with _frozen(model._module):
        for rows in batches:
            padded = pad_left([token_ids[i] for i in rows], _pad_id(loaded))
            writes = _writes(patches, positions, rows, padded, loaded)
            leaves = [w.values.detach().clone().requires_grad_(True) for w in writes]
            writes = [Write(w.location, w.positions, leaf, w.rows) for w, leaf in zip(writes, leaves, strict=True)]
            ids, kwargs = _inputs(padded, loaded)
            row_index = torch.as_tensor(rows, dtype=torch.long)
            with model.trace(ids, **kwargs):
                access(model, loaded.arch, (), writes)
                metric = metric_fn(model.output.logits[:, -1], row_index)
                with metric.sum().backward():
                    pass
                metric = metric.detach().save()
            metrics.append(metric.float().cpu())
            for out, leaf in zip(grads, leaves, strict=True):
                out.append(leaf.grad.float().cpu() if leaf.grad is not None else torch.zeros_like(leaf, dtype=torch.float32).cpu())
    return _unsort(torch.cat(metrics), order), [_unsort(torch.cat(g), order) for g in grads]


@dataclass(frozen=True)
class PrefixCache:
    """The clean key/value cache of every prompt without its last `suffix` tokens, per batch,
    and, when `start` > 0, the clean residual stream entering layer `start` at those tokens:
    layers before it are then skipped, since nothing patched can change them. `at_layer` gives
    the same cache from another layer on; the keys and values are shared, and each layer's
    entry stream is computed once (`entries`)."""

    token_ids: tuple[tuple[int, ...], ...]
    batches: list[tuple[list[int], Padded, object]]  # (prompt indices, padded batch, HF cache)
    suffix: int = 1  # the tokens each prompt recomputes
    start: int = 0  # the first layer recomputed
    entries: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> per batch (B, suffix, d), shared

    def serves(self, token_ids: Sequence[Sequence[int]], patches: Sequence[Patch]) -> bool:
        """True when each of `token_ids` is one of its prompts (a condition may run a subset of
        them, or some twice) and every patch sits within each prompt's last `suffix` tokens, at
        layer `start` or later."""
        if not all(tuple(t) in self.index for t in token_ids):
            return False
        lengths = torch.tensor([len(t) for t in token_ids])
        for p in patches:
            pos = torch.as_tensor(p.positions, dtype=torch.long)
            pos = torch.where(pos < 0, pos + lengths, pos)
            if p.location.layer < self.start or not bool((pos >= lengths - self.suffix).all()):
                return False
        return True

    @functools.cached_property
    def index(self) -> dict[tuple[int, ...], tuple[int, int]]:
        """Each prompt's (batch, row within it); a prompt given twice is cached twice, alike."""
        return {self.token_ids[i]: (b, j) for b, (rows, _, _) in enumerate(self.batches) for j, i in enumerate(rows)}

    def at_layer(self, loaded: LoadedModel, start: int) -> PrefixCache:
        """This cache recomputing layers `start` on (the clean stream entering `start` at the
        last tokens is run once, on a copy of each batch's cache)."""
        if not 0 <= start < loaded.arch.n_layers:
            raise ValueError(f"prefix_cache: layer {start} is not a layer of the model (0..{loaded.arch.n_layers - 1})")
        if start > 0 and start not in self.entries:
            hf, device = loaded.model._module.base_model, loaded.device
            layer = loaded.model._module.get_submodule(f"{loaded.arch.family.layers}.{start}")
            with torch.no_grad():
                self.entries[start] = [_entry_stream(hf, layer, padded, self.suffix, copy.deepcopy(kv), device) for _, padded, kv in self.batches]
        return replace(self, start=start)


def suffix_needed(token_ids: Sequence[Sequence[int]], positions: Sequence[Sequence[int]]) -> int:
    """The fewest final tokens to recompute so that every position (per prompt, one list per
    patched site) lies among them."""
    return max(len(t) - min(p[i] % len(t) for p in positions) for i, t in enumerate(token_ids))


def prefix_cache(loaded: LoadedModel, token_ids: Sequence[Sequence[int]], batch_size: int | None = None, suffix: int = 1,
                 start: int = 0) -> PrefixCache:
    """Run every prompt but its last `suffix` tokens once, keeping the key/value caches, and
    with `start` > 0 the clean stream entering layer `start` at the last tokens (DESIGN.md: the
    suffix-only path for the many interventions of a pass at late positions and layers)."""
    if suffix < 1 or min(len(t) for t in token_ids) <= suffix:
        raise ValueError(f"prefix_cache needs prompts longer than the {suffix} recomputed tokens")
    if loaded.spec.remote is not None:
        raise ValueError("the suffix path needs the model's own key/value cache, which a remote model keeps on the server")
    _, batches = _batches(token_ids, batch_size or loaded.batch_size)
    # The decoder without its head: the prefix's logits are never read, and for a large
    # vocabulary even one position's unembedding per prompt costs a sixth of the prefix (Gemma-3,
    # tests/benchmarks/bench_logits.py).
    hf, device = loaded.model._module.base_model, loaded.device
    cached = []
    for rows in batches:
        padded = pad_left([token_ids[i] for i in rows], _pad_id(loaded))
        with torch.no_grad():
            out = hf(input_ids=padded.input_ids[:, :-suffix].to(device), attention_mask=padded.attention_mask[:, :-suffix].to(device),
                     position_ids=padded.position_ids[:, :-suffix].to(device), use_cache=True)
        cached.append((rows, padded, out.past_key_values))
    return PrefixCache(tuple(map(tuple, token_ids)), cached, suffix).at_layer(loaded, start)


class Reached(Exception):
    """Raised by a hook once the forward has computed all that is read of it (the entry stream
    here, the zoo's residual activations): the rest of the model is not run."""


def _entry_stream(hf, layer: torch.nn.Module, padded: Padded, suffix: int, kv, device) -> torch.Tensor:
    """The clean last `suffix` tokens run on the prefix's cache (a copy), stopped at `layer`'s
    input, which is kept: the stream every later layer starts from."""
    got: list[torch.Tensor] = []

    def grab(module, args, kwargs):
        got.append((args[0] if args else kwargs["hidden_states"]).detach().clone())
        raise Reached

    hook = layer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with contextlib.suppress(Reached):
            hf(input_ids=padded.input_ids[:, -suffix:].to(device), attention_mask=padded.attention_mask.to(device),
               position_ids=padded.position_ids[:, -suffix:].to(device), past_key_values=kv, use_cache=True)
    finally:
        hook.remove()
    return got[0]


def _suffix_logits(loaded: LoadedModel, prefix: PrefixCache, token_ids: Sequence[Sequence[int]], patches: Sequence[Patch],
                   reduce: Reduce | None = None) -> torch.Tensor:
    """The suffix path for any rows of the prefix's prompts. Rows are run grouped by the prefix
    batch their prompt was cached in, up to SUFFIX_ROWS_MEMORY of gathered keys and values per
    forward: many short conditions then share a trace."""
    if not token_ids:
        raise ValueError("no prompts to run")
    model, device, s = loaded.model, loaded.device, prefix.suffix
    positions = [torch.as_tensor(p.positions, dtype=torch.long) for p in patches]
    layers = envoy_at(model, loaded.arch.family.layers)
    where = [prefix.index[tuple(t)] for t in token_ids]
    out = None  # (N, vocab), or (N, m) reduced: its width is known from the first forward
    entries = prefix.entries.get(prefix.start) or [None] * len(prefix.batches)
    for b, ((_, padded, cache), entry) in enumerate(zip(prefix.batches, entries, strict=True)):
        units = [u for u, (batch, _) in enumerate(where) if batch == b]
        per_forward = max(len(padded.lengths), SUFFIX_ROWS_MEMORY // max(1, _row_bytes(cache, prefix.start)))
        for at in range(0, len(units), per_forward):
            chunk = torch.as_tensor(units[at : at + per_forward], dtype=torch.long)
            local = torch.as_tensor([where[u][1] for u in chunk.tolist()], dtype=torch.long)
            rows = padded.rows(local)
            first = rows.input_ids.shape[1] - s  # the first recomputed column
            writes = [Write(p.location, (rows.columns(at_[chunk], f"{p.location} position") - first).to(device), p.values[chunk].to(device))
                      for p, at_ in zip(patches, positions, strict=True)]
            kv = _cache_rows(cache, local, prefix.start)  # a forward appends to the cache it is given: a gathered copy
            with torch.no_grad(), model.trace(rows.input_ids[:, first:].to(device), attention_mask=rows.attention_mask.to(device),
                                              position_ids=rows.position_ids[:, first:].to(device), past_key_values=kv,
                                              use_cache=True, logits_to_keep=1):
                # Layers before `start` are skipped, each handing on the clean stream entering
                # `start` (only the last one's output is read, by layer `start`).
                for layer in range(prefix.start):
                    layers[layer].skip(entry[local.to(entry.device)])
                access(model, loaded.arch, (), writes)
                logits = model.output.logits[:, -1].save()
            got = _reduced(logits, chunk, reduce)
            if out is None:
                out = got.new_empty(len(token_ids), *got.shape[1:])
            out[chunk] = got
    return out


# Keys and values gathered for one suffix forward (its rows' copy of the prefix cache).
SUFFIX_ROWS_MEMORY = 1 << 27


def _row_bytes(cache, start: int) -> int:
    return sum(t[0].numel() * t.element_size() for layer in cache.layers[start:] for t in (layer.keys, layer.values) if t is not None and t.numel())


def _cache_rows(cache, local: torch.Tensor, start: int):
    """A copy of `cache` holding batch rows `local` (repeats allowed); the original is untouched.
    Layers before `start` are skipped, so nothing reads or extends their keys and values: they
    get a view of one row repeated (the right shape, which the cache's length and masks read,
    and no memory)."""
    kv = copy.copy(cache)
    kv.layers = [copy.copy(layer) for layer in cache.layers]
    for i, layer in enumerate(kv.layers):
        if layer.keys is None or not layer.keys.numel():
            continue
        if i < start:
            layer.keys = layer.keys[:1].expand(len(local), *layer.keys.shape[1:])
            layer.values = layer.values[:1].expand(len(local), *layer.values.shape[1:])
        else:
            layer.keys, layer.values = layer.keys[local], layer.values[local]
    return kv


# --- internals ---------------------------------------------------------------------------------


def _run(loaded, token_ids, positions, locations, metric_fn, batch_size) -> Collected:
    for loc in locations:
        loaded.arch.check(loc)
    names = list(positions)
    for name in names:
        _check_positions(token_ids, positions[name], f"position {name!r}")
    order, batches = _batches(token_ids, batch_size or loaded.batch_size)
    model, arch = loaded.model, loaded.arch
    acts: dict[Key, list[torch.Tensor]] = {(loc, n): [] for loc in locations for n in names}
    grads: dict[Key, list[torch.Tensor]] = {k: [] for k in acts}
    raw = []  # per batch: (values read, gradients, final logits, metric)
    # Weights are frozen while gradients are taken, so the graph starts at the embeddings:
    # backward then skips every weight gradient (half its cost) and never fills .grad.
    frozen = _frozen(model._module) if metric_fn is not None else contextlib.nullcontext()
    with frozen, _session(loaded):
        for rows in batches:
            padded = pad_left([token_ids[i] for i in rows], _pad_id(loaded))
            at = None
            if names:
                cols = [padded.columns(torch.as_tensor(positions[n])[rows], f"position {n!r}") for n in names]
                at = torch.stack(cols, 1).to(loaded.device)
            reads = locations if names else ()
            ids, kwargs = _inputs(padded, loaded)
            if metric_fn is None:
                with torch.no_grad(), model.trace(ids, **kwargs):
                    cap = access(model, arch, reads, at=at)
                    logits = model.output.logits[:, -1].save()
                raw.append((cap.values, None, logits, None))
            else:
                row_index = torch.as_tensor(rows, dtype=torch.long)
                with model.trace(ids, **kwargs):
                    envoy_at(model, arch.family.embed).output.requires_grad_(True)
                    cap = access(model, arch, reads, at=at, grads=True)
                    final = model.output.logits[:, -1]
                    metric = metric_fn(final, row_index)
                    with metric.sum().backward():
                        got = nnsight.save(cap.gradients())
                    logits = final.detach().save()
                    metric = metric.detach().save()
                raw.append((cap.values, got, logits, metric))
        if loaded.spec.remote is not None:
            raw = nnsight.save(raw)  # what a remote session brings back
    logits_out, metric_out = [], []
    for values, got, logits, metric in raw:
        for loc in (locations if names else ()):
            for j, n in enumerate(names):
                acts[loc, n].append(values[loc][:, j].float().cpu())
                if got is not None:
                    grads[loc, n].append(got[loc][:, j].float().cpu())
        logits_out.append(logits.float().cpu())
        if metric is not None:
            metric_out.append(metric.float().cpu())
    return Collected(
        activations={k: _unsort(torch.cat(v), order) for k, v in acts.items()},
        logits=_unsort(torch.cat(logits_out), order),
        gradients={k: _unsort(torch.cat(v), order) for k, v in grads.items()} if metric_fn else None,
        metric=_unsort(torch.cat(metric_out), order) if metric_fn else None,
    )


class _frozen:
    """requires_grad off on every parameter for the duration, restored afterwards."""

    def __init__(self, module: torch.nn.Module):
        self.params = [p for p in module.parameters() if p.requires_grad]

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p in self.params:
            p.requires_grad_(True)


def _check_positions(token_ids: Sequence[Sequence[int]], positions: Sequence[int] | torch.Tensor, what: str) -> None:
    """Name the prompt (by its index in the caller's list) whose position does not exist."""
    if len(positions) != len(token_ids):
        raise ValueError(f"{what} has {len(positions)} entries for {len(token_ids)} prompts")
    pos = torch.as_tensor(positions, dtype=torch.long)
    lengths = torch.tensor([len(ids) for ids in token_ids], dtype=torch.long)
    bad = ((pos < -lengths) | (pos >= lengths)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise IndexError(f"{what} {int(pos[i])} is outside prompt {i}, which has {int(lengths[i])} tokens")


def _check_patches(loaded: LoadedModel, token_ids: Sequence[Sequence[int]], patches: Sequence[Patch]) -> None:
    n = len(token_ids)
    for p in patches:
        loaded.arch.check(p.location)
        if len(p.positions) != n or p.values.shape != (n, loaded.arch.width(p.location)):
            raise ValueError(f"patch of {p.location}: expected {n} positions and values of shape "
                             f"({n}, {loaded.arch.width(p.location)}), got {len(p.positions)} and {tuple(p.values.shape)}")
        _check_positions(token_ids, p.positions, f"patch of {p.location}: position")


def _writes(patches: Sequence[Patch], positions: Sequence[torch.Tensor], rows: list[int], padded: Padded, loaded: LoadedModel) -> list[Write]:
    """The patches restricted to one batch; `positions` are the patches' positions as tensors."""
    index = torch.as_tensor(rows, dtype=torch.long)
    return [Write(p.location, padded.columns(at[index], f"{p.location} position"), p.values[index].to(loaded.device))
            for p, at in zip(patches, positions, strict=True)]


def _session(loaded: LoadedModel):
    """Where a batch group's traces run: here, or, for a remote model, in ONE nnsight session
    (one request) on NDIF (`remote ndif`) or in nnsight's local simulation of NDIF (`remote
    simulate`: the session is serialised and deserialised with this project's modules hidden,
    exactly as the server would receive it, then run here). Only what the session saves comes back."""
    remote = loaded.spec.remote
    if remote is None:
        return contextlib.nullcontext()
    return loaded.model.session(remote="local" if remote == "simulate" else True)


def _inputs(padded: Padded, loaded: LoadedModel) -> tuple[torch.Tensor, dict]:
    device = loaded.device
    # Only the final position's logits are ever used, and the unembedding of every position would
    # dominate the cost for large vocabularies. Given as a tensor (the last column's index) rather
    # than the int 1: nnsight then hands the batch to the model as one call, instead of splitting
    # it into rows and collating them again in Python (about 6% of a tiny model's forward).
    return padded.input_ids.to(device), {"attention_mask": padded.attention_mask.to(device),
                                         "position_ids": padded.position_ids.to(device),
                                         "logits_to_keep": torch.tensor([padded.input_ids.shape[1] - 1], device=device)}


def _pad_id(loaded: LoadedModel) -> int:
    tok = loaded.tokenizer
    return int(tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0))


def _batches(token_ids: Sequence[Sequence[int]], batch_size: int) -> tuple[list[int], list[list[int]]]:
    """Prompt indices sorted by length, cut into batches: similar lengths pad little."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if not token_ids:
        raise ValueError("no prompts to run")
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    return order, [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _unsort(t: torch.Tensor, order: list[int]) -> torch.Tensor:
    out = torch.empty_like(t)
    out[torch.as_tensor(order, dtype=torch.long)] = t
    return out
