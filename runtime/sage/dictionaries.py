"""Supervised feature dictionaries (METHOD.md section 3), fitted from streamed activations.

A dictionary at one cross-section is a bias u_0 and one code u_{i,v} per attribute i and value v;
it reconstructs a(p) as u_0 + sum_i u_{i, v_i(p)}. Both fitting methods consume activations in
batches and keep only fixed-size sums, so memory does not grow with the prompt count.

- mean codes (Makelov et al.): u_0 = mean a; u_{i,v} = mean{a(p) : v_i(p) = v} - u_0.
- least-squares codes: min ||C U - A||^2 over the one-hot design C (all (i, v) plus a bias
  column). C is rank-deficient (each attribute's block sums to the bias column), so we take the
  minimum-norm solution, pinv(C) A = pinv(C^T C) C^T A: the Gram matrix C^T C and C^T A are the
  streamed sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

Value = str | int


@dataclass(frozen=True)
class Dictionary:
    """Codes for one cross-section: `codes[i][v]` is u_{i,v}; every vector has the width d."""

    bias: torch.Tensor  # u_0, shape (d,)
    codes: Mapping[str, Mapping[Value, torch.Tensor]]

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.codes)

    def code_sum(self, assignments: Sequence[Mapping[str, Value]], only: Sequence[str] | None = None) -> torch.Tensor:
        """sum_i u_{i, v_i(p)} for each prompt, shape (N, d); `only` restricts the attributes."""
        names = self.attributes if only is None else tuple(only)
        out = torch.zeros(len(assignments), self.bias.shape[0], dtype=self.bias.dtype)
        for row, assignment in enumerate(assignments):
            for name in names:
                out[row] += self.codes[name][assignment[name]]
        return out

    def reconstruct(self, assignments: Sequence[Mapping[str, Value]]) -> torch.Tensor:
        """a_hat(p) = u_0 + sum_i u_{i, v_i(p)}, shape (N, d)."""
        return self.bias + self.code_sum(assignments)

    def edit(self, activations: torch.Tensor, attribute: str, old: Sequence[Value], new: Sequence[Value]) -> torch.Tensor:
        """The supervised control edit a <- a - u_{i,v} + u_{i,v'}, one (v, v') per row."""
        codes = self.codes[attribute]
        delta = torch.stack([codes[b] - codes[a] for a, b in zip(old, new, strict=True)])
        return activations + delta.to(activations.dtype)


class _Index:
    """The fixed column order of the one-hot design: attribute values as first seen, sorted."""

    def __init__(self, values: Mapping[str, Sequence[Value]]):
        self.columns: list[tuple[str, Value]] = [(a, v) for a, vs in values.items() for v in vs]
        self.position = {key: col for col, key in enumerate(self.columns)}

    def one_hot(self, assignments: Sequence[Mapping[str, Value]], attributes: Sequence[str]) -> torch.Tensor:
        c = torch.zeros(len(assignments), len(self.columns) + 1, dtype=torch.float64)
        c[:, -1] = 1.0  # the bias column
        for row, assignment in enumerate(assignments):
            for name in attributes:
                c[row, self.position[(name, assignment[name])]] = 1.0
        return c


class DictionaryFitter:
    """Streams (activations, assignments) batches, then `fit(method)` returns a Dictionary.

    `values` lists, per attribute, the values codes exist for (those seen in train); a batch row
    carrying any other value is an error, since no code could be fitted for it.
    """

    def __init__(self, values: Mapping[str, Sequence[Value]], width: int):
        self.attributes = tuple(values)
        self.index = _Index(values)
        k = len(self.index.columns) + 1
        # float64 sums: the Gram solve and mean differences lose precision in float32 on long runs.
        self.gram = torch.zeros(k, k, dtype=torch.float64)
        self.cross = torch.zeros(k, width, dtype=torch.float64)

    def update(self, activations: torch.Tensor, assignments: Sequence[Mapping[str, Value]]) -> None:
        if activations.shape[0] != len(assignments):
            raise ValueError(f"{activations.shape[0]} activation rows but {len(assignments)} assignments")
        for assignment in assignments:
            for name in self.attributes:
                if (name, assignment[name]) not in self.index.position:
                    raise ValueError(f"value {assignment[name]!r} of attribute {name!r} has no code (not in the fitted values)")
        c = self.index.one_hot(assignments, self.attributes)
        self.gram += c.T @ c
        self.cross += c.T @ activations.to(torch.float64)

    @property
    def count(self) -> int:
        return int(self.gram[-1, -1].item())

    def fit(self, method: str, dtype: torch.dtype = torch.float32) -> Dictionary:
        if self.count == 0:
            raise ValueError("no activations were streamed into the dictionary fit")
        if method == "mean":
            return self._mean_codes(dtype)
        if method == "lstsq":
            return self._least_squares_codes(dtype)
        raise ValueError(f"unknown dictionary method {method!r}")

    def _mean_codes(self, dtype: torch.dtype) -> Dictionary:
        # The Gram diagonal holds the per-value counts, the cross rows the per-value sums.
        u0 = self.cross[-1] / self.count
        codes: dict[str, dict[Value, torch.Tensor]] = {a: {} for a in self.attributes}
        for col, (name, value) in enumerate(self.index.columns):
            n = self.gram[col, col]
            if n == 0:
                raise ValueError(f"value {value!r} of attribute {name!r} never occurs in the fitting prompts")
            codes[name][value] = (self.cross[col] / n - u0).to(dtype)
        return Dictionary(u0.to(dtype), codes)

    def _least_squares_codes(self, dtype: torch.dtype) -> Dictionary:
        u = torch.linalg.pinv(self.gram, hermitian=True) @ self.cross
        codes: dict[str, dict[Value, torch.Tensor]] = {a: {} for a in self.attributes}
        for col, (name, value) in enumerate(self.index.columns):
            codes[name][value] = u[col].to(dtype)
        return Dictionary(u[-1].to(dtype), codes)
