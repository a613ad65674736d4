"""Estimates with 95% bootstrap confidence intervals over prompts (METHOD.md section 5).

Every number SAGE reports is a function of per-prompt quantities (logit differences under each
condition, edit successes, ...). We resample prompts with replacement, recompute the statistic on
the resampled column means, and take the percentile interval. A statistic that is undefined
(a ratio over a zero baseline) stays NaN, with its reason, never a sentinel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

N_BOOT = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int  # prompts (or pairs) the estimate rests on
    reason: str | None = None  # why value is NaN, when it is

    def to_json(self) -> dict:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        out = {"value": clean(self.value), "ci95": [clean(self.low), clean(self.high)], "n": self.n}
        if self.reason is not None or math.isnan(self.value):
            out["reason"] = self.reason or "undefined"
        return out


def undefined(reason: str, n: int = 0) -> Estimate:
    return Estimate(math.nan, math.nan, math.nan, n, reason)


Statistic = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


def resample(columns: Mapping[str, torch.Tensor], statistic: Statistic, *, seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, torch.Tensor, int]:
    """The statistic on the full-sample column means, its n_boot replicates on prompts resampled
    with replacement, and the prompt count. The same seed and count draw the same resamples, so
    estimates over one set of prompts are paired."""
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    n = lengths.pop()
    if n == 0:
        return math.nan, torch.zeros(0, dtype=torch.float64), 0
    data = {k: v.detach().to(torch.float64) for k, v in columns.items()}
    point = float(statistic({k: v.mean().reshape(1) for k, v in data.items()})[0])
    index = _resamples(seed, n, n_boot)
    return point, statistic({k: v[index].mean(dim=1) for k, v in data.items()}), n


@functools.lru_cache(maxsize=4)
def _resamples(seed: int, n: int, n_boot: int) -> torch.Tensor:
    """(n_boot, n) prompt indices drawn with replacement; the hundreds of estimates over one set
    of prompts share them (read only). Four sets are kept (the test prompts and each
    attribute's pairs): at most 32 KB per prompt."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (n_boot, n), generator=generator)


def bootstrap(columns: Mapping[str, torch.Tensor], statistic: Statistic, *, seed: int = 0, n_boot: int = N_BOOT, level: float = LEVEL) -> Estimate:
    """`statistic` maps column means (each of shape (B,)) to B values of the statistic.

    The point estimate is the statistic of the full-sample means; the interval is the percentile
    interval of the bootstrap replicates (NaN replicates, e.g. a zero denominator in a resample,
    are dropped; if most are NaN the interval is reported as undefined).
    """
    point, replicates, n = resample(columns, statistic, seed=seed, n_boot=n_boot)
    if n == 0:
        return undefined("no prompts", 0)
    finite = replicates[torch.isfinite(replicates)]
    if math.isnan(point):
        return Estimate(math.nan, math.nan, math.nan, n, "undefined on the full sample (zero denominator)")
    if len(finite) < n_boot / 2:
        return Estimate(point, math.nan, math.nan, n, "interval undefined: most resamples have a zero denominator")
    alpha = (1 - level) / 2
    low, high = torch.quantile(finite, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return Estimate(point, low, high, n)


def mean_estimate(values: torch.Tensor, *, seed: int = 0) -> Estimate:
    """The mean of one per-prompt quantity, with its bootstrap interval."""
    return bootstrap({"x": values}, lambda m: m["x"], seed=seed)


def fraction_estimate(indicators: torch.Tensor, *, seed: int = 0, n_boot: int = N_BOOT, level: float = LEVEL) -> Estimate:
    """The fraction of items (latents, attribute values) meeting a condition, from 0/1
    indicators. The bootstrap mean of a 0/1 column is Binomial(n, p) / n, so we draw that directly:
    the same interval as `mean_estimate` in distribution, in O(n_boot) memory however many
    latents a wide SAE has."""
    n = len(indicators)
    if n == 0:
        return undefined("no items", 0)
    p = float(indicators.to(torch.float64).mean())
    generator = torch.Generator().manual_seed(seed)
    draws = torch.binomial(torch.full((n_boot,), float(n), dtype=torch.float64), torch.full((n_boot,), p, dtype=torch.float64), generator=generator) / n
    alpha = (1 - level) / 2
    low, high = torch.quantile(draws, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return Estimate(p, low, high, n)


def safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, NaN (not inf) where the denominator is zero."""
    out = numerator / denominator
    return torch.where(denominator == 0, torch.full_like(out, math.nan), out)
