"""Trivial bases scored as SAEs, so every SAE number has a floor beside it (METHOD.md section 7).

A basis at one cross-section is an SAE-like object with orthonormal directions V (K rows of
width d) and the train-split mean: f = (a - mean) V^T, a_hat = mean + f V, W_dec = V. With all d
directions it is complete and reconstructs exactly, so what it is judged on is how few of its
directions an edit needs (control), whether one direction picks out a value (interpretability)
and how close its directions lie to the supervised codes (alignment).
- `neurons`: the activation's own coordinates (V = I);
- `pca`: the principal directions of the train activations, by decreasing variance; `pca K`
  keeps the first K (then it reconstructs only the top-K subspace);
- `random`: a random orthonormal basis (Haar: QR of a Gaussian matrix), seeded per
  cross-section from its name, so a run draws the same basis wherever the site was located.
A direction's sign is arbitrary in PCA and in a random basis; it is fixed so that the train
projections are skewed positive (a feature that fires rarely and strongly then lies above the
median, where interpretability looks for it). Coordinates are signed: a direction is active
where f_j exceeds its train-split median (runtime/sage/evaluate.SaeSite.median).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from runtime.sage.evaluate import SaeSite

RANDOM_SEED = 0  # with each cross-section's name, the seed of its random basis
COMPLETE = "a complete basis reconstructs exactly"  # why sufficiency and necessity are null


@dataclass(frozen=True)
class Basis:
    kind: str  # sagec.names.BASELINES
    mean: torch.Tensor  # (d,) train-split mean
    directions: torch.Tensor  # (K, d) orthonormal rows: the decoder
    median: torch.Tensor  # (K,) train-split median of each coordinate

    @property
    def complete(self) -> bool:
        return self.directions.shape[0] == self.directions.shape[1]

    def encode(self, a: torch.Tensor) -> torch.Tensor:
        return (a.to(self.mean.dtype) - self.mean) @ self.directions.T

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.mean + f @ self.directions

    def site(self, acts: torch.Tensor, twin_acts: Mapping[str, torch.Tensor]) -> SaeSite:
        """The basis at one site on the test prompts, as the SAE scoring code reads an SAE."""
        f = self.encode(acts)
        return SaeSite(a_hat=self.decode(f).to(acts.dtype), f=f, twin_f={a: self.encode(t) for a, t in twin_acts.items()}, w_dec=self.directions, median=self.median)


def fit(kind: str, train: torch.Tensor, *, components: int | None = None, site: str = "") -> Basis:
    """The basis `kind` fitted on the train activations (N, d) at `site` (its name seeds a
    random basis). `components` truncates PCA to its first K directions (at most d)."""
    a = train.detach().to(torch.float32)
    n, d = a.shape
    if n < 2:
        raise ValueError(f"site {site!r}: a basis needs at least two train prompts, got {n}")
    mean = a.mean(dim=0)
    centred = a - mean
    if kind == "neurons":
        directions = torch.eye(d)
    elif kind == "pca":
        # The covariance in float64: float32 would blur the order of its small eigenvalues.
        covariance = centred.double().T @ centred.double() / (n - 1)
        _, vectors = torch.linalg.eigh(covariance)  # ascending
        directions = vectors.flip(dims=(1,)).T.to(torch.float32)  # by decreasing variance
        directions = directions[: components or d]
    elif kind == "random":
        g = torch.Generator().manual_seed(RANDOM_SEED * 1_000_003 + zlib.crc32(site.encode("utf-8")))
        q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        directions = (q * torch.sign(torch.diagonal(r))).T.to(torch.float32)  # Haar-distributed rows
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    if kind != "neurons":
        directions = directions * _orientation(centred @ directions.T)[:, None]
    f = centred @ directions.T
    return Basis(kind, mean, directions.contiguous(), f.median(dim=0).values)


def _orientation(f: torch.Tensor) -> torch.Tensor:
    """+1 or -1 per direction: the sign that makes the coordinate's third moment positive (+1
    when it is zero)."""
    skew = (f.double() - f.double().mean(dim=0)).pow(3).mean(dim=0)
    return torch.where(skew < 0, -1.0, 1.0).to(f.dtype)
