"""Applying an SAE at a cross-section it was not necessarily trained on (METHOD.md section 4).

Each function returns the reconstruction c_hat of the cross-section's activation c and the latent
vector that produced it (the one sparse control edits with), so every variant feeds the same
scoring code. `sae` is anything with `encode`, `decode` and `W_dec` (sae_lens SAEs are).
"""

from __future__ import annotations

from typing import Protocol

import torch


class SaeLike(Protocol):
    W_dec: torch.Tensor

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, f: torch.Tensor) -> torch.Tensor: ...


def direct(sae: SaeLike, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An SAE trained on this very hook: c_hat = D(E(c))."""
    f = sae.encode(c)
    return sae.decode(f), f


def transcode(transcoder: SaeLike, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A transcoder (METHOD.md section 10): c_hat = D(E(x)) with x the sublayer's input, plus the
    skip connection x @ W_skip^T of a skip transcoder (sae_lens's `decode` leaves it out)."""
    f = transcoder.encode(x)
    c_hat = transcoder.decode(f)
    skip = getattr(transcoder, "W_skip", None)
    return (c_hat if skip is None else c_hat + x.to(skip.dtype) @ skip.T), f


def residual(sae: SaeLike, r_after: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The SAGE idea, our formulation: a sublayer output c was added into the residual stream
    (r_after = r_before + c), so the features it contributes are E(r_after) - E(r_after - c) and
    its reconstruction D(E(r_after)) - D(E(r_after - c)); the decoder bias cancels."""
    f_after, f_without = sae.encode(r_after), sae.encode(r_after - c)
    return sae.decode(f_after) - sae.decode(f_without), f_after - f_without


def residual_pair(sae_before: SaeLike, sae_after: SaeLike, r_before: torch.Tensor, r_after: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAEs on both sides of the sublayer: c_hat = S_after(r_after) - S_before(r_before).

    That is METHOD.md's formula when the two points bracket exactly this sublayer (r_after -
    r_before = c). Where they bracket more (the SAEs sit at resid_pre L and resid_post L and c is
    one head or the MLP of layer L), everything else written in between is taken from the model
    exactly: c_hat = c + (S_after(r_after) - r_after) - (S_before(r_before) - r_before), which is
    the same number in the exact case and the only reading that reconstructs c alone otherwise.

    The latents are both SAEs' side by side, the after side's first; `pair_decoder` gives their
    decoder rows (the before side's negated), so sum_j f_j w_j = (S_after(r_after) - b_after) -
    (S_before(r_before) - b_before), and sparse control can edit with either SAE's latents."""
    f_after, f_before = sae_after.encode(r_after), sae_before.encode(r_before)
    error_after = sae_after.decode(f_after) - r_after
    error_before = sae_before.decode(f_before) - r_before
    return c + error_after - error_before, torch.cat([f_after, f_before], dim=-1)


def pair_decoder(sae_before: SaeLike, sae_after: SaeLike) -> torch.Tensor:
    """The decoder rows of `residual_pair`'s latents: the after SAE's, then the before SAE's negated."""
    return torch.cat([sae_after.W_dec, -sae_before.W_dec.to(sae_after.W_dec.dtype)], dim=0)


def explained_variance(a: torch.Tensor, a_hat: torch.Tensor) -> float:
    """1 - sum ||a - a_hat||^2 / sum ||a - mean a||^2 over prompts."""
    residual_energy = (a - a_hat).pow(2).sum()
    total = (a - a.mean(dim=0, keepdim=True)).pow(2).sum()
    return float(1 - residual_energy / total) if total > 0 else float("nan")
