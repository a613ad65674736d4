"""Applying an SAE at a cross-section it was not necessarily trained on (METHOD.md section 4).

Each function returns the reconstruction c_hat of the cross-section's activation c and the latent
vector that produced it (the one sparse control edits with), so every variant feeds the same
scoring code. `sae` is anything with `encode`, `decode` and `W_dec` (sae_lens SAEs are): its own
encoder and decoder run, a chunk of prompts at a time, and the latents come back sparse
(runtime/sage/sparse.py), so nothing here holds (N, d_sae).
"""

from __future__ import annotations

from typing import Protocol

import torch

from runtime.sage import sparse
from runtime.sage.sparse import Latents


class SaeLike(Protocol):
    W_dec: torch.Tensor

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode(self, f: torch.Tensor) -> torch.Tensor: ...


def direct(sae: SaeLike, c: torch.Tensor) -> tuple[torch.Tensor, Latents]:
    """An SAE trained on this very hook: c_hat = D(E(c))."""
    f = sparse.encode(sae, c)
    return _shaped(sparse.decode(sae, f), c), f


def transcode(transcoder: SaeLike, x: torch.Tensor) -> tuple[torch.Tensor, Latents]:
    """A transcoder (METHOD.md section 10): c_hat = D(E(x)) with x the sublayer's input, plus the
    skip connection x @ W_skip^T of a skip transcoder (sae_lens's `decode` leaves it out)."""
    f = sparse.encode(transcoder, x)
    c_hat = _shaped(sparse.decode(transcoder, f), x)
    skip = getattr(transcoder, "W_skip", None)
    return (c_hat if skip is None else c_hat + x.to(skip.dtype) @ skip.T), f


def residual(sae: SaeLike, r_after: torch.Tensor, c: torch.Tensor, *, after: tuple[torch.Tensor, Latents] | None = None) -> tuple[torch.Tensor, Latents]:
    """The SAGE idea, our formulation: a sublayer output c was added into the residual stream
    (r_after = r_before + c), so the features it contributes are E(r_after) - E(r_after - c) and
    its reconstruction D(E(r_after)) - D(E(r_after - c)); the decoder bias cancels.

    `after`: (D(E(r_after)), E(r_after)) when already computed (`encoded`): every sublayer
    written at one point shares the stream there."""
    decoded_after, f_after = after if after is not None else encoded(sae, r_after)
    f_without = sparse.encode(sae, r_after - c)
    return decoded_after - _shaped(sparse.decode(sae, f_without), c), f_after.minus(f_without)


def encoded(sae: SaeLike, x: torch.Tensor) -> tuple[torch.Tensor, Latents]:
    """(D(E(x)), E(x))."""
    f = sparse.encode(sae, x)
    return _shaped(sparse.decode(sae, f), x), f


def _shaped(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A decoder's (rows, d) output with `like`'s leading dimensions: inputs of any leading shape
    are encoded as rows (the latents are (rows, d_sae))."""
    return out.reshape(*like.shape[:-1], out.shape[-1])


def residual_pair(sae_before: SaeLike, sae_after: SaeLike, r_before: torch.Tensor, r_after: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, Latents]:
    """SAEs on both sides of the sublayer: c_hat = S_after(r_after) - S_before(r_before).

    That is METHOD.md's formula when the two points bracket exactly this sublayer (r_after -
    r_before = c). Where they bracket more (the SAEs sit at resid_pre L and resid_post L and c is
    one head or the MLP of layer L), everything else written in between is taken from the model
    exactly: c_hat = c + (S_after(r_after) - r_after) - (S_before(r_before) - r_before), which is
    the same number in the exact case and the only reading that reconstructs c alone otherwise.

    The latents are both SAEs' side by side, the after side's first; `pair_decoder` gives their
    decoder rows (the before side's negated), so sum_j f_j w_j = (S_after(r_after) - b_after) -
    (S_before(r_before) - b_before), and sparse control can edit with either SAE's latents."""
    f_after, f_before = sparse.encode(sae_after, r_after), sparse.encode(sae_before, r_before)
    error_after = _shaped(sparse.decode(sae_after, f_after), r_after) - r_after
    error_before = _shaped(sparse.decode(sae_before, f_before), r_before) - r_before
    return c + error_after - error_before, f_after.beside(f_before)


def pair_decoder(sae_before: SaeLike, sae_after: SaeLike) -> torch.Tensor:
    """The decoder rows of `residual_pair`'s latents: the after SAE's, then the before SAE's negated."""
    return torch.cat([sae_after.W_dec, -sae_before.W_dec.to(sae_after.W_dec.dtype)], dim=0)


def decoder_scale(sae: SaeLike) -> torch.Tensor | None:
    """What `decode` multiplies each latent by before W_dec, when not 1: 1 / ||W_dec[j]|| for a
    sae_lens SAE with `rescale_acts_by_decoder_norm` (its encoder scales by the norm instead).
    Scoring reads latents in the units of the decoder rows (f_j W_dec[j] is latent j's part of
    the reconstruction, as sparse control and edit magnitude take it), so they are scaled by
    this: a (d_sae,) vector, never a rescaled copy of the decoder."""
    cfg = getattr(sae, "cfg", None)
    if not getattr(cfg, "rescale_acts_by_decoder_norm", False):
        return None
    with torch.no_grad():
        return 1 / sae.W_dec.norm(dim=-1)


def latent_scale(sae: SaeLike, before: SaeLike | None = None) -> torch.Tensor | None:
    """`decoder_scale` for the latents a variant returns: `sae`'s, or residual_pair's after SAE
    (`sae`) and then its `before` SAE side by side; None when no latent needs scaling."""
    own = decoder_scale(sae)
    if before is None:
        return own
    other = decoder_scale(before)
    if own is None and other is None:
        return None
    ones = [torch.ones(int(x.W_dec.shape[0])) for x in (sae, before)]
    return torch.cat([own if own is not None else ones[0], other if other is not None else ones[1]])


def explained_variance(a: torch.Tensor, a_hat: torch.Tensor) -> float:
    """1 - sum ||a - a_hat||^2 / sum ||a - mean a||^2 over prompts."""
    residual_energy = (a - a_hat).pow(2).sum()
    total = (a - a.mean(dim=0, keepdim=True)).pow(2).sum()
    return float(1 - residual_energy / total) if total > 0 else float("nan")
