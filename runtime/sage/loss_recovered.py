"""Standard SAE metrics on text (METHOD.md section 8): loss recovered, as SAELens and SAEBench core
define it, and explained variance, L0 and dead fraction on the same tokens.

The definitions followed (sae_lens 6.54 `sae_lens/evals.py`, `get_downstream_reconstruction_metrics`
and `get_recons_loss`; SAEBench core `sae_bench/evals/core/main.py`, the same functions, and
`calculate_misc_metrics` for `frac_alive`):
- per token t, CE(t) = -log p(token t+1 | tokens ..t) and KL(t) = sum_v p_clean(v) (log p_clean(v)
  - log p_new(v)), the KL *to* the clean next-token distribution (torch's kl_div(log p_new,
  p_clean)); CE has no value at a text's last token, KL has;
- each quantity is averaged over all scored tokens first, then
  ce_loss_score = (CE_ablated - CE_sae) / (CE_ablated - CE_clean) and
  kl_div_score = (KL_ablated - KL_sae) / KL_ablated, "ablated" meaning the hook zero-ablated;
- explained_variance = 1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2) over the tokens, pooled
  (sae_lens 6's ExplainedVarianceCalculator; SAEBench's older per-token mean is what sae_lens
  now calls explained_variance_legacy); l0 = mean over tokens of the latents != 0;
  dead_fraction = 1 - SAEBench's frac_alive, the latents never != 0 on any token.

Which tokens: sagec leaves out each text's first token (the attention sink, BOS where the
tokenizer adds one, as SAELens and SAEBench leave out special tokens) from every metric, and
neither splices the SAE nor zero-ablates there, so the two ends of each score are the SAE's own:
1 is the model unchanged, 0 no better than zeros in place of what the SAE replaces. (SAELens's
ablation also zeroes the special tokens, where its SAE is not spliced.)

Intervals: the texts are the units resampled (METHOD.md's 95% bootstrap), each text carrying its
token sums, so the point estimate is the pooled token mean above and the interval the spread over
texts. Explained variance centres each text's total at the full-sample mean, as
runtime/sage/evaluate.explained_variance does for prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from runtime.sage.sparse import Latents
from runtime.sage.statistics import Estimate, bootstrap, fraction_estimate, safe_ratio

# Results names, in the order results.json and the report give them, with SAELens's own names
# for the raw quantities.
SCORES = ("ce_loss_score", "kl_div_score", "explained_variance", "l0", "dead_fraction")
RAW = ("ce_loss_without_sae", "ce_loss_with_sae", "ce_loss_with_ablation", "kl_div_with_sae", "kl_div_with_ablation")


def token_ce(logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, T-1) cross-entropy of each next token from log-probabilities (B, T, V): position t
    predicts ids[:, t+1]."""
    return -logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)


