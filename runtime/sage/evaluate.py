"""The ground-truth and score passes after activations are collected (METHOD.md sections 3 and 5).

Everything here is a function of test-split tensors plus one callback, `patched`, that runs the
clean test prompts with some cross-sections' activations replaced. Each pass gathers all of its
interventions first and calls `patched` once, so the forward engine can batch them as memory
allows; `score_saes` does the same for several SAEs at once.

Inputs (N test prompts; a site is a cross-section, named by a string, of width d_s):
  acts[s]            (N, d_s) clean activations
  twin_acts[i][s]    (N, d_s) activations of each prompt's attribute-i twin (differs in i alone)
  values[i]          the N clean values of attribute i; twin_values[i] the twins' values
  clean              the unpatched Outcome
  dictionaries[s]    the supervised Dictionary fitted on train

Control is judged on the pairs whose twin really changes attribute i (v != v'); a pair whose
resample kept the value would count an empty edit as a success.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from runtime.sage import alignment, control, interpretability, validation
from runtime.sage.dictionaries import Dictionary, Value
from runtime.sage.metrics import METRICS, described
from runtime.sage.sparse import Latents, as_latents
from runtime.sage.statistics import LEVEL, Estimate, bootstrap, fraction_estimate, mean_estimate, resample, safe_ratio, undefined


@dataclass(frozen=True)
class Outcome:
    """The task metric (answer minus distractor) and the argmax next token, one per prompt."""

    metric: torch.Tensor  # (N,)
    argmax: torch.Tensor  # (N,) token ids


Condition = dict[str, torch.Tensor]  # site -> (N, d_s) replacement activations
Patched = Callable[[list[Condition]], list[Outcome]]


@dataclass(frozen=True)
class SaeSite:
    """One SAE at one site, through whichever reconstruction variant serves it there.

    Latents are held sparse (runtime/sage/sparse.Latents: only the nonzero ones of each prompt),
    as reconstruct.* returns them; a dense (N, L) tensor given here is made sparse, keeping every
    coordinate for a basis (whose zeros are not "inactive": it thresholds at its median)."""

    a_hat: torch.Tensor  # (N, d) reconstruction of the clean activations
    f: Latents  # (N, L) latents of the clean prompts
    twin_f: Mapping[str, Latents]  # attribute -> (N, L) latents of its twins
    w_dec: torch.Tensor  # (L, d) decoder rows
    # A basis baseline (runtime/sage/baselines.py) has signed coordinates, not latents that fire:
    # direction j is active where f_j exceeds this train-split median, an edit that moves f_j
    # toward zero removes weight whichever its sign, and -W_dec[j] is as good a direction as
    # W_dec[j] (METHOD.md section 7). None for an SAE: active where f > 0.
    median: torch.Tensor | None = None  # (L,)

    def __post_init__(self) -> None:
        keep = self.median is not None
        object.__setattr__(self, "f", as_latents(self.f, keep_zeros=keep))
        object.__setattr__(self, "twin_f", {a: as_latents(t, keep_zeros=keep) for a, t in self.twin_f.items()})
        for name, f in (("clean", self.f), *self.twin_f.items()):
            if f.width != self.w_dec.shape[0]:
                raise ValueError(f"the {name} latents are {f.width} wide but there are {self.w_dec.shape[0]} decoder rows")

    def active(self) -> Latents:
        """The active (prompt, latent) entries: f > 0, or above the median for a basis."""
        if self.median is None:
            return self.f.where(self.f.value > 0)
        return self.f.where(self.f.value > self.median.to(self.f.dtype)[self.f.index])


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Reference:
    """Per-prompt columns of the supervised validation that scoring an SAE at the same sites
    reuses: the mean-ablation outcome, the twin-patch targets and the supervised edit's
    per-pair results (so min_k compares like with like on the same resamples)."""

    ablated: Outcome
    targets: Mapping[str, Outcome]
    pairs: Mapping[str, torch.Tensor]  # attribute -> (N,) bool: the twin changes it
    edit_hits: Mapping[str, torch.Tensor]  # attribute -> (pairs,) 1.0 where the edit hit the target
    edit_magnitude: Mapping[str, torch.Tensor]  # attribute -> (pairs,)


@dataclass(frozen=True)
class SupervisedControl:
    edit_success: Estimate
    no_intervention_agreement: Estimate
    edit_magnitude: Estimate

    def to_json(self) -> dict:
        return {name: described(name, getattr(self, name)) for name in ("edit_success", "no_intervention_agreement", "edit_magnitude")}


@dataclass(frozen=True)
class SupervisedValidation:
    sites: tuple[str, ...]
    clean_metric: Estimate
    ablated_metric: Estimate
    spliced_metric: Estimate
    sufficiency: Estimate
    logit_diff_recovered: Estimate
    necessity: Estimate
    control: Mapping[str, SupervisedControl]
    explained_variance: Mapping[str, Estimate]  # site -> the whole dictionary's
    attribute_variance_explained: Mapping[str, Mapping[str, Estimate]]  # site -> attribute ->
    reference: Reference = field(repr=False, compare=False)

    def to_json(self) -> dict:
        headline = ("clean_metric", "ablated_metric", "spliced_metric", "sufficiency", "logit_diff_recovered", "necessity")
        return {
            "sites": list(self.sites),
            **{name: described(name, getattr(self, name)) for name in headline},
            "control": {a: c.to_json() for a, c in self.control.items()},
            "per_site": {
                s: {
                    "explained_variance": described("explained_variance", self.explained_variance[s]),
                    "attribute_variance_explained": {a: described("attribute_variance_explained", e) for a, e in self.attribute_variance_explained[s].items()},
                }
                for s in self.sites
            },
        }


@dataclass(frozen=True)
class SparseControl:
    no_intervention_agreement: Estimate
    supervised_edit_success: Estimate
    supervised_edit_magnitude: Estimate
    edit_success: Mapping[int, Estimate]  # k -> success with at most k latents
    edit_magnitude: Mapping[int, Estimate]  # k ->
    min_k: Estimate

    def to_json(self) -> dict:
        return {
            "no_intervention_agreement": described("no_intervention_agreement", self.no_intervention_agreement),
            "supervised_edit_success": described("edit_success", self.supervised_edit_success),
            "supervised_edit_magnitude": described("edit_magnitude", self.supervised_edit_magnitude),
            "by_k": {str(k): {"edit_success": described("edit_success", self.edit_success[k]), "edit_magnitude": described("edit_magnitude", self.edit_magnitude[k])} for k in self.edit_success},
            "min_k": described("min_k", self.min_k),
        }


VALUE_COLUMNS = ("best_f1", "precision", "recall", "latents_above_threshold")


@dataclass(frozen=True)
class Interpretability:
    feature_centric: Estimate
    value_centric: Estimate
    value_centric_by_attribute: Mapping[str, Estimate]  # a site may not carry every attribute
    values: tuple[interpretability.ValueMatch, ...]  # one per attribute value, its best latent

    def to_json(self) -> dict:
        def number(x: float) -> float | None:
            return None if math.isnan(x) else x

        rows = [
            {"attribute": m.attribute, "value": m.value, "latent": m.latent, "best_f1": m.f1, "precision": number(m.precision), "recall": m.recall, "latents_above_threshold": m.latents_above_threshold}
            for m in self.values
        ]
        return {
            "feature_centric": described("feature_centric", self.feature_centric),
            "value_centric": described("value_centric", self.value_centric),
            "value_centric_by_attribute": {a: described("value_centric", e) for a, e in self.value_centric_by_attribute.items()},
            "values": rows,
            "value_columns": {c: {"direction": METRICS[c].direction, "description": METRICS[c].description} for c in VALUE_COLUMNS},
        }


@dataclass(frozen=True)
class SiteScores:
    explained_variance: Estimate
    l0: Estimate
    dead_fraction: Estimate
    interpretability: Interpretability
    best_cosine: Estimate
    matched_cosine: Estimate

    def to_json(self) -> dict:
        out = {name: described(name, getattr(self, name)) for name in ("explained_variance", "l0", "dead_fraction")}
        out["interpretability"] = self.interpretability.to_json()
        out["alignment"] = {name: described(name, getattr(self, name)) for name in ("best_cosine", "matched_cosine")}
        return out


@dataclass(frozen=True)
class SaeScores:
    sites: tuple[str, ...]
    spliced_metric: Estimate
    sufficiency: Estimate
    logit_diff_recovered: Estimate
    necessity: Estimate
    control: Mapping[str, SparseControl]
    per_site: Mapping[str, SiteScores]

    def to_json(self) -> dict:
        return {
            "sites": list(self.sites),
            **{name: described(name, getattr(self, name)) for name in ("spliced_metric", "sufficiency", "logit_diff_recovered", "necessity")},
            "control": {a: c.to_json() for a, c in self.control.items()},
            "per_site": {s: r.to_json() for s, r in self.per_site.items()},
        }


# ---------------------------------------------------------------------------------------------
# Supervised dictionaries (section 3)


def validate_supervised(
    *,
    acts: Mapping[str, torch.Tensor],
    twin_acts: Mapping[str, Mapping[str, torch.Tensor]],
    values: Mapping[str, Sequence[Value]],
    twin_values: Mapping[str, Sequence[Value]],
    clean: Outcome,
    patched: Patched,
    dictionaries: Mapping[str, Dictionary],
    seed: int = 0,
) -> SupervisedValidation:
    """Sufficiency, necessity and control of the dictionaries, patching all their sites at once
    (one call of `patched`); control for every attribute in `twin_acts`."""
    sites = tuple(dictionaries)
    n = len(clean.metric)
    _check_shapes(n, sites, acts, twin_acts, values)
    for s, d in dictionaries.items():
        for a in d.attributes:
            if a not in values:
                raise ValueError(f"site {s!r}: the dictionary has codes for attribute {a!r} but no test values were given for it")
    for a in twin_acts:
        if a not in twin_values:
            raise ValueError(f"twin activations for attribute {a!r} but no twin values")
    attributes = tuple(twin_acts)
    rows = {s: {a: _code_rows(d, a, values[a]) for a in d.attributes} for s, d in dictionaries.items()}
    code_sum = {s: sum(rows[s].values()) for s in sites}
    u0 = {s: _like(dictionaries[s].bias.expand(n, -1), acts[s]) for s in sites}
    a_hat = {s: _like(dictionaries[s].bias + code_sum[s], acts[s]) for s in sites}

    conditions: list[Condition] = [a_hat, {s: u0[s] + (acts[s] - a_hat[s]) for s in sites}, u0]
    for a in attributes:
        # The supervised edit a - u_{i,v} + u_{i,v'}, and its target: the twin patched in.
        conditions.append({s: acts[s] + _like(_code_rows(dictionaries[s], a, twin_values[a]) - rows[s][a], acts[s]) for s in sites})
        conditions.append({s: twin_acts[a][s] for s in sites})
    spliced, removed, ablated, *edit_and_target = _call(patched, conditions)

    pairs, hits, magnitudes, control_results, targets = {}, {}, {}, {}, {}
    for index, a in enumerate(attributes):
        edited, target = edit_and_target[2 * index], edit_and_target[2 * index + 1]
        mask = torch.tensor([v != w for v, w in zip(values[a], twin_values[a], strict=True)], dtype=torch.bool)
        magnitude = torch.stack([control.supervised_edit_magnitude(rows[s][a].double(), code_sum[s].double()) for s in sites]).nanmean(dim=0)
        pairs[a], targets[a] = mask, target
        hits[a] = (edited.argmax[mask] == target.argmax[mask]).to(torch.float64)
        magnitudes[a] = magnitude[mask]
        control_results[a] = SupervisedControl(
            edit_success=_over_pairs(a, mask, lambda: validation.edit_success(edited.argmax[mask], target.argmax[mask], seed=seed)),
            no_intervention_agreement=_over_pairs(a, mask, lambda: validation.edit_success(clean.argmax[mask], target.argmax[mask], seed=seed)),
            edit_magnitude=_over_pairs(a, mask, lambda: _mean_where_defined(magnitude[mask], seed=seed)),
        )

    return SupervisedValidation(
        sites=sites,
        clean_metric=mean_estimate(clean.metric, seed=seed),
        ablated_metric=mean_estimate(ablated.metric, seed=seed),
        spliced_metric=mean_estimate(spliced.metric, seed=seed),
        sufficiency=validation.sufficiency(clean.metric, spliced.metric, seed=seed),
        logit_diff_recovered=validation.logit_diff_recovered(clean.metric, spliced.metric, ablated.metric, seed=seed),
        necessity=validation.necessity(clean.metric, removed.metric, ablated.metric, seed=seed),
        control=control_results,
        explained_variance={s: explained_variance(acts[s], a_hat[s], seed=seed) for s in sites},
        attribute_variance_explained={s: {a: attribute_variance_explained(acts[s], rows[s][a], seed=seed) for a in dictionaries[s].attributes} for s in sites},
        reference=Reference(ablated, targets, pairs, hits, magnitudes),
    )


# ---------------------------------------------------------------------------------------------
# SAEs against the ground truth (section 5)


def score_sae(
    sae: Mapping[str, SaeSite],
    *,
    supervised: SupervisedValidation,
    acts: Mapping[str, torch.Tensor],
    twin_acts: Mapping[str, Mapping[str, torch.Tensor]],
    values: Mapping[str, Sequence[Value]],
    clean: Outcome,
    patched: Patched,
    dictionaries: Mapping[str, Dictionary],
    ks: Sequence[int] = control.KS,
    seed: int = 0,
    exact: str | None = None,
) -> SaeScores:
    """Scores one SAE at the sites it serves (`sae`, site -> SaeSite). `supervised` must be the
    validation of the dictionaries at exactly those sites: its mean-ablation outcome, targets
    and edit success are the baselines here. One call of `patched`.

    `exact`: why the reconstruction is the activation itself (a complete basis): splicing it in
    and removing it are then not run, and the numbers they give are null with that reason."""
    return score_saes({"": sae}, supervised=supervised, acts=acts, twin_acts=twin_acts, values=values, clean=clean, patched=patched,
                      dictionaries=dictionaries, ks=ks, seed=seed, exact=exact)[""]


def score_saes(
    saes: Mapping[str, Mapping[str, SaeSite]],
    *,
    supervised: SupervisedValidation,
    acts: Mapping[str, torch.Tensor],
    twin_acts: Mapping[str, Mapping[str, torch.Tensor]],
    values: Mapping[str, Sequence[Value]],
    clean: Outcome,
    patched: Patched,
    dictionaries: Mapping[str, Dictionary],
    ks: Sequence[int] = control.KS,
    seed: int = 0,
    exact: str | None = None,
) -> dict[str, SaeScores]:
    """`score_sae` for several SAEs serving the same sites, with one call of `patched` for all."""
    n = len(clean.metric)
    plans = {}
    for name, sae in saes.items():
        if set(sae) != set(supervised.sites):
            raise ValueError(f"SAE {name!r} serves sites {sorted(sae)} but the supervised validation covers {sorted(supervised.sites)}")
        _check_shapes(n, tuple(sae), acts, twin_acts, values)
        plans[name] = _plan_sae(sae, supervised, acts, twin_acts, values, clean, dictionaries, ks, seed, exact)
    outcomes = _call(patched, [c for conditions, _ in plans.values() for c in conditions])
    results, start = {}, 0
    for name, (conditions, finish) in plans.items():
        results[name] = finish(outcomes[start : start + len(conditions)])
        start += len(conditions)
    return results


def _plan_sae(sae, supervised, acts, twin_acts, values, clean, dictionaries, ks, seed, exact=None) -> tuple[list[Condition], Callable[[list[Outcome]], SaeScores]]:
    sites = tuple(sae)
    reference = supervised.reference
    attributes = tuple(reference.targets)
    u0 = {s: _like(dictionaries[s].bias, acts[s]) for s in sites}
    conditions: list[Condition] = [] if exact is not None else [
        {s: _like(sae[s].a_hat, acts[s]) for s in sites},
        {s: u0[s] + acts[s] - _like(sae[s].a_hat, acts[s]) for s in sites},
    ]
    magnitudes: dict[str, dict[int, torch.Tensor]] = {}
    decoded = {s: control.decode(sae[s].f, sae[s].w_dec) for s in sites}  # shared by every attribute's edits
    for a in attributes:
        edits, chosen = {}, {}
        for s in sites:
            if a not in sae[s].twin_f:
                raise ValueError(f"site {s!r} has no latents for the {a!r} twins")
            edits[s], chosen[s] = control.greedy_edits(sae[s].f, sae[s].twin_f[a], sae[s].w_dec, twin_acts[a][s] - acts[s], ks)
        # The sparse edit moves the REAL activations, at every served site at once.
        conditions.extend({s: acts[s] + _like(edits[s][k], acts[s]) for s in sites} for k in ks)
        # Greedy choices are nested: the magnitude at k is a prefix sum of per-step shares.
        per_step = torch.stack([control.removed_weights(sae[s].f, sae[s].twin_f[a], sae[s].w_dec, chosen[s], decoded[s], signed=sae[s].median is not None).double().cumsum(dim=1) for s in sites])
        magnitudes[a] = {k: per_step[:, :, k - 1].nanmean(dim=0) for k in ks}

    def finish(outcomes: list[Outcome]) -> SaeScores:
        return scores_from(outcomes, sae, acts=acts, values=values, clean=clean, supervised=supervised,
                           dictionaries=dictionaries, magnitudes=magnitudes, ks=ks, seed=seed, exact=exact)

    return conditions, finish


def scores_from(
    outcomes: Sequence[Outcome],
    sites: Mapping[str, SaeSite],
    *,
    acts: Mapping[str, torch.Tensor],
    values: Mapping[str, Sequence[Value]],
    clean: Outcome,
    supervised: SupervisedValidation,
    dictionaries: Mapping[str, Dictionary],
    magnitudes: Mapping[str, Mapping[int, torch.Tensor]],
    ks: Sequence[int],
    seed: int,
    exact: str | None = None,
) -> SaeScores:
    """An SAE's (or a suite's) scores from the outcomes of its conditions, in the order both
    planners build them: spliced, removed (neither where `exact` says why the reconstruction is
    the activation), then per attribute one edit per k."""
    if exact is None:
        spliced, removed, *edited = outcomes
    else:
        edited = list(outcomes)
    reference = supervised.reference
    sparse = {}
    for index, a in enumerate(reference.targets):
        mask, target = reference.pairs[a], reference.targets[a]
        by_k = dict(zip(ks, edited[index * len(ks) : (index + 1) * len(ks)], strict=True))
        hits = {k: (by_k[k].argmax[mask] == target.argmax[mask]).to(torch.float64) for k in ks}
        sparse[a] = SparseControl(
            no_intervention_agreement=supervised.control[a].no_intervention_agreement,
            supervised_edit_success=supervised.control[a].edit_success,
            supervised_edit_magnitude=supervised.control[a].edit_magnitude,
            edit_success={k: _over_pairs(a, mask, lambda k=k: mean_estimate(hits[k], seed=seed)) for k in ks},
            edit_magnitude={k: _over_pairs(a, mask, lambda k=k: _mean_where_defined(magnitudes[a][k][mask], seed=seed)) for k in ks},
            min_k=_over_pairs(a, mask, lambda: min_k(hits, reference.edit_hits[a], seed=seed)),
        )
    ablated = reference.ablated.metric
    if exact is None:
        spliced_metric = mean_estimate(spliced.metric, seed=seed)
        sufficiency = validation.sufficiency(clean.metric, spliced.metric, seed=seed)
        logit_diff_recovered = validation.logit_diff_recovered(clean.metric, spliced.metric, ablated, seed=seed)
        necessity = validation.necessity(clean.metric, removed.metric, ablated, seed=seed)
    else:
        spliced_metric = sufficiency = logit_diff_recovered = necessity = undefined(exact, len(clean.metric))
    return SaeScores(
        sites=tuple(sites),
        spliced_metric=spliced_metric,
        sufficiency=sufficiency,
        logit_diff_recovered=logit_diff_recovered,
        necessity=necessity,
        control=sparse,
        per_site={s: score_site(sites[s], acts[s], dictionaries[s], values, seed=seed) for s in sites},
    )


def score_site(site: SaeSite, a: torch.Tensor, dictionary: Dictionary, values: Mapping[str, Sequence[Value]], *, seed: int = 0) -> SiteScores:
    """The per-site numbers that need no forward pass: variance, sparsity, interpretability and
    alignment. A latent counts as nonzero for L0 and deadness (a residual-variant latent may be
    negative: c suppresses it), and as active for interpretability when positive (a basis
    direction: above its train-split median; METHOD.md)."""
    return SiteScores(
        explained_variance=explained_variance(a, site.a_hat, seed=seed),
        l0=mean_estimate(site.f.nonzero_per_row().to(torch.float64), seed=seed),
        dead_fraction=fraction_estimate(~site.f.ever_nonzero(), seed=seed),
        interpretability=interpretability_scores(site.active(), values, seed=seed),
        **alignment_scores(dictionary, site.w_dec, seed=seed, signed=site.median is not None),
    )


# ---------------------------------------------------------------------------------------------
# Aggregations


def explained_variance(a: torch.Tensor, a_hat: torch.Tensor, *, seed: int = 0) -> Estimate:
    """1 - sum ||a - a_hat||^2 / sum ||a - mean a||^2 over prompts, bootstrapped over prompts.
    Resamples keep the centre at the full-sample mean (a per-prompt column needs a fixed centre);
    the interval thereby omits the mean's own sampling error, of relative order 1/N."""
    a, a_hat = a.detach().to(torch.float64), a_hat.detach().to(torch.float64)
    residual = (a - a_hat).pow(2).sum(dim=1)
    total = (a - a.mean(dim=0)).pow(2).sum(dim=1)
    return bootstrap({"r": residual, "t": total}, lambda m: 1 - safe_ratio(m["r"], m["t"]), seed=seed)


