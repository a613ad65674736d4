"""Sparse control and edit magnitude (METHOD.md section 5, after Makelov et al.).

To move attribute i from v (prompt p) to v' (its twin p'), an SAE may change at most k latents.
Latent j offers the step d_j = (f_j(p') - f_j(p)) W_dec[j]; greedily, k times, we take the j that
brings the running sum closest to the true change a(p') - a(p). The edited activation is the REAL
a(p) plus the chosen steps. Greedy choices are nested, so one run of max(k) steps yields the
edits for every smaller k as its prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

KS = (1, 2, 4, 6, 8, 16, 32)


def greedy_edits(f_source: torch.Tensor, f_target: torch.Tensor, w_dec: torch.Tensor, true_delta: torch.Tensor, ks: Sequence[int] = KS) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Returns {k: edit delta (N, d)} and the chosen latent indices (N, max k), -1 where fewer
    than k latents differ between p and p' (the edit then simply stops growing).

    Vectorised over pairs: ||S + d_j - t||^2 = ||S - t||^2 + 2 df_j (W_dec[j] . (S - t)) +
    df_j^2 ||W_dec[j]||^2, so each step needs one (N, d) x (d, L) product, L the latents that
    differ on some pair.
    """
    # Only latents that differ on some pair can be chosen: restricting to them (a few hundred of
    # a wide SAE's thousands) shrinks every step's product without changing a choice.
    differing = torch.nonzero((f_target != f_source).any(dim=0)).flatten()
    edits, chosen = _greedy(f_source[:, differing], f_target[:, differing], w_dec[differing], true_delta, ks)
    if len(differing) == 0:
        return edits, chosen
    return edits, torch.where(chosen >= 0, differing[chosen.clamp_min(0)], chosen)


def _greedy(f_source: torch.Tensor, f_target: torch.Tensor, w_dec: torch.Tensor, true_delta: torch.Tensor, ks: Sequence[int]) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    delta_f = (f_target - f_source).to(w_dec.dtype)
    n = delta_f.shape[0]
    running = torch.zeros(n, w_dec.shape[1], dtype=w_dec.dtype)
    chosen = torch.full((n, max(ks)), -1, dtype=torch.long)
    if delta_f.shape[1] == 0:  # no latent differs on any pair: every edit is empty
        return {k: running.clone() for k in ks}, chosen
    norms = w_dec.pow(2).sum(dim=1)
    available = delta_f != 0
    edits: dict[int, torch.Tensor] = {}
    rows = torch.arange(n)
    for step in range(max(ks)):
        gap = running - true_delta.to(w_dec.dtype)
        score = 2 * delta_f * (gap @ w_dec.T) + delta_f.pow(2) * norms
        score = score.masked_fill(~available, float("inf"))
        best = score.argmin(dim=1)
        has = available[rows, best]
        running = running + torch.where(has[:, None], delta_f[rows, best, None] * w_dec[best], torch.zeros_like(running))
        chosen[:, step] = torch.where(has, best, torch.full_like(best, -1))
        available[rows[has], best[has]] = False
        if step + 1 in ks:
            edits[step + 1] = running.clone()
    return edits, chosen


def latent_weights(f: torch.Tensor, w_dec: torch.Tensor) -> torch.Tensor:
    """weight(j) = (f_j W_dec[j]) . x / ||x||^2 with x = f W_dec = a_hat - b_dec; rows sum to 1."""
    x = f @ w_dec
    return f * (w_dec @ x.T).T / x.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12)


def edit_magnitude(f_source: torch.Tensor, f_target: torch.Tensor, w_dec: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Per pair, the total weight (in p's reconstruction) of what the edit removes: a chosen
    latent that falls from f_j(p) to f_j(p') counts with its weight times the fraction removed."""
    weights = latent_weights(f_source, w_dec)
    removed_fraction = ((f_source - f_target) / f_source.where(f_source != 0, torch.ones_like(f_source))).clamp(0, 1)
    removed_fraction = removed_fraction.where(f_source > 0, torch.zeros_like(removed_fraction))
    mask = torch.zeros_like(f_source, dtype=torch.bool)
    valid = chosen >= 0
    mask[torch.arange(len(chosen))[:, None].expand_as(chosen)[valid], chosen[valid]] = True
    return (weights * removed_fraction * mask).sum(dim=1)


def supervised_edit_magnitude(code_removed: torch.Tensor, code_sum: torch.Tensor) -> torch.Tensor:
    """The same measure for the supervised edit: the weight of u_{i,v} in sum_i u_{i,v_i(p)}."""
    return (code_removed * code_sum).sum(dim=1) / code_sum.pow(2).sum(dim=1).clamp_min(1e-12)
