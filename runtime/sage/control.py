"""Sparse control and edit magnitude (METHOD.md section 5, after Makelov et al.).

To move attribute i from v (prompt p) to v' (its twin p'), an SAE may change at most k latents.
Latent j offers the step d_j = (f_j(p') - f_j(p)) W_dec[j]; greedily, k times, we take the j that
brings the running sum closest to the true change a(p') - a(p). The edited activation is the REAL
a(p) plus the chosen steps. Greedy choices are nested, so one run of max(k) steps yields the
edits for every smaller k as its prefixes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from runtime.sage.sparse import Latents, as_latents
from runtime.sage.statistics import safe_ratio

KS = (1, 2, 4, 6, 8, 16, 32)


# Elements of the per-chunk (rows, candidates, d) gather of decoder rows: bounds the memory of a
# greedy pass whatever N, d and the SAE width.
GATHER_BUDGET = 1 << 24
# When the candidates of a pair are at least this share of all latents (a densely firing SAE),
# each step multiplies the taken rows by the whole decoder in one matrix product, for every pair
# of a chunk at once, instead of gathering each pair's candidate rows: the same O(k C d)
# arithmetic, but as a GEMM rather than memory-bound batched products (minutes less per site).
DENSE_SHARE = 0.25


def greedy_edits(f_source: Latents | torch.Tensor, f_target: Latents | torch.Tensor, w_dec: torch.Tensor, true_delta: torch.Tensor, ks: Sequence[int] = KS) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Returns {k: edit delta (N, d)} and the chosen latent indices (N, max k), -1 where fewer
    than k latents differ between p and p' (the edit then simply stops growing).

    ||S + d_j - t||^2 = ||S - t||^2 + 2 df_j (W_dec[j] . (S - t)) + df_j^2 ||W_dec[j]||^2, and
    only the latents where p and p' differ (a few times L0 of the SAE's thousands, about half of
    them for a densely firing SAE) can be chosen: each pair's candidates are laid out in a padded
    (N, C) table, C the most any pair has, read off the sparse difference of the two latent
    sets. Ties go to the lowest latent index.
    """
    f_source, f_target = as_latents(f_source), as_latents(f_target)
    n, d = f_source.n, w_dec.shape[1]
    change = f_target.minus(f_source)  # entries in (row, latent) order
    row_of, latent = change.row_of(), change.index
    counts = change.crow.diff()
    width = int(counts.max()) if n else 0
    slot = torch.arange(len(row_of)) - change.crow[:-1][row_of]
    candidates = torch.zeros(n, width, dtype=torch.long)
    available = torch.zeros(n, width, dtype=torch.bool)
    df = torch.zeros(n, width, dtype=w_dec.dtype)
    candidates[row_of, slot] = latent
    available[row_of, slot] = True
    df[row_of, slot] = change.value.to(w_dec.dtype)
    full = width >= DENSE_SHARE * len(w_dec)
    rows = max(1, GATHER_BUDGET // max(1, len(w_dec) if full else width * d))
    parts = [_greedy_rows(candidates[i : i + rows], available[i : i + rows], df[i : i + rows], w_dec, true_delta[i : i + rows], ks, full=full) for i in range(0, n, rows)]
    if not parts:
        return {k: torch.zeros(0, d, dtype=w_dec.dtype) for k in ks}, torch.zeros(0, max(ks), dtype=torch.long)
    return {k: torch.cat([e[k] for e, _ in parts]) for k in ks}, torch.cat([c for _, c in parts])


def _greedy_rows(candidates: torch.Tensor, available: torch.Tensor, df: torch.Tensor, w_dec: torch.Tensor, true_delta: torch.Tensor, ks: Sequence[int], *, full: bool = False) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    n, width = candidates.shape
    available = available.clone()
    if full:  # `DENSE_SHARE`: products with the whole decoder, read off at the candidates
        norms = w_dec.pow(2).sum(dim=1)[candidates]

        def with_rows(x: torch.Tensor) -> torch.Tensor:  # (n, d) -> each candidate's W_dec[j] . x_p, (n, C)
            return (x.to(w_dec.dtype) @ w_dec.T).gather(1, candidates)
    else:
        rows_w = w_dec[candidates]  # (n, C, d)
        norms = rows_w.pow(2).sum(dim=2)

        def with_rows(x: torch.Tensor) -> torch.Tensor:
            return torch.bmm(rows_w, x.to(w_dec.dtype)[:, :, None])[:, :, 0]

    # With S the running edit, W_dec[j] . (S - t) starts at -W_dec[j] . t and moves by
    # df_b (W_dec[j] . W_dec[b]) when b is taken: one product of the candidates' rows with the
    # row taken per step, O(C d) per pair, so max(k) steps cost O(k C d) (a C x C Gram block up
    # front would be O(C^2 d): hours for the ~12,000 candidates of a densely firing SAE).
    dots = -with_rows(true_delta)
    running = torch.zeros(n, w_dec.shape[1], dtype=w_dec.dtype)
    chosen = torch.full((n, max(ks)), -1, dtype=torch.long)
    edits: dict[int, torch.Tensor] = {}
    rows = torch.arange(n)
    for step in range(max(ks)):
        if width > 0:
            score = (2 * df * dots + df.pow(2) * norms).masked_fill(~available, float("inf"))
            best = score.argmin(dim=1)
            has = available[rows, best]
            coef = torch.where(has, df[rows, best], torch.zeros_like(df[:, 0]))
            taken = w_dec[candidates[rows, best]]  # (n, d)
            running = running + coef[:, None] * taken
            dots = dots + coef[:, None] * with_rows(taken)
            chosen[:, step] = torch.where(has, candidates[rows, best], torch.full_like(best, -1))
            available[rows[has], best[has]] = False
        if step + 1 in ks:
            edits[step + 1] = running.clone()
    return edits, chosen


def latent_weights(f: torch.Tensor, w_dec: torch.Tensor) -> torch.Tensor:
    """weight(j) = (f_j W_dec[j]) . x / ||x||^2 with x = f W_dec = a_hat - b_dec; rows sum to 1."""
    x = f @ w_dec
    return f * (w_dec @ x.T).T / x.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12)


