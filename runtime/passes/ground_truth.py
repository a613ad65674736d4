"""The ground_truth pass (METHOD.md section 3): supervised dictionaries at the located
cross-sections, fitted on train with streamed sums, validated on test by patching every
cross-section at once (sufficiency, necessity, control)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

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
# Units (prompt, patched values) per call of the forward engine, never fewer than one condition's:
# the progress bar moves between calls. Each forward reduces its logits to the metric and the
# argmax as they come, so the vocabulary's width never multiplies the rows of a call.
CALL_ROWS = 1024


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


def patcher(ctx, loaded, data: TestData):
    """The `patched` callback of runtime/sage/evaluate.py over the test prompts of `data`.

    Each (condition, prompt) is a unit of work, and two kinds need no forward of their own: a
    prompt whose patched values are its clean activations at every patched site takes the clean
    outcome (an edit is empty where a twin's latents equal the prompt's own), and identical units run
    once (greedy edits saturate: once k reaches the latents that differ, every larger k gives
    the same edit)."""

    prompts = data.prompts
    per_call = max(len(prompts), CALL_ROWS)

    def patched(conditions: list[Condition]) -> list[Outcome]:
        # Conditions patching only late tokens (the final one, or IOI's s2) recompute just the
        # tokens from the earliest patch on, on the clean prefix's cache (DESIGN.md's normal
        # path). Units of conditions that patch the same sites run together, as few forwards as
        # memory allows.
        n = len(prompts)
        metric = [data.clean.metric.clone() for _ in conditions]
        argmax = [data.clean.argmax.clone() for _ in conditions]
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, condition in enumerate(conditions):
            groups.setdefault(tuple(sorted(condition)), []).append(index)
        caches = {sites: common.suffix_path(loaded, prompts, [common.parse_site(s) for s in sites]) for sites in groups}
        # Groups sharing a cache run together (each layer's entry stream is computed once).
        in_order = sorted(groups, key=lambda sites: (caches[sites] is None, caches[sites] or (0, 0)))
        with ctx.reporter.track("interventions", total=len(conditions) * n) as bar:
            for sites in in_order:
                units, uses = _units([conditions[i] for i in groups[sites]], sites, data.acts)
                bar.advance(len(groups[sites]) * n - len(units))
                ctx.count("intervention_rows", len(groups[sites]) * n)
                ctx.count("intervention_rows_run", len(units))
                prefix = common.prefix_cache(ctx, loaded, prompts, *caches[sites]) if caches[sites] is not None else None
                got_metric, got_argmax = torch.empty(len(units)), torch.empty(len(units), dtype=torch.long)
                for start in range(0, len(units), per_call):
                    chunk = units[start : start + per_call]
                    rows = [p for p, _ in chunk]
                    batch = [prompts[p] for p in rows]
                    patches = [_patch(name, batch, torch.stack([values[j] for _, values in chunk])) for j, name in enumerate(sites)]
                    got = common.patched_logits(ctx, loaded, batch, patches, prefix=prefix, reduce=common.metric_and_argmax(batch))
                    got_metric[start : start + len(chunk)] = got[:, 0]
                    got_argmax[start : start + len(chunk)] = got[:, 1].long()
                    bar.advance(len(chunk))
                for i, (rows, unit) in zip(groups[sites], uses, strict=True):
                    metric[i][rows], argmax[i][rows] = got_metric[unit], got_argmax[unit]
        return [Outcome(m, a) for m, a in zip(metric, argmax, strict=True)]

    return patched


def _units(conditions: Sequence[Condition], sites: Sequence[str], clean: Mapping[str, torch.Tensor]):
    """The distinct (prompt, patched values) units of conditions patching `sites`, skipping
    prompts patched with their clean activations; and per condition, (prompt rows, unit per
    row) for the rows that run."""
    units: list[tuple[int, list[torch.Tensor]]] = []
    seen: dict[tuple[int, bytes], int] = {}
    uses = []
    for condition in conditions:
        same = torch.ones(len(condition[sites[0]]), dtype=torch.bool)
        for s in sites:
            if s not in clean or condition[s].shape != clean[s].shape:
                same[:] = False
            else:
                same &= (condition[s] == clean[s]).all(dim=1)
        rows = (~same).nonzero().flatten()
        unit = []
        for p in rows.tolist():
            values = [condition[s][p].detach().cpu() for s in sites]
            key = (p, b"".join(v.contiguous().view(torch.uint8).numpy().tobytes() for v in values))
            if key not in seen:
                seen[key] = len(units)
                units.append((p, values))
            unit.append(seen[key])
        uses.append((rows, torch.as_tensor(unit, dtype=torch.long)))
    return units, uses


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
        patched=patcher(ctx, loaded, data),
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

