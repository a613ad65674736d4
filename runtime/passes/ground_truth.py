"""The ground_truth pass (METHOD.md section 3): supervised dictionaries at the located
cross-sections, fitted on train with streamed sums, validated on test by patching every
cross-section at once (sufficiency, necessity, control)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from runtime.model import forward
from runtime.model.forward import Patch
from runtime.passes import common
from runtime.passes.locate import selected_sites
from runtime.passes.sample import prompt_set
from runtime.passes.trace import key, read
from runtime.sage.dictionaries import Dictionary, DictionaryFitter
from runtime.sage.evaluate import Condition, Outcome, SupervisedValidation, validate_supervised
from runtime.store.cache import Artifact
from runtime.task.prompts import Prompt, PromptSet
from sagec.plan import GroundTruthParams, Node

FIT_CHUNK = 256  # prompts per streamed update of the dictionary sums
SUFFIX_PATH_MIN_PARAMETERS = 20_000_000  # transformer-block weights (12 L d^2) that make it pay
# Final logits one long batch of conditions may hold at once: each prompt's row is the whole
# vocabulary (1 MB for Gemma-3's 262,144 tokens), so 60 conditions of 128 prompts would be 7.5 GB.
LOGITS_MEMORY = 1 << 28


@dataclass(frozen=True)
class TestData:
    """What validation and scoring read on the test split, from the trace artifact."""

    prompts: tuple[Prompt, ...]
    acts: dict[str, torch.Tensor]  # site -> (N, d)
    twin_acts: dict[str, dict[str, torch.Tensor]]  # attribute -> site -> (N, d)
    values: dict[str, list]
    twin_values: dict[str, list]
    clean: Outcome


def test_data(ps: PromptSet, trace: Artifact, sites: Sequence[str], attributes: Sequence[str]) -> TestData:
    rows = list(ps.indices("test"))
    return TestData(
        prompts=tuple(ps.prompts[i] for i in rows),
        acts={s: read(trace, "clean", s, rows) for s in sites},
        twin_acts={a: {s: read(trace, f"twin:{a}", s, rows) for s in sites} for a in attributes},
        values={a: [ps.prompts[i].assignment[a] for i in rows] for a in attributes},
        twin_values={a: [ps.twins[a][i].assignment[a] for i in rows] for a in attributes},
        clean=Outcome(read(trace, "clean", "metric", rows), read(trace, "clean", "argmax", rows)),
    )


def patcher(ctx, loaded, prompts: Sequence[Prompt]):
    """The `patched` callback of runtime/sage/evaluate.py over the test prompts."""

    # On a tiny model a forward costs less than nnsight's per-trace overhead, so one long batch
    # beats a trace per condition; the suffix path pays off once the layers are heavy.
    arch = loaded.arch
    worth_a_cache = 12 * arch.n_layers * arch.d_model**2 >= SUFFIX_PATH_MIN_PARAMETERS and loaded.spec.remote is None
    ids = common.token_ids(prompts)
    shortest = min(len(t) for t in ids)

    def cache_for(sites: Sequence[str]) -> tuple[int, int] | None:
        """(suffix, start): the final tokens a condition patching `sites` recomputes on the clean
        prefix's cache and the first layer it runs, or None when the full forward is cheaper: a
        patch in the first quarter of a prompt leaves little prefix to reuse."""
        if not worth_a_cache:
            return None
        parsed = [common.parse_site(s) for s in sites]
        need = forward.suffix_needed(ids, [[p.positions[site.position] for p in prompts] for site in parsed])
        if need > max(1, (3 * shortest) // 4) or need >= shortest:
            return None
        return need, min(site.location.layer for site in parsed)

    def patched(conditions: list[Condition]) -> list[Outcome]:
        # Conditions patching only late tokens (the final one, or IOI's s2) recompute just the
        # tokens from the earliest patch on, on the clean prefix's cache (DESIGN.md's normal
        # path). Others that patch the same sites run as one long batch (the prompts repeated
        # once per condition), cut into as few forwards as memory allows.
        out: list[Outcome | None] = [None] * len(conditions)
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, condition in enumerate(conditions):
            groups.setdefault(tuple(sorted(condition)), []).append(index)
        caches = {sites: cache_for(sites) for sites in groups}
        # Groups sharing a cache run together (each layer's entry stream is computed once).
        in_order = sorted(groups, key=lambda sites: (caches[sites] is None, caches[sites] or (0, 0)))
        with ctx.reporter.track("interventions", total=len(conditions) * len(prompts)) as bar:
            for sites in in_order:
                members, key = groups[sites], caches[sites]
                if key is not None:
                    prefix = common.prefix_cache(ctx, loaded, prompts, *key)  # built once per run and suffix
                    for i in members:
                        patches = [_patch(name, prompts, conditions[i][name]) for name in sites]
                        logits = common.patched_logits(ctx, loaded, prompts, patches, prefix=prefix)
                        out[i] = Outcome(common.metric_values(logits, prompts), logits.argmax(dim=-1))
                        bar.advance(len(prompts))
                    continue
                per_call = max(1, LOGITS_MEMORY // (len(prompts) * arch.vocab_size * 4))
                for start in range(0, len(members), per_call):
                    chunk = members[start : start + per_call]
                    repeated = list(prompts) * len(chunk)
                    patches = [_patch(name, repeated, torch.cat([conditions[i][name] for i in chunk])) for name in sites]
                    logits = common.patched_logits(ctx, loaded, repeated, patches)
                    metric, argmax = common.metric_values(logits, repeated), logits.argmax(dim=-1)
                    del logits
                    for j, i in enumerate(chunk):
                        rows = slice(j * len(prompts), (j + 1) * len(prompts))
                        out[i] = Outcome(metric[rows], argmax[rows])
                    bar.advance(len(chunk) * len(prompts))
        return out  # type: ignore[return-value]

    return patched


def _patch(name: str, prompts: Sequence[Prompt], values: torch.Tensor) -> Patch:
    site = common.parse_site(name)
    return Patch(site.location, [p.positions[site.position] for p in prompts], values)


def fit(ps: PromptSet, trace: Artifact, sites: Sequence[str], attributes: Sequence[str], method: str) -> dict[str, Dictionary]:
    rows = list(ps.indices("train"))
    seen = {a: sorted({ps.prompts[i].assignment[a] for i in rows}, key=lambda v: (isinstance(v, str), v)) for a in attributes}
    out = {}
    for s in sites:
        fitter = DictionaryFitter(seen, trace.tensors[key("clean", s)].shape[1])
        for chunk in common.chunks(rows, FIT_CHUNK):
            fitter.update(read(trace, "clean", s, chunk), [ps.prompts[i].assignment for i in chunk])
        out[s] = fitter.fit(method)
    return out


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: GroundTruthParams = node.params
    sample_id, locate_id, trace_id = node.inputs
    ps = prompt_set(ctx, inputs, sample_id)
    sites = [common.site_name(s) for s in selected_sites(inputs[locate_id])]
    if not sites:
        raise ValueError("locate selected no cross-section, so there is nothing to fit a dictionary at")
    dictionaries = fit(ps, inputs[trace_id], sites, params.attributes, params.ground_truth.method)
    loaded = common.loaded_model(ctx, params.model)
    data = test_data(ps, inputs[trace_id], sites, params.attributes)
    validation = supervised(ctx, node.id, sites, lambda: validate(ctx, loaded, data, dictionaries))
    tensors, codes_meta = dictionaries_to_tensors(dictionaries)
    meta = {"method": params.ground_truth.method, "sites": sites, "codes": codes_meta, "validation": validation.to_json()}
    return Artifact(meta, tensors)


def supervised(ctx, gt_id: str, sites: Sequence[str], compute) -> SupervisedValidation:
    """The validation of ground truth `gt_id`'s dictionaries at `sites`, computed once per run:
    every SAE that serves exactly these sites is scored against the same reference."""
    return ctx.resource("supervised", f"{gt_id}|{','.join(sites)}", compute)


def validate(ctx, loaded, data: TestData, dictionaries: Mapping[str, Dictionary]) -> SupervisedValidation:
    return validate_supervised(
        acts={s: data.acts[s] for s in dictionaries},
        twin_acts={a: {s: by_site[s] for s in dictionaries} for a, by_site in data.twin_acts.items()},
        values=data.values,
        twin_values=data.twin_values,
        clean=data.clean,
        patched=patcher(ctx, loaded, data.prompts),
        dictionaries=dictionaries,
    )


def dictionaries_to_tensors(dictionaries: Mapping[str, Dictionary]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {}
    for s, d in dictionaries.items():
        tensors[f"{s}|bias"] = d.bias
        meta[s] = {}
        for a, by_value in d.codes.items():
            meta[s][a] = list(by_value)  # JSON keeps str and int values apart
            tensors[f"{s}|{a}"] = torch.stack(list(by_value.values()))
    return tensors, meta


def dictionaries_from(artifact: Artifact) -> dict[str, Dictionary]:
    out = {}
    for s, attrs in artifact.meta["codes"].items():
        codes = {a: dict(zip(values, artifact.tensors[f"{s}|{a}"], strict=True)) for a, values in attrs.items()}
        out[s] = Dictionary(artifact.tensors[f"{s}|bias"], codes)
    return out

