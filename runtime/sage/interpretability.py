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

Active sets come sparse (runtime/sage/sparse.Latents, one stored entry per active (prompt,
latent)); only latents active somewhere are ever laid out, so a 2^20-latent SAE costs what its
live latents do. A dense (N, L) bool matrix is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from runtime.sage.sparse import Latents

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


def _live(active: Latents | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The latents active on some prompt (ascending), and the active (prompt, live position)
    pairs."""
    if not isinstance(active, Latents):
        active = Latents.from_dense(active.to(torch.bool))
    live, position = torch.unique(active.index, sorted=True, return_inverse=True)
    return live, active.row_of(), position


def _overlaps(rows: torch.Tensor, position: torch.Tensor, n_live: int, column: Sequence[Value]) -> tuple[list[Value], torch.Tensor, torch.Tensor]:
    """Values, |A_j ∩ P_v| as (live, V), and |P_v|. One sparse (live, N) x (N, V) product."""
    values, hot = _one_hot(column)
    a = torch.sparse_coo_tensor(torch.stack([position, rows]), torch.ones(len(rows)), (n_live, len(column)), check_invariants=False)
    return values, torch.sparse.mm(a, hot), hot.sum(dim=0)


def feature_centric(active: Latents | torch.Tensor, attributes: Mapping[str, Sequence[Value]], max_union: int = MAX_UNION) -> list[LatentProperty]:
    """`active` (N, L): the active latents of each prompt; `attributes[i]` the value of
    attribute i per prompt. One entry per latent active on at least one prompt; on a tie the
    earlier attribute keeps the latent."""
    live, rows, position = _live(active)
    size_a = torch.bincount(position, minlength=len(live)).to(torch.float32)
    best_f1 = torch.full((len(live),), -1.0)
    best_attribute = torch.zeros(len(live), dtype=torch.long)
    best_values: list[list[Value]] = [[] for _ in live.tolist()]
    for index, (name, column) in enumerate(attributes.items()):
        values, tp, size_p = _overlaps(rows, position, len(live), column)
        order = torch.argsort(tp / size_p, dim=1, descending=True)[:, :max_union]
        tp_cum = torch.gather(tp, 1, order).cumsum(dim=1)
        p_cum = size_p[order].cumsum(dim=1)
        top, length = (2 * tp_cum / (size_a[:, None] + p_cum)).max(dim=1)
        better = top > best_f1
        best_f1 = torch.where(better, top, best_f1)
        best_attribute = torch.where(better, torch.full_like(best_attribute, index), best_attribute)
        for i, (row, n, wins) in enumerate(zip(order.tolist(), length.tolist(), better.tolist(), strict=True)):
            if wins:
                best_values[i] = [values[v] for v in row[: n + 1]]
    names = list(attributes)
    return [
        LatentProperty(j, names[attr], tuple(chosen), f1)
        for j, attr, chosen, f1 in zip(live.tolist(), best_attribute.tolist(), best_values, best_f1.tolist(), strict=True)
    ]


def value_centric(active: Latents | torch.Tensor, attributes: Mapping[str, Sequence[Value]], threshold: float = THRESHOLD) -> list[ValueMatch]:
    """Over the live latents only: a latent never active has F1 0 with every value. A value no
    live latent overlaps is matched, as over all latents, to latent 0 with F1 0."""
    live, rows, position = _live(active)
    size_a = torch.bincount(position, minlength=len(live)).to(torch.float32)
    zero_is_live = len(live) > 0 and int(live[0]) == 0
    out = []
    for name, column in attributes.items():
        values, tp, size_p = _overlaps(rows, position, len(live), column)
        f1 = 2 * tp / (size_a[:, None] + size_p[None, :]).clamp_min(1)
        best = f1.argmax(dim=0) if len(live) else torch.zeros(len(values), dtype=torch.long)
        above = (f1 >= threshold).sum(dim=0)
        for v, value in enumerate(values):
            j = int(best[v])
            if len(live) == 0 or float(f1[j, v]) == 0.0:
                # No live latent shares a prompt with the value (F1 0 everywhere): the first
                # latent is as good as any, and its precision is 0, or undefined if it never fires.
                out.append(ValueMatch(name, value, 0, 0.0, 0.0 if zero_is_live else math.nan, 0.0, 0))
                continue
            out.append(
                ValueMatch(
                    attribute=name,
                    value=value,
                    latent=int(live[j]),
                    f1=float(f1[j, v]),
                    precision=float(tp[j, v] / size_a[j]),
                    recall=float(tp[j, v] / size_p[v]),
                    latents_above_threshold=int(above[v]),
                )
            )
    return out


def fraction_at_least(scores: Sequence[float], threshold: float = THRESHOLD) -> torch.Tensor:
    """Per-item 0/1 indicators (for bootstrapping the fraction of latents or values >= threshold)."""
    return torch.tensor([1.0 if s >= threshold else 0.0 for s in scores], dtype=torch.float64)
