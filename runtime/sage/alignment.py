"""How well an SAE's decoder directions align with the supervised features (METHOD.md section 5).

For each supervised code u_{i,v}, the cosine similarity with its best-matching decoder row; and a
one-to-one (Hungarian) matching of codes to latents maximising total cosine, whose mean is the
analogue of SynthSAEBench's mean correlation coefficient. Cosines are signed: a decoder direction
pointing against a feature adds it with a negative activation, which a ReLU SAE cannot do.

A wide SAE's (n_codes, d_sae) cosine matrix is never held: the decoder is read in chunks of rows,
keeping each code's best few latents, and the matching runs over those candidates only. With n
codes, taking each code's top n latents loses nothing: if an optimal matching gives code i a
latent outside its top n, one of its top n is free (the other n - 1 codes hold at most n - 1),
and moving i there does not lower the total. So the candidate matching has the full one's value
(and the same matching when that is unique, as it is for cosines in general position).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

# Decoder rows screened at once (a chunk of d_sae): the chunk is a view, and what is made per chunk
# is its row norms and the (n_codes, rows) cosines.
ROWS_BUDGET = 1 << 16
# Each code keeps this many more float32-screened latents than it needs, reranked exactly in
# float64, so screening's rounding (about 1e-7 of a cosine) cannot drop a true best latent unless
# that many others lie within it.
SCREEN_MARGIN = 8


@dataclass(frozen=True)
class Alignment:
    best_cosine: torch.Tensor  # (n_codes,) best decoder cosine per code
    best_latent: torch.Tensor  # (n_codes,)
    matched_cosine: torch.Tensor  # (n_codes,) cosine under the one-to-one matching
    matched_latent: torch.Tensor  # (n_codes,)


def cosine_matrix(codes: torch.Tensor, w_dec: torch.Tensor) -> torch.Tensor:
    u = codes / codes.norm(dim=1, keepdim=True).clamp_min(1e-12)
    w = w_dec / w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return u.to(torch.float64) @ w.to(torch.float64).T


def candidates(codes: torch.Tensor, w_dec: torch.Tensor, per_code: int, *, absolute: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Each code's `per_code` best latents by cosine, (n_codes, per_code) latent indices and
    cosines in decreasing order. The decoder is screened a chunk of rows at a time in its own
    precision (a float64 copy of a 2^20-latent decoder would be gigabytes written per site): the
    codes' dot products with the rows over the rows' norms, no normalised copy made. The
    survivors are reranked by exact float64 cosines."""
    per_code = min(per_code, len(w_dec))
    keep = min(per_code + SCREEN_MARGIN, len(w_dec))
    u = codes / codes.norm(dim=1, keepdim=True).clamp_min(1e-12)
    u = u.to(w_dec.dtype if w_dec.dtype in (torch.float32, torch.float64) else torch.float32)
    step = max(keep, ROWS_BUDGET)
    best_cos = torch.empty(len(codes), 0, dtype=u.dtype)
    best_idx = torch.empty(len(codes), 0, dtype=torch.long)
    for start in range(0, len(w_dec), step):
        rows = w_dec[start : start + step].to(u.dtype)
        cos = (u @ rows.T) / rows.norm(dim=1).clamp_min(1e-12)
        cos = cos.abs() if absolute else cos
        merged_cos = torch.cat([best_cos, cos], dim=1)
        merged_idx = torch.cat([best_idx, torch.arange(start, start + cos.shape[1]).expand(len(codes), -1)], dim=1)
        # A partial selection (a full sort of every chunk costs seconds at 2^20 latents); which
        # of two exactly tied latents it keeps changes no cosine.
        top = torch.topk(merged_cos, min(keep, merged_cos.shape[1]), dim=1)
        best_cos, best_idx = top.values, merged_idx.gather(1, top.indices)
    exact = torch.stack([cosine_matrix(codes[i : i + 1], w_dec[best_idx[i]])[0] for i in range(len(codes))])
    exact = exact.abs() if absolute else exact
    top = torch.topk(exact, per_code, dim=1)
    return best_idx.gather(1, top.indices), top.values


def align(codes: torch.Tensor, w_dec: torch.Tensor, *, absolute: bool = False) -> Alignment:
    """`codes` (n_codes, d), `w_dec` (d_sae, d). Needs d_sae >= n_codes for a full matching.
    `absolute`: match on |cosine|, for a basis whose coordinates take either sign."""
    index, _ = candidates(codes, w_dec, len(codes), absolute=absolute)
    pool = torch.unique(index)  # ascending: ties in the matching go as over all latents
    cos = cosine_matrix(codes, w_dec[pool])
    cos = cos.abs() if absolute else cos
    best_cosine, best_at = cos.max(dim=1)
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    matched_latent = torch.full((len(codes),), -1, dtype=torch.long)
    matched_cosine = torch.full((len(codes),), float("nan"), dtype=torch.float64)
    matched_latent[torch.as_tensor(rows)] = pool[torch.as_tensor(cols)]
    matched_cosine[torch.as_tensor(rows)] = cos[torch.as_tensor(rows), torch.as_tensor(cols)]
    return Alignment(best_cosine, pool[best_at], matched_cosine, matched_latent)
