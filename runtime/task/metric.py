"""The task metric at the final position (METHOD.md notation: m(p)).

m = logsumexp(logits[answers]) - logsumexp(logits[distractors]). For single-token answers this is
the logit difference answer - distractor; for token sets it is the difference of log-probability
mass (the softmax normaliser cancels in both), so one differentiable formula serves every task.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _padded(ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    sizes = [len(row) for row in ids]
    width = max(sizes)
    # One tensor from one flat list: a copy per row costs more than the metric itself.
    index = torch.tensor([x for row in ids for x in (*row, *([0] * (width - len(row))))], dtype=torch.long).view(len(ids), width)
    valid = torch.arange(width) < torch.tensor(sizes, dtype=torch.long)[:, None]
    return index, valid


def _mass(logits: torch.Tensor, ids: Sequence[Sequence[int]]) -> torch.Tensor:
    index, valid = _padded(ids)
    picked = logits.gather(1, index.to(logits.device))
    return picked.masked_fill(~valid.to(logits.device), float("-inf")).logsumexp(dim=1)


def task_metric(logits: torch.Tensor, answer_ids: Sequence[Sequence[int]], distractor_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """`logits` (B, V) at the final position; one answer and one distractor id list per row."""
    return _mass(logits, answer_ids) - _mass(logits, distractor_ids)
