"""Interpretability of SAE latents against the attribute ground truth (METHOD.md section 5).

Two views over the test prompts, with A_j = {p : f_j(p) > 0} a latent's active set and
P_{i,v} = {p : v_i(p) = v} a property's prompt set, F1 = 2 |A ∩ P| / (|A| + |P|):
- feature-centric (Makelov et al.): each active latent gets its best property: one attribute
  value, or a union of up to `max_union` values of one attribute. For a union the best set is
  searched greedily: values in order of precision |A ∩ P_v| / |P_v|, every prefix scored.
- value-centric: for each attribute value, the best latent's F1, precision and recall, and how
  many latents reach the threshold (a value spread over many latents is over-split; a value with
  none is occluded).
(Conjunctions with position are not searched: each cross-section is evaluated at one position.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

THRESHOLD = 0.8
MAX_UNION = 10

Value = str | int


@dataclass(frozen=True)
class LatentProperty:
    latent: int
    attribute: str
    values: tuple[Value, ...]
    f1: float


@dataclass(frozen=True)
class ValueMatch:
    attribute: str
    value: Value
    latent: int
    f1: float
    precision: float
    recall: float
    latents_above_threshold: int


def _one_hot(column: Sequence[Value]) -> tuple[list[Value], torch.Tensor]:
    values = sorted(set(column), key=lambda v: (isinstance(v, str), v))
    where = {v: i for i, v in enumerate(values)}
    hot = torch.zeros(len(column), len(values))
    hot[torch.arange(len(column)), torch.tensor([where[v] for v in column])] = 1
    return values, hot


def feature_centric(active: torch.Tensor, attributes: Mapping[str, Sequence[Value]], max_union: int = MAX_UNION) -> list[LatentProperty]:
    """`active` (N, L) bool; `attributes[i]` the value of attribute i per prompt. One entry per
    latent active on at least one prompt."""
    a = active.to(torch.float32)
    size_a = a.sum(dim=0)
    live = torch.nonzero(size_a > 0).flatten()
    best_f1 = torch.full((a.shape[1],), -1.0)
    best: dict[int, LatentProperty] = {}
    for name, column in attributes.items():
        values, hot = _one_hot(column)
        tp = a.T @ hot  # (L, V)
        size_p = hot.sum(dim=0)
        order = torch.argsort(tp / size_p, dim=1, descending=True)[:, :max_union]
        tp_cum = torch.gather(tp, 1, order).cumsum(dim=1)
        p_cum = size_p[order].cumsum(dim=1)
        f1 = 2 * tp_cum / (size_a[:, None] + p_cum)
        top, length = f1.max(dim=1)
        for j in live.tolist():
            if top[j] > best_f1[j]:
                best_f1[j] = top[j]
                chosen = tuple(values[i] for i in order[j, : length[j] + 1].tolist())
                best[j] = LatentProperty(j, name, chosen, float(top[j]))
    return [best[j] for j in live.tolist()]


def value_centric(active: torch.Tensor, attributes: Mapping[str, Sequence[Value]], threshold: float = THRESHOLD) -> list[ValueMatch]:
    a = active.to(torch.float32)
    size_a = a.sum(dim=0)
    out = []
    for name, column in attributes.items():
        values, hot = _one_hot(column)
        tp = a.T @ hot
        size_p = hot.sum(dim=0)
        f1 = 2 * tp / (size_a[:, None] + size_p[None, :]).clamp_min(1)
        for v, value in enumerate(values):
            j = int(f1[:, v].argmax())
            out.append(
                ValueMatch(
                    attribute=name,
                    value=value,
                    latent=j,
                    f1=float(f1[j, v]),
                    # No latent active at all: precision is undefined, not 0.
                    precision=float(tp[j, v] / size_a[j]) if size_a[j] > 0 else math.nan,
                    recall=float(tp[j, v] / size_p[v]),
                    latents_above_threshold=int((f1[:, v] >= threshold).sum()),
                )
            )
    return out


def fraction_at_least(scores: Sequence[float], threshold: float = THRESHOLD) -> torch.Tensor:
    """Per-item 0/1 indicators (for bootstrapping the fraction of latents or values >= threshold)."""
    return torch.tensor([1.0 if s >= threshold else 0.0 for s in scores], dtype=torch.float64)
