"""Every number the ground-truth and score passes report: its direction and what it means.

One table, keyed by metric name, so results.json and the report describe a number the same way
wherever it appears. Free of torch, so the report side can import it. `direction` says which way is better; None marks a count where neither is
(a value spread over exactly one latent is ideal, none means occluded, several over-split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from runtime.sage.statistics import Estimate


@dataclass(frozen=True)
class Metric:
    direction: Literal["higher", "lower", "one"] | None  # "one": the closer to 1 the better
    description: str


METRICS: dict[str, Metric] = {
    # Task metric under each condition (mean over test prompts).
    "clean_metric": Metric("higher", "mean task metric (answer minus distractor) without intervention"),
    "ablated_metric": Metric("lower", "mean task metric with every cross-section mean-ablated to u_0"),
    "spliced_metric": Metric("higher", "mean task metric with the cross-sections replaced by the reconstruction"),
    # Validation (METHOD.md section 3, and section 5 for SAEs).
    "sufficiency": Metric("one", "LD_interv / LD_clean with the reconstruction patched in; 1 means it suffices (above 1 overshoots)"),
    "logit_diff_recovered": Metric("higher", "1 - |LD_clean - LD_interv| / |LD_clean - LD_abl|; 1 means no loss against mean ablation"),
    "necessity": Metric("higher", "1 - |LD_abl - LD_interv| / |LD_abl - LD_clean| with the features removed; 1 means the task fails without them"),
    # Control.
    "edit_success": Metric("higher", "fraction of pairs whose argmax under the edit equals that under patching in the twin's activations"),
    "no_intervention_agreement": Metric("lower", "fraction of pairs whose clean argmax already equals the target's: the floor edit success must beat"),
    "edit_magnitude": Metric("lower", "weight, in the prompt's reconstruction, of what the edit removes (mean over sites)"),
    "min_k": Metric("lower", "smallest k in control.KS whose sparse edit success reaches the supervised dictionary's"),
    # Variance.
    "explained_variance": Metric("higher", "1 - sum ||a - a_hat||^2 / sum ||a - mean a||^2 over test prompts"),
    "attribute_variance_explained": Metric("higher", "explained variance of a by its mean plus attribute i's centred codes: how much of the cross-section attribute i carries"),
    # SAE anatomy.
    "l0": Metric("lower", "mean number of nonzero latents per prompt"),
    "dead_fraction": Metric("lower", "fraction of latents nonzero on no test prompt"),
    # Interpretability (F1 of a latent's active set {f > 0} against a property's prompt set).
    "feature_centric": Metric("higher", "fraction of active latents whose best property (a value or a union of values) has F1 >= 0.8"),
    "value_centric": Metric("higher", "fraction of attribute values whose best latent has F1 >= 0.8"),
    "best_f1": Metric("higher", "F1 of the value's best latent"),
    "precision": Metric("higher", "of the prompts the value's best latent is active on, the fraction carrying the value (null if it is never active)"),
    "recall": Metric("higher", "of the prompts carrying the value, the fraction its best latent is active on"),
    "latents_above_threshold": Metric(None, "latents with F1 >= 0.8 for the value: 1 is ideal, 0 means occluded, more means over-split"),
    # Alignment.
    "best_cosine": Metric("higher", "mean over supervised codes u_{i,v} of the cosine with the closest decoder row"),
    "matched_cosine": Metric("higher", "mean cosine under a one-to-one (Hungarian) matching of codes to decoder rows"),
    # On text (METHOD.md section 8; runtime/sage/loss_recovered.py): the SAE spliced in at its
    # hook at every token of a corpus. SAELens's names; the three shared with the score pass are
    # described here as measured on text, under `text_` (results.json keys them without it).
    "ce_loss_score": Metric("higher", "(CE_ablated - CE_sae) / (CE_ablated - CE_clean) of next-token cross-entropy on the corpus, the hook zero-ablated for CE_ablated; 1 means no loss"),
    "kl_div_score": Metric("higher", "(KL_ablated - KL_sae) / KL_ablated, KL to the clean next-token distribution on the corpus; 1 means the model's predictions are unchanged"),
    "ce_loss_without_sae": Metric("lower", "mean next-token cross-entropy on the corpus, the model unchanged (nats)"),
    "ce_loss_with_sae": Metric("lower", "mean next-token cross-entropy on the corpus with the SAE spliced in (nats)"),
    "ce_loss_with_ablation": Metric(None, "mean next-token cross-entropy on the corpus with the hook zero-ablated (nats)"),
    "kl_div_with_sae": Metric("lower", "mean KL(clean || spliced) of the next-token distributions on the corpus (nats)"),
    "kl_div_with_ablation": Metric(None, "mean KL(clean || zero-ablated) of the next-token distributions on the corpus (nats)"),
    "text_explained_variance": Metric("higher", "1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2) over the corpus tokens at the SAE's hook"),
    "text_l0": Metric("lower", "mean number of nonzero latents per corpus token"),
    "text_dead_fraction": Metric("lower", "fraction of latents nonzero on no corpus token"),
}


def described(name: str, estimate: Estimate) -> dict:
    """An estimate as plain JSON with its direction and description."""
    metric = METRICS[name]
    return {**estimate.to_json(), "direction": metric.direction, "description": metric.description}
