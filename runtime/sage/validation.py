"""Sufficiency, necessity and control as METHOD.md section 3 defines them.

Inputs are per-prompt task metrics (logit difference, or log-probability-mass difference for
token-set answers) on the test split under each condition:
  clean   no intervention
  interv  the cross-sections replaced by a reconstruction a_hat (sufficiency), or by
          u_0 + (a - a_hat), the features removed (necessity)
  ablated every cross-section replaced by u_0 (mean ablation)
The formulas act on the mean metrics, so each is bootstrapped over prompts as a whole.
"""

from __future__ import annotations

import torch

from runtime.sage.statistics import Estimate, bootstrap, mean_estimate, safe_ratio


def sufficiency(clean: torch.Tensor, interv: torch.Tensor, *, seed: int = 0) -> Estimate:
    """LD_interv / LD_clean (Makelov et al.'s definition): 1 means the reconstruction suffices."""
    return bootstrap({"c": clean, "i": interv}, lambda m: safe_ratio(m["i"], m["c"]), seed=seed)


def logit_diff_recovered(clean: torch.Tensor, interv: torch.Tensor, ablated: torch.Tensor, *, seed: int = 0) -> Estimate:
    """1 - |LD_clean - LD_interv| / |LD_clean - LD_abl|: the ablation-normalised sufficiency."""
    return bootstrap(
        {"c": clean, "i": interv, "a": ablated},
        lambda m: 1 - safe_ratio((m["c"] - m["i"]).abs(), (m["c"] - m["a"]).abs()),
        seed=seed,
    )


def necessity(clean: torch.Tensor, removed: torch.Tensor, ablated: torch.Tensor, *, seed: int = 0) -> Estimate:
    """1 - |LD_abl - LD_interv| / |LD_abl - LD_clean| with the features removed: 1 means the task
    fails without them as it does under mean ablation."""
    return bootstrap(
        {"c": clean, "r": removed, "a": ablated},
        lambda m: 1 - safe_ratio((m["a"] - m["r"]).abs(), (m["a"] - m["c"]).abs()),
        seed=seed,
    )


def edit_success(edited_argmax: torch.Tensor, target_argmax: torch.Tensor, *, seed: int = 0) -> Estimate:
    """Fraction of pairs whose argmax next token under the edit equals that under the
    ground-truth patch (the activations of the twin patched in)."""
    return mean_estimate((edited_argmax == target_argmax).to(torch.float64), seed=seed)