def attribute_variance_explained(a: torch.Tensor, code_rows: torch.Tensor, *, seed: int = 0) -> Estimate:
    """The share of a's variance that attribute i's codes explain: the explained variance of
    mean a + u_{i,v_i(p)} - mean_p u_{i,v_i(p)}. Centring on the test prompts keeps it about
    the attribute alone: neither a train-test shift of the mean nor the offsets least-squares
    codes split between bias and codes count against it."""
    code_rows = code_rows.detach().to(torch.float64)
    a64 = a.detach().to(torch.float64)
    return explained_variance(a64, a64.mean(dim=0) + code_rows - code_rows.mean(dim=0), seed=seed)


def min_k(hits: Mapping[int, torch.Tensor], supervised_hits: torch.Tensor, *, seed: int = 0, level: float = LEVEL) -> Estimate:
    """The smallest k whose edit success reaches the supervised edit's, on the same pairs.

    Bootstrapped on paired resamples of the pairs; the interval is percentile over replicates,
    a replicate where no k reaches counting as beyond the largest k. A bound beyond it is
    undefined (NaN with the reason), never the largest k standing in for "more"."""
    ks = sorted(hits)
    columns = {f"k{k}": hits[k] for k in ks} | {"supervised": supervised_hits}

    def smallest(m: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out = torch.full_like(m["supervised"], math.inf)
        for k in reversed(ks):  # the last assignment is the smallest k that reaches
            out = torch.where(m[f"k{k}"] >= m["supervised"], torch.full_like(out, float(k)), out)
        return out

    point, replicates, n = resample(columns, smallest, seed=seed)
    if n == 0:
        return undefined("no pairs", 0)
    alpha = (1 - level) / 2
    low = float(torch.quantile(replicates, alpha, interpolation="lower"))
    high = float(torch.quantile(replicates, 1 - alpha, interpolation="higher"))
    beyond = f"no k up to {ks[-1]} reaches the supervised edit success"
    if math.isinf(point):
        return Estimate(math.nan, math.nan, math.nan, n, beyond)
    if math.isinf(high):
        share = float(torch.isinf(replicates).to(torch.float64).mean())
        return Estimate(point, low, math.nan, n, f"upper bound undefined: {beyond} in {share:.0%} of resamples")
    return Estimate(point, low, high, n)


def interpretability_scores(active: Latents | torch.Tensor, values: Mapping[str, Sequence[Value]], *, seed: int = 0) -> Interpretability:
    """Both views of interpretability; each fraction bootstrapped over its items (latents or
    values), the per-value best matches kept for the report."""
    properties = interpretability.feature_centric(active, values)
    matches = tuple(interpretability.value_centric(active, values))
    if properties:
        feature = fraction_estimate(interpretability.fraction_at_least([p.f1 for p in properties]), seed=seed)
    else:
        feature = undefined("no latent is active on the test prompts")
    value = fraction_estimate(interpretability.fraction_at_least([m.f1 for m in matches]), seed=seed)
    by_attribute = {a: fraction_estimate(interpretability.fraction_at_least([m.f1 for m in matches if m.attribute == a]), seed=seed) for a in values}
    return Interpretability(feature, value, by_attribute, matches)


def alignment_scores(dictionary: Dictionary, w_dec: torch.Tensor, *, seed: int = 0, signed: bool = False) -> dict[str, Estimate]:
    """Best and Hungarian-matched cosine of the codes u_{i,v} with the decoder rows, each a mean
    over codes. Codes and decoder rows live in one space only when their widths agree (a
    residual SAE serving a head_z site does not). `signed`: the rows are a basis's, whose
    coordinates take either sign, so a code counts its |cosine|."""
    codes = torch.stack([u for by_value in dictionary.codes.values() for u in by_value.values()])
    if codes.shape[1] != w_dec.shape[1]:
        reason = f"codes are {codes.shape[1]} wide but decoder rows {w_dec.shape[1]}: no common space"
        return {"best_cosine": undefined(reason), "matched_cosine": undefined(reason)}
    result = alignment.align(codes, w_dec.detach(), absolute=signed)
    matched = result.matched_cosine[torch.isfinite(result.matched_cosine)]  # fewer latents than codes: some unmatched
    return {"best_cosine": mean_estimate(result.best_cosine, seed=seed), "matched_cosine": mean_estimate(matched, seed=seed)}


# ---------------------------------------------------------------------------------------------
# Plumbing


def _call(patched: Patched, conditions: list[Condition]) -> list[Outcome]:
    outcomes = list(patched(conditions))
    if len(outcomes) != len(conditions):
        raise ValueError(f"patched returned {len(outcomes)} outcomes for {len(conditions)} conditions")
    return outcomes


def _code_rows(dictionary: Dictionary, attribute: str, column: Sequence[Value]) -> torch.Tensor:
    """u_{i, v_i(p)} per prompt, (N, d)."""
    codes = dictionary.codes.get(attribute)
    if codes is None:
        raise ValueError(f"the dictionary has no codes for attribute {attribute!r}")
    unseen = [v for v in dict.fromkeys(column) if v not in codes]
    if unseen:
        raise ValueError(f"value {unseen[0]!r} of attribute {attribute!r} has no code (it never occurs in the fitting prompts)")
    where = {v: i for i, v in enumerate(codes)}
    return torch.stack(list(codes.values()))[torch.tensor([where[v] for v in column], dtype=torch.long)]


def _like(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return x.to(dtype=reference.dtype, device=reference.device)


def _over_pairs(attribute: str, mask: torch.Tensor, estimate: Callable[[], Estimate]) -> Estimate:
    if not bool(mask.any()):
        return undefined(f"no test pair changes attribute {attribute!r}")
    return estimate()


def _mean_where_defined(column: torch.Tensor, *, seed: int) -> Estimate:
    """Edit magnitude is a weight within p's reconstruction (per site, averaged over the sites
    where it is defined); a pair whose reconstruction is empty everywhere has none, and is left
    out (n says how many remain)."""
    defined = torch.isfinite(column)
    if not bool(defined.any()):
        return undefined("the reconstruction is empty on every pair: no weight to remove")
    return mean_estimate(column[defined], seed=seed)


def _check_shapes(n, sites, acts, twin_acts, values) -> None:
    for s in sites:
        if s not in acts or acts[s].shape[0] != n:
            raise ValueError(f"site {s!r}: expected {n} clean activation rows")
        for a, by_site in twin_acts.items():
            if s not in by_site or by_site[s].shape != acts[s].shape:
                raise ValueError(f"site {s!r}: the {a!r} twin activations do not match the clean ones in shape")
    for a, column in values.items():
        if len(column) != n:
            raise ValueError(f"attribute {a!r} has {len(column)} values for {n} prompts")
