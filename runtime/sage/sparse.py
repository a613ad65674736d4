"""SAE latents held sparse, from the encoder on (issue 14).

A wide SAE has up to 2^20 latents of which a few tens fire on a prompt, so the score pass never
holds (N, d_sae) latents: `encode` runs the SAE's own encoder on row chunks of bounded size and
keeps only the nonzero latents of each prompt, and `decode` runs the SAE's own decoder on them
as a torch sparse tensor (sae_lens decoders take one; anything else gets its chunk dense). The
memory of scoring is then the SAE's weights plus O(N x L0) per site and twin group.

`Latents` is that sparse (N, width) matrix by rows (CSR: row starts, latent indices ascending
within a row, values). Every consumer (control, edit magnitude, interpretability, alignment, L0)
reads it; a dense tensor (a test's hand-made latents, a basis baseline's d coordinates) is
turned into one by `as_latents`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# Elements of one dense (rows, d_sae) chunk the encoder produces before it is made sparse: 128 MB
# in float32, whatever the SAE's width (an encoder makes two or three of them at once). Not
# smaller: some encoders read the whole decoder per call (sae_lens's TopK with
# rescale_acts_by_decoder_norm takes W_dec's row norms), a cost per chunk.
ENCODE_BUDGET = 1 << 25


@dataclass(frozen=True)
class Latents:
    """An (n, width) matrix of latents, by rows: row r's entries are index[crow[r]:crow[r+1]]
    (ascending) with their values. Stored entries may include zeros only where `from_dense` was
    asked to keep every coordinate (a basis, whose coordinates are signed and thresholded)."""

    crow: torch.Tensor  # (n + 1,) int64
    index: torch.Tensor  # (nnz,) int64
    value: torch.Tensor  # (nnz,)
    width: int

    @property
    def n(self) -> int:
        return len(self.crow) - 1

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.width)

    @property
    def dtype(self) -> torch.dtype:
        return self.value.dtype

    @property
    def nnz(self) -> int:
        return len(self.index)

    @staticmethod
    def from_dense(dense: torch.Tensor, *, keep_zeros: bool = False) -> Latents:
        dense = dense.detach()
        if dense.ndim != 2:
            raise ValueError(f"latents must be (prompts, latents), got shape {tuple(dense.shape)}")
        n, width = dense.shape
        if keep_zeros:
            rows = torch.arange(n).repeat_interleave(width)
            index = torch.arange(width).repeat(n)
            return Latents(_crow(rows, n), index, dense.reshape(-1).clone(), width)
        rows, index = torch.nonzero(dense, as_tuple=True)  # row-major: ascending within a row
        return Latents(_crow(rows, n), index, dense[rows, index], width)

    @staticmethod
    def from_rows(rows: torch.Tensor, index: torch.Tensor, value: torch.Tensor, n: int, width: int) -> Latents:
        """From entries sorted by (row, index)."""
        return Latents(_crow(rows, n), index, value, width)

    @staticmethod
    def cat(parts: Sequence[Latents]) -> Latents:
        """The rows of `parts`, one after another."""
        if not parts:
            raise ValueError("no latents to concatenate")
        width = parts[0].width
        if any(p.width != width for p in parts):
            raise ValueError(f"latents of widths {sorted({p.width for p in parts})} cannot be stacked")
        starts, offset = [parts[0].crow[:1]], 0
        for p in parts:
            starts.append(p.crow[1:] + offset)
            offset += p.nnz
        return Latents(torch.cat(starts), torch.cat([p.index for p in parts]), torch.cat([p.value for p in parts]), width)

    def beside(self, other: Latents) -> Latents:
        """[self, other] side by side: other's latents follow self's (residual_pair's after and
        before SAEs)."""
        if other.n != self.n:
            raise ValueError(f"latents of {self.n} and {other.n} prompts cannot sit side by side")
        rows = torch.cat([self.row_of(), other.row_of()])
        index = torch.cat([self.index, other.index + self.width])
        value = torch.cat([self.value, other.value.to(self.dtype)])
        order = torch.argsort(rows * (self.width + other.width) + index)
        return Latents.from_rows(rows[order], index[order], value[order], self.n, self.width + other.width)

    def row_of(self) -> torch.Tensor:
        """The row of each stored entry."""
        return torch.repeat_interleave(torch.arange(self.n), self.crow.diff())

    def keys(self) -> torch.Tensor:
        """row * width + index per entry: ascending, so entries are found by binary search."""
        return self.row_of() * self.width + self.index

    def nonzero_per_row(self) -> torch.Tensor:
        """L0 of every prompt, (n,)."""
        return torch.zeros(self.n, dtype=torch.long).index_add_(0, self.row_of(), (self.value != 0).long())

    def ever_nonzero(self) -> torch.Tensor:
        """(width,) bool: latents nonzero on some prompt."""
        out = torch.zeros(self.width, dtype=torch.bool)
        out[self.index[self.value != 0]] = True
        return out

    def where(self, keep: torch.Tensor) -> Latents:
        """The stored entries where `keep` (one bool per entry)."""
        return Latents.from_rows(self.row_of()[keep], self.index[keep], self.value[keep], self.n, self.width)

    def rows(self, start: int, stop: int) -> Latents:
        stop = min(stop, self.n)
        a, b = int(self.crow[start]), int(self.crow[stop])
        return Latents(self.crow[start : stop + 1] - a, self.index[a:b], self.value[a:b], self.width)

    def scaled(self, per_latent: torch.Tensor) -> Latents:
        """Each latent's values times its factor, (width,)."""
        return Latents(self.crow, self.index, self.value * per_latent.to(self.dtype)[self.index], self.width)

    def to(self, dtype: torch.dtype) -> Latents:
        return Latents(self.crow, self.index, self.value.to(dtype), self.width)

    def torch_sparse(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A coalesced torch sparse COO tensor."""
        value = self.value if dtype is None else self.value.to(dtype)
        return torch.sparse_coo_tensor(torch.stack([self.row_of(), self.index]), value, self.shape, is_coalesced=True, check_invariants=False)

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=self.dtype)
        out[self.row_of(), self.index] = self.value
        return out

    def minus(self, other: Latents) -> Latents:
        """self - other with exact zeros dropped (a latent equal on both sides is no change)."""
        if self.shape != other.shape:
            raise ValueError(f"latents of shapes {self.shape} and {other.shape} cannot be subtracted")
        dtype = torch.promote_types(self.dtype, other.dtype)
        keys = torch.cat([self.keys(), other.keys()])
        values = torch.cat([self.value.to(dtype), -other.value.to(dtype)])
        unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        # a + (-b) is a - b exactly in IEEE arithmetic, so this is the dense difference's value.
        summed = torch.zeros(len(unique), dtype=dtype).index_add_(0, inverse, values)
        keep = summed != 0
        unique, summed = unique[keep], summed[keep]
        return Latents.from_rows(unique // self.width, unique % self.width, summed, self.n, self.width)

    def lookup(self, j: torch.Tensor) -> torch.Tensor:
        """(n, k) values at latents j (n, k); 0 where not stored or j < 0."""
        if self.nnz == 0:
            return torch.zeros(j.shape, dtype=self.dtype)
        keys = self.keys()
        query = torch.arange(self.n)[:, None] * self.width + j.clamp_min(0)
        pos = torch.searchsorted(keys, query).clamp_max(self.nnz - 1)
        found = (keys[pos] == query) & (j >= 0)
        return torch.where(found, self.value[pos], torch.zeros((), dtype=self.dtype))

    def decode(self, w_dec: torch.Tensor) -> torch.Tensor:
        """f W_dec without any bias, through the stored rows only: (n, d)."""
        if w_dec.dtype in (torch.float32, torch.float64):
            return torch.sparse.mm(self.torch_sparse(w_dec.dtype), w_dec)
        # torch's sparse products take no half precision: accumulate gathered rows in float32.
        out = torch.zeros(self.n, w_dec.shape[1], dtype=torch.float32)
        rows, step = self.row_of(), max(1, ENCODE_BUDGET // max(1, w_dec.shape[1]))
        for i in range(0, self.nnz, step):
            out.index_add_(0, rows[i : i + step], self.value[i : i + step, None].float() * w_dec[self.index[i : i + step]].float())
        return out


def as_latents(f: Latents | torch.Tensor, *, keep_zeros: bool = False) -> Latents:
    return f if isinstance(f, Latents) else Latents.from_dense(f, keep_zeros=keep_zeros)


def _crow(rows: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(rows, minlength=n).cumsum(dim=0)])


def row_chunks(n: int, width: int, budget: int = ENCODE_BUDGET) -> Iterator[slice]:
    """Row slices of at most `budget` elements of an (n, width) matrix (at least one row each)."""
    step = max(1, budget // max(1, width))
    for i in range(0, n, step):
        yield slice(i, min(n, i + step))


def width_of(sae: Any) -> int:
    return int(sae.W_dec.shape[0])


def encode(sae: Any, x: torch.Tensor) -> Latents:
    """The SAE's own `encode`, a chunk of prompts at a time, keeping only nonzero latents. Leading
    dimensions of x are flattened into rows."""
    width = width_of(sae)
    x = x.reshape(-1, x.shape[-1])
    with torch.no_grad(), _sparse_output(sae):
        parts = [_latents_of(sae.encode(x[rows])) for rows in row_chunks(len(x), width)]
    return Latents.cat(parts) if parts else Latents(torch.zeros(1, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0), width)


@contextlib.contextmanager
def _sparse_output(sae: Any):
    """sae_lens's TopK activation can return its k winners as a sparse tensor instead of
    scattering them into dense zeros (`use_sparse_activations`); asked to while encoding here,
    it spares a wide SAE's chunk two passes over (rows, d_sae) memory. Other encoders are left
    as they are."""
    activation = getattr(sae, "activation_fn", None)
    if getattr(activation, "use_sparse_activations", None) is not False:
        yield
        return
    activation.use_sparse_activations = True
    try:
        yield
    finally:
        activation.use_sparse_activations = False


def _latents_of(encoded: torch.Tensor) -> Latents:
    if not encoded.is_sparse:
        return Latents.from_dense(encoded)
    coo = encoded.coalesce()  # indices sorted by (row, latent)
    rows, index = coo.indices()
    value = coo.values()
    nonzero = value != 0  # a winner the ReLU zeroed is not active
    return Latents.from_rows(rows[nonzero], index[nonzero], value[nonzero], encoded.shape[0], encoded.shape[1])


def decode(sae: Any, f: Latents) -> torch.Tensor:
    """The SAE's own `decode` of the latents: given them as a torch sparse tensor (sae_lens's
    decoders multiply it by W_dec through the nonzero rows only), or dense a chunk at a time
    where a decoder cannot take one."""
    with torch.no_grad():
        dtype = sae.W_dec.dtype
        try:
            return sae.decode(f.torch_sparse(dtype))
        except (RuntimeError, TypeError, NotImplementedError):
            return torch.cat([sae.decode(f.rows(r.start, r.stop).to_dense().to(dtype)) for r in row_chunks(f.n, f.width)])
