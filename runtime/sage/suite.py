"""A family of SAEs judged as one dictionary system on the whole located circuit (METHOD.md
section 6): each located cross-section reconstructed by the member serving it, all patched at
once.

Sufficiency, logit difference recovered, necessity and interpretability are exactly an SAE's
(runtime/sage/evaluate.py), the sites drawn from several SAEs. Control differs: an edit may use
at most k latents in total across the members, chosen greedily over all of them. Because the
sites are disjoint blocks of one long activation vector, ||S - t||^2 = sum over sites of
||S_s - t_s||^2 and a latent of site s moves block s alone, so each greedy step takes the
latent, at whichever site, that lowers the total distance most (`greedy_across`); with one site
it is runtime.sage.control.greedy_edits. Coverage is the share of the located cross-sections the
suite serves, by count and by verified |patching effect|.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from runtime.sage import control
from runtime.sage.evaluate import (
    Condition,
    Outcome,
    Patched,
    SaeScores,
    SaeSite,
    SupervisedValidation,
    _call,
    _check_shapes,
    _like,
    scores_from,
)
from runtime.sage.dictionaries import Dictionary, Value
from runtime.sage.sparse import Latents, as_latents

GATHER_BUDGET = control.GATHER_BUDGET


@dataclass(frozen=True)
class Block:
    """One site of a joint edit: source and target latents, decoder rows, and the true change."""

    f_source: Latents  # (N, L_s), sparse (runtime/sage/sparse.py)
    f_target: Latents  # (N, L_s)
    w_dec: torch.Tensor  # (L_s, d_s)
    true_delta: torch.Tensor  # (N, d_s)


def greedy_across(blocks: Mapping[str, Block], ks: Sequence[int] = control.KS) -> tuple[dict[int, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """k times, the latent at any site whose step d_j = (f_j(p') - f_j(p)) W_dec[j] brings the
    joint edit closest to the true change at every site together. Returns {k: {site: edit
    delta (N, d_s)}} and, per site, the latents chosen there at each step (N, max k), -1 at steps
    that chose another site's latent or found nothing left. Ties go to the first site, then the
    lowest latent index."""
    names = list(blocks)
    n = len(next(iter(blocks.values())).f_source) if blocks else 0
    tables = {s: _candidates(b) for s, b in blocks.items()}
    widths = [tables[s][0].shape[1] for s in names]
    total = sum(widths)
    rows = max(1, GATHER_BUDGET // max(1, total * max((b.w_dec.shape[1] for b in blocks.values()), default=1)))
    edits: dict[int, dict[str, list[torch.Tensor]]] = {k: {s: [] for s in names} for k in ks}
    chosen: dict[str, list[torch.Tensor]] = {s: [] for s in names}
    for start in range(0, n, rows):
        part = slice(start, min(n, start + rows))
        e, c = _greedy_rows({s: tuple(t[part] for t in tables[s]) for s in names}, {s: blocks[s] for s in names}, part, ks)
        for k in ks:
            for s in names:
                edits[k][s].append(e[k][s])
        for s in names:
            chosen[s].append(c[s])
    dtype = {s: blocks[s].w_dec.dtype for s in names}
    out_edits = {k: {s: torch.cat(edits[k][s]) if edits[k][s] else torch.zeros(0, blocks[s].w_dec.shape[1], dtype=dtype[s]) for s in names} for k in ks}
    out_chosen = {s: torch.cat(chosen[s]) if chosen[s] else torch.zeros(0, max(ks), dtype=torch.long) for s in names}
    return out_edits, out_chosen


def _candidates(b: Block) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each pair's latents that differ between p and p', in a padded (N, C) table (as
    control.greedy_edits lays them out): indices, availability, and the change df."""
    source, target = as_latents(b.f_source), as_latents(b.f_target)
    n = source.n
    change = target.minus(source)  # entries in (row, latent) order
    row_of, latent = change.row_of(), change.index
    counts = change.crow.diff()
    width = int(counts.max()) if n and len(row_of) else 0
    slot = torch.arange(len(row_of)) - change.crow[:-1][row_of]
    candidates = torch.zeros(n, width, dtype=torch.long)
    available = torch.zeros(n, width, dtype=torch.bool)
    df = torch.zeros(n, width, dtype=b.w_dec.dtype)
    candidates[row_of, slot] = latent
    available[row_of, slot] = True
    df[row_of, slot] = change.value.to(b.w_dec.dtype)
    return candidates, available, df


def _greedy_rows(tables, blocks: Mapping[str, Block], part: slice, ks: Sequence[int]):
    names = list(blocks)
    pieces = []
    for s in names:
        candidates, available, df = tables[s]
        w = blocks[s].w_dec
        rows_w = w[candidates]  # (n, C_s, d_s)
        # As control.greedy_edits: the dots move by one product with the row taken per step,
        # O(k C d) in all, never a C x C Gram block.
        dots = -torch.bmm(rows_w, blocks[s].true_delta[part].to(w.dtype)[:, :, None])[:, :, 0]
        pieces.append((candidates, available.clone(), df, rows_w, None, rows_w.pow(2).sum(dim=2), dots))
    n = part.stop - part.start
    offsets = [0]
    for p in pieces:
        offsets.append(offsets[-1] + p[0].shape[1])
    width = offsets[-1]
    dtype = torch.float64 if any(b.w_dec.dtype == torch.float64 for b in blocks.values()) else torch.float32
    available = torch.cat([p[1] for p in pieces], dim=1) if pieces else torch.zeros(n, 0, dtype=torch.bool)
    df = torch.cat([p[2].to(dtype) for p in pieces], dim=1) if pieces else torch.zeros(n, 0)
    norms = torch.cat([p[5].to(dtype) for p in pieces], dim=1) if pieces else torch.zeros(n, 0)
    dots = [p[6].to(dtype) for p in pieces]
    running = {s: torch.zeros(n, blocks[s].w_dec.shape[1], dtype=blocks[s].w_dec.dtype) for s in names}
    chosen = {s: torch.full((n, max(ks)), -1, dtype=torch.long) for s in names}
    edits: dict[int, dict[str, torch.Tensor]] = {}
    rows = torch.arange(n)
    for step in range(max(ks)):
        if width > 0:
            score = (2 * df * torch.cat(dots, dim=1) + df.pow(2) * norms).masked_fill(~available, float("inf"))
            best = score.argmin(dim=1)
            has = available[rows, best]
            coef = torch.where(has, df[rows, best], torch.zeros_like(df[:, 0]))
            for b, s in enumerate(names):
                lo, hi = offsets[b], offsets[b + 1]
                here = has & (best >= lo) & (best < hi)
                if not bool(here.any()):
                    continue
                candidates, _, _, rows_w, _, _, _ = pieces[b]
                local = (best - lo).clamp(0, max(hi - lo - 1, 0))
                c = torch.where(here, coef, torch.zeros_like(coef)).to(rows_w.dtype)
                taken = rows_w[rows, local]  # (n, d_s)
                running[s] = running[s] + c[:, None] * taken
                dots[b] = dots[b] + c.to(dtype)[:, None] * torch.bmm(rows_w, taken[:, :, None])[:, :, 0].to(dtype)
                chosen[s][:, step] = torch.where(here, candidates[rows, local], chosen[s][:, step])
            available[rows[has], best[has]] = False
        if step + 1 in ks:
            edits[step + 1] = {s: running[s].clone() for s in names}
    return edits, chosen


def removed_shares(f_source: Latents | torch.Tensor, f_target: Latents | torch.Tensor, w_dec: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Each step's share of the edit magnitude at one site (METHOD.md section 5: the weight, in
    p's reconstruction there, of what the chosen latent removes), (N, steps); zero at steps that
    chose another site's latent (-1 there), NaN rows where p's reconstruction is empty: exactly
    control.removed_weights."""
    return control.removed_weights(f_source, f_target, w_dec, chosen)


def score_suite(
    sites: Mapping[str, SaeSite],
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
) -> SaeScores:
    """A suite's scores: `sites` maps each served cross-section to its member's reconstruction
    there; `supervised` is the dictionaries' validation on exactly those sites. One call of
    `patched`: the spliced and the removed conditions, then per attribute one edit per k."""
    names = tuple(sites)
    if set(names) != set(supervised.sites):
        raise ValueError(f"the suite serves sites {sorted(names)} but the supervised validation covers {sorted(supervised.sites)}")
    n = len(clean.metric)
    _check_shapes(n, names, acts, twin_acts, values)
    reference = supervised.reference
    attributes = tuple(reference.targets)
    u0 = {s: _like(dictionaries[s].bias, acts[s]) for s in names}
    conditions: list[Condition] = [
        {s: _like(sites[s].a_hat, acts[s]) for s in names},
        {s: u0[s] + acts[s] - _like(sites[s].a_hat, acts[s]) for s in names},
    ]
    f = {s: sites[s].f for s in names}
    magnitudes: dict[str, dict[int, torch.Tensor]] = {}
    for a in attributes:
        blocks = {}
        for s in names:
            if a not in sites[s].twin_f:
                raise ValueError(f"site {s!r} has no latents for the {a!r} twins")
            blocks[s] = Block(f[s], sites[s].twin_f[a], sites[s].w_dec, twin_acts[a][s] - acts[s])
        edits, chosen = greedy_across(blocks, ks)
        # The edit moves the REAL activations at every served site at once, k latents in all.
        conditions.extend({s: acts[s] + _like(edits[k][s], acts[s]) for s in names} for k in ks)
        per_step = torch.stack([removed_shares(b.f_source, b.f_target, b.w_dec, chosen[s]).double().cumsum(dim=1) for s, b in blocks.items()])
        magnitudes[a] = {k: per_step[:, :, k - 1].nanmean(dim=0) for k in ks}
    return scores_from(_call(patched, conditions), sites, acts=acts, values=values, clean=clean, supervised=supervised,
                       dictionaries=dictionaries, magnitudes=magnitudes, ks=ks, seed=seed)


@dataclass(frozen=True)
class Coverage:
    """How much of the located circuit a suite serves: by count, and by verified |patching
    effect| (None with the reason when some located cross-section was not verified)."""

    served: int
    located: int
    effect_served: float | None
    effect_located: float | None
    reason: str | None = None

    @property
    def sites_fraction(self) -> float | None:
        return self.served / self.located if self.located else None

    @property
    def effect_fraction(self) -> float | None:
        if self.effect_served is None or not self.effect_located:
            return None
        return self.effect_served / self.effect_located

    def to_json(self) -> dict:
        effect = {"fraction": self.effect_fraction, "served": self.effect_served, "located": self.effect_located,
                  "description": "share of the located cross-sections' summed |verified patching effect| that the served ones carry"}
        if self.effect_fraction is None:
            effect["reason"] = self.reason or "the located cross-sections' patching effects sum to zero"
        sites = {"fraction": self.sites_fraction, "served": self.served, "located": self.located,
                 "description": "share of the located cross-sections a member of the suite serves"}
        if self.sites_fraction is None:
            sites["reason"] = "nothing was located"
        return {"sites": sites, "patching_effect": effect}


def coverage(located: Sequence[str], served: Sequence[str], effects: Mapping[str, float | None]) -> Coverage:
    """`effects`: each located cross-section's verified patching effect (None: not verified)."""
    missing = [s for s in located if effects.get(s) is None]
    if missing:
        return Coverage(len(served), len(located), None, None, f"patching effects were not verified for {', '.join(missing)} (locate's `verify patching` measures them)")
    total = sum(abs(float(effects[s])) for s in located)
    carried = sum(abs(float(effects[s])) for s in served)
    return Coverage(len(served), len(located), carried, total)