def edit_magnitude(f_source: Latents | torch.Tensor, f_target: Latents | torch.Tensor, w_dec: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Per pair, the total weight (in p's reconstruction) of what the edit removes: a chosen
    latent that falls from f_j(p) to f_j(p') counts with its weight times the fraction removed.
    NaN where p's reconstruction is empty (x = 0): there is nothing to weigh against."""
    return removed_weights(f_source, f_target, w_dec, chosen).sum(dim=1)


def removed_weights(f_source: Latents | torch.Tensor, f_target: Latents | torch.Tensor, w_dec: torch.Tensor, chosen: torch.Tensor, x: torch.Tensor | None = None, *, signed: bool = False) -> torch.Tensor:
    """Each chosen latent's share of `edit_magnitude`, (N, steps): its cumulative sum over steps
    gives the magnitude for every k at once. NaN rows where p's reconstruction is empty.
    `signed`: the coordinates of a basis, where moving a negative f_j toward zero removes too.

    Only the chosen latents' weights are needed, so each is one gathered dot product with
    x = f W_dec = a_hat - b_dec: O(N k d), not O(N L d) for a wide SAE. Pass x (`decode`) when
    scoring several edits of the same prompts."""
    f_source, f_target = as_latents(f_source), as_latents(f_target)
    x = decode(f_source, w_dec) if x is None else x
    j = chosen.clamp_min(0)
    fs, ft = f_source.lookup(j).to(w_dec.dtype), f_target.lookup(j).to(w_dec.dtype)
    energy = x.pow(2).sum(dim=1, keepdim=True)
    weights = fs * torch.bmm(w_dec[j], x[:, :, None])[:, :, 0] / energy.where(energy > 0, torch.ones_like(energy))
    removed = ((fs - ft) / fs.where(fs != 0, torch.ones_like(fs))).clamp(0, 1).where(fs != 0 if signed else fs > 0, torch.zeros_like(fs))
    share = weights * removed * (chosen >= 0)
    return share.where(energy > 0, torch.full_like(share, math.nan))


def decode(f: Latents | torch.Tensor, w_dec: torch.Tensor) -> torch.Tensor:
    """f W_dec without the bias, through the nonzero latents only (an SAE's f is sparse)."""
    return as_latents(f).decode(w_dec)


def supervised_edit_magnitude(code_removed: torch.Tensor, code_sum: torch.Tensor) -> torch.Tensor:
    """The same measure for the supervised edit: the weight of u_{i,v} in sum_i u_{i,v_i(p)};
    NaN where that sum is zero."""
    return safe_ratio((code_removed * code_sum).sum(dim=1), code_sum.pow(2).sum(dim=1))