def token_kl(clean_logp: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """(B, T) KL(clean || new) of the next-token distributions at every position, a row at a
    time: the elementwise terms of a whole batch are as large as its logits, twice."""
    return torch.stack([torch.nn.functional.kl_div(new, clean, reduction="none", log_target=True).sum(-1) for clean, new in zip(clean_logp, logp, strict=True)])


def log_softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (B, T, V) in float32, in place when the logits are float32, a row at a
    time (log_softmax and logsumexp of a whole batch make a temporary as large as it)."""
    out = logits.float()
    for row in out:
        row.sub_(torch.logsumexp(row, dim=-1, keepdim=True))
    return out


@dataclass
class Tally:
    """Per-text sums over the scored tokens (float64), and which latents were ever active."""

    n_texts: int
    d_in: int
    d_sae: int
    sums: dict[str, torch.Tensor] = field(init=False)  # name -> (n_texts,)
    x_sum: torch.Tensor = field(init=False)  # (n_texts, d_in)
    alive: torch.Tensor = field(init=False)  # (d_sae,) bool

    def __post_init__(self) -> None:
        names = ("ce_clean", "ce_sae", "ce_ablated", "ce_tokens", "kl_sae", "kl_ablated", "kl_tokens",
                 "resid_sq", "sq_norm", "l0", "tokens")
        self.sums = {k: torch.zeros(self.n_texts, dtype=torch.float64) for k in names}
        self.x_sum = torch.zeros(self.n_texts, self.d_in, dtype=torch.float64)
        self.alive = torch.zeros(self.d_sae, dtype=torch.bool)

    def add(self, name: str, texts: torch.Tensor, values: torch.Tensor) -> None:
        """Add `values` (one per token) into the sums of the `texts` they belong to."""
        self.sums[name].index_add_(0, texts, values.detach().to(torch.float64))

    def add_reconstruction(self, texts: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor | Latents) -> None:
        """Tokens (N, d_in) with their reconstructions and latents (N, d_sae), each of text `texts`."""
        x64, x_hat64 = x.detach().to(torch.float64), x_hat.detach().to(torch.float64)
        ones = torch.ones(len(texts), dtype=torch.float64)
        self.add("resid_sq", texts, (x64 - x_hat64).pow(2).sum(-1))
        self.add("sq_norm", texts, x64.pow(2).sum(-1))
        if isinstance(f, Latents):  # sparse latents, as runtime/sage/reconstruct.py returns them
            self.add("l0", texts, f.nonzero_per_row().to(torch.float64))
            self.alive |= f.ever_nonzero()
        else:
            active = f != 0
            self.add("l0", texts, active.sum(-1).to(torch.float64))
            self.alive |= active.any(0)
        self.add("tokens", texts, ones)
        self.x_sum.index_add_(0, texts, x64)

    def estimates(self, *, seed: int = 0) -> dict[str, Estimate]:
        """Every score and raw quantity, bootstrapped over texts."""
        used = self.sums["tokens"] > 0
        s = {k: v[used] for k, v in self.sums.items()}
        x_sum = self.x_sum[used]
        n_tokens = float(s["tokens"].sum())
        mean_x = x_sum.sum(0) / n_tokens if n_tokens else torch.zeros(self.d_in, dtype=torch.float64)
        # sum over a text's tokens of ||x - mean||^2, the mean fixed at the full sample's
        s["total_sq"] = s["sq_norm"] - 2 * (x_sum @ mean_x) + s["tokens"] * mean_x.dot(mean_x)

        def boot(names, statistic) -> Estimate:  # only the columns a statistic reads are resampled
            return bootstrap({k: s[k] for k in names}, statistic, seed=seed)

        def mean(name: str, count: str) -> Estimate:
            return boot((name, count), lambda m: safe_ratio(m[name], m[count]))

        def ce_score(m):
            clean, sae, ablated = (m[k] / m["ce_tokens"] for k in ("ce_clean", "ce_sae", "ce_ablated"))
            return safe_ratio(ablated - sae, ablated - clean)

        def kl_score(m):
            sae, ablated = m["kl_sae"] / m["kl_tokens"], m["kl_ablated"] / m["kl_tokens"]
            return safe_ratio(ablated - sae, ablated)

        out = {
            "ce_loss_score": boot(("ce_clean", "ce_sae", "ce_ablated", "ce_tokens"), ce_score),
            "kl_div_score": boot(("kl_sae", "kl_ablated", "kl_tokens"), kl_score),
            "explained_variance": boot(("resid_sq", "total_sq"), lambda m: 1 - safe_ratio(m["resid_sq"], m["total_sq"])),
            "l0": mean("l0", "tokens"),
            "dead_fraction": fraction_estimate(~self.alive, seed=seed),
            "ce_loss_without_sae": mean("ce_clean", "ce_tokens"),
            "ce_loss_with_sae": mean("ce_sae", "ce_tokens"),
            "ce_loss_with_ablation": mean("ce_ablated", "ce_tokens"),
            "kl_div_with_sae": mean("kl_sae", "kl_tokens"),
            "kl_div_with_ablation": mean("kl_ablated", "kl_tokens"),
        }
        return out
