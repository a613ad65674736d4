"""How well an SAE's decoder directions align with the supervised features (METHOD.md section 5).

For each supervised code u_{i,v}, the cosine similarity with its best-matching decoder row; and a
one-to-one (Hungarian) matching of codes to latents maximising total cosine, whose mean is the
analogue of SynthSAEBench's mean correlation coefficient. Cosines are signed: a decoder direction
pointing against a feature adds it with a negative activation, which a ReLU SAE cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment


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


def align(codes: torch.Tensor, w_dec: torch.Tensor, *, absolute: bool = False) -> Alignment:
    """`codes` (n_codes, d), `w_dec` (d_sae, d). Needs d_sae >= n_codes for a full matching.
    `absolute`: match on |cosine|, for a basis whose coordinates take either sign."""
    cos = cosine_matrix(codes, w_dec)
    cos = cos.abs() if absolute else cos
    best_cosine, best_latent = cos.max(dim=1)
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    matched_latent = torch.full((len(codes),), -1, dtype=torch.long)
    matched_cosine = torch.full((len(codes),), float("nan"), dtype=torch.float64)
    matched_latent[torch.as_tensor(rows)] = torch.as_tensor(cols)
    matched_cosine[torch.as_tensor(rows)] = cos[torch.as_tensor(rows), torch.as_tensor(cols)]
    return Alignment(best_cosine, best_latent, matched_cosine, matched_latent)
