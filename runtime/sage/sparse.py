"""SAE latents held sparse, from the encoder on (issue 14).

A wide SAE has up to 2^20 latents of which a few tens fire on a prompt, so the score pass never
holds (N, d_sae) latents: `encode` runs the SAE's own encoder on row chunks of bounded size (and,
for a wide SAE whose encoder treats latents apart, on blocks of latents) and keeps only the
nonzero latents of each prompt, and `decode` runs the SAE's own decoder on them
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
    dimensions of x are flattened into rows. A wide SAE whose encoder treats latents apart runs it
    a block of latents at a time (`latent_blocks`)."""
    width = width_of(sae)
    x = x.reshape(-1, x.shape[-1])
    blocks = latent_blocks(sae)
    with torch.no_grad():
        if blocks is not None:
            parts = [_encode_by_blocks(sae, x[rows], blocks) for rows in row_chunks(len(x), LATENT_BLOCK, BLOCK_ROWS * LATENT_BLOCK)]
        else:
            with _sparse_output(sae):
                parts = [_latents_of(sae.encode(x[rows])) for rows in row_chunks(len(x), width)]
    return Latents.cat(parts) if parts else Latents(torch.zeros(1, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0), width)


# sae_lens encoders in which each latent is a function of the input alone (an affine map, then
# ReLU, a threshold or a gate), or, for TopK, the k largest of those per row, which the k largest
# of each block's winners give: run on a block of latents, they give that block's latents.
SEPARABLE_ENCODERS = frozenset({"StandardSAE", "JumpReLUSAE", "GatedSAE", "TopKSAE", "Transcoder", "SkipTranscoder", "JumpReLUTranscoder", "JumpReLUSkipTranscoder"})
# From this width on such an encoder runs a block of LATENT_BLOCK latents at a time: the block's
# columns of W_enc are multiplied while they are in cache, no (rows, d_sae) pre-activation is
# written and read back (128 MB for 128 rows at 2^18 latents, two or three times over), and
# TopK's rescaling by decoder norms reads one block's rows: 0.32-0.34 s against 0.40 s for 128
# rows at 2^18 (SmolLM2's width, bench_wide's SAE). Narrower ones encode whole.
BLOCKED_FROM = 1 << 15
LATENT_BLOCK = 1 << 11
BLOCK_ROWS = 1 << 9  # rows a blocked encode takes at once: the input chunk is read per block


def latent_blocks(sae: Any) -> dict[str, int] | None:
    """For an encoder `encode` may run a block of latents at a time: each parameter with a
    latent dimension and that dimension's index. None where it encodes whole: a narrow SAE, an
    encoder not known to treat latents apart (matching pursuit, a subclass that may override
    `encode`), or a parameter whose latent dimension is ambiguous."""
    width = width_of(sae)
    if width < BLOCKED_FROM or type(sae).__name__ not in SEPARABLE_ENCODERS or not type(sae).__module__.startswith("sae_lens."):
        return None
    dims = {}
    for name, p in sae.named_parameters(recurse=False):
        hits = [i for i, n in enumerate(p.shape) if n == width]
        if len(hits) > 1:
            return None
        if hits:
            dims[name] = hits[0]
    return dims if "W_enc" in dims else None


@contextlib.contextmanager
def _latent_block(sae: Any, dims: dict[str, int], start: int, stop: int):
    """The SAE with its latent-indexed parameters narrowed to latents start..stop (views, no copy)."""
    full = {name: sae._parameters[name] for name in dims}
    try:
        for name, dim in dims.items():
            sae._parameters[name] = torch.nn.Parameter(full[name].narrow(dim, start, stop - start), requires_grad=False)
        yield
    finally:
        sae._parameters.update(full)


def _encode_by_blocks(sae: Any, x: torch.Tensor, dims: dict[str, int]) -> Latents:
    width, n = width_of(sae), len(x)
    k = int(sae.activation_fn.k) if type(sae).__name__ == "TopKSAE" else None
    starts = list(range(0, width, LATENT_BLOCK))
    if k is not None and len(starts) > 1 and width - starts[-1] < k:
        starts.pop()  # every block holds at least k latents
    entries = []  # (rows, latents, values) of each block's nonzero latents
    best_value, best_index = torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.long)
    for start, stop in zip(starts, [*starts[1:], width], strict=True):
        with _latent_block(sae, dims, start, stop), _sparse_output(sae):
            block = sae.encode(x)
        if k is None:  # dense (n, stop - start): one block is small
            r, j = torch.nonzero(block, as_tuple=True)
            entries.append((r, j + start, block[r, j]))
            continue
        # TopK's winners come out sparse, k a row (zeros where its ReLU cut them); the k largest
        # of the winners so far and this block's are the k largest so far.
        coo = block.coalesce()
        merged = torch.cat([best_value.to(coo.dtype), coo.values().view(n, k)], dim=1)
        merged_index = torch.cat([best_index, coo.indices()[1].view(n, k) + start], dim=1)
        top = torch.topk(merged, k, dim=1)
        best_value, best_index = top.values, merged_index.gather(1, top.indices)
    if k is not None:
        keep = best_value > 0
        entries = [(torch.arange(n)[:, None].expand_as(best_index)[keep], best_index[keep], best_value[keep])]
    rows, index, value = (torch.cat(column) for column in zip(*entries, strict=True))
    order = torch.argsort(rows * width + index)
    return Latents.from_rows(rows[order], index[order], value[order], n, width)


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
