"""Choosing cross-sections from attribution scores (METHOD.md section 2).

Each twin family (the spec's counterfactual, and each attribute's own twin) ranks every candidate
by |attribution|; the spec selects the top k, or those carrying at least a fraction of the
family's total |attribution|; the selection is the union over families, so a cross-section that
carries only one attribute is still found. The margin (the best unselected candidates) is what
verification by real patching checks beside the selection, so a reader can see whether the
first-order estimate cut in the right place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def select_family(scores: torch.Tensor, top: int | None, fraction: float | None) -> list[int]:
    """Indices selected from one family's attribution scores, best first."""
    magnitude = scores.abs()
    order = torch.argsort(magnitude, descending=True, stable=True).tolist()
    if top is not None:
        return order[: min(top, len(order))]
    total = float(magnitude.sum())
    if fraction is None or total == 0.0:
        return []
    return [i for i in order if float(magnitude[i]) >= fraction * total]


def shares(families: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(families, candidates): each candidate's |attribution| as a share of its family's total."""
    return torch.stack([s.abs().to(torch.float64) / s.abs().sum().clamp_min(1e-30) for s in families.values()])


def select(families: Mapping[str, torch.Tensor], top: int | None, fraction: float | None) -> list[int]:
    """The union over families, ordered by each candidate's best share of its family's total."""
    chosen: set[int] = set()
    for scores in families.values():
        chosen.update(select_family(scores, top, fraction))
    share = shares(families).max(dim=0).values
    return sorted(chosen, key=lambda i: (-float(share[i]), i))


def margin(families: Mapping[str, torch.Tensor], selected: Sequence[int], size: int) -> list[int]:
    """The `size` best unselected candidates by their best share of a family's total."""
    share = shares(families).max(dim=0).values
    taken = set(selected)
    order = [i for i in torch.argsort(share, descending=True, stable=True).tolist() if i not in taken]
    return order[:size]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation (average ranks for ties), for attribution against real patching."""
    def ranks(v: Sequence[float]) -> torch.Tensor:
        t = torch.tensor(v, dtype=torch.float64)
        order = torch.argsort(t, stable=True)
        r = torch.empty_like(t)
        r[order] = torch.arange(len(t), dtype=torch.float64)
        for value in torch.unique(t):  # ties share their mean rank
            same = t == value
            r[same] = r[same].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / denominator if denominator > 0 else float("nan")
