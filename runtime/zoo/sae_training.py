"""Training one zoo SAE with sae_lens's own trainer on an in-memory activation tensor.

The route of shared/STACK.md section 4A: `SAETrainer` with an infinite batch iterator over the
tensor, activations normalised to unit mean squared norm during training (sae_lens folds the
scale back into the weights at the end, so the saved SAE reads raw activations), a constant
learning rate (`lr_end` must be given), no wandb. The result is written with
`save_inference_model`, sae_lens's on-disk format, and read back through `SAE.load_from_disk`.

Deterministic: the initial weights come from a generator seeded by the build, the batches from
a second one, so the same activations and seed give the same weights.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# Held out of training; explained variance and L0 in the zoo.json are measured on them.
EVAL_FRACTION = 0.1


@dataclass(frozen=True)
class SaeKind:
    """One kind of zoo SAE. `expansion` is d_sae / d_in; `budget` scales the model's step count."""

    name: str
    description: str
    architecture: str  # sae_lens architecture: "standard" (ReLU + L1) | "topk"
    expansion: float
    k: int | None = None
    l1_coefficient: float | None = None
    budget: float = 1.0


KINDS: dict[str, SaeKind] = {
    k.name: k
    for k in (
        SaeKind("relu-l1", "ReLU SAE with an L1 sparsity penalty (sae_lens 'standard')", "standard", 4.0, l1_coefficient=3.0),
        SaeKind("topk-k8", "TopK SAE keeping the 8 largest latents per token", "topk", 4.0, k=8),
        SaeKind("topk-k32", "TopK SAE keeping the 32 largest latents per token", "topk", 4.0, k=32),
        # Weak on purpose, so a scoring pass has something that must rank last: 1/32 of the other
        # kinds' latents (fewer than IOI has attribute values), trained for 1/20 of their steps
        # with relu-l1's penalty.
        SaeKind("weak", "deliberately weak: ReLU-L1 with 1/32 of the other kinds' latents, trained for 1/20 of their steps",
                "standard", 0.125, l1_coefficient=3.0, budget=0.05),
    )
}


@dataclass(frozen=True)
class Budget:
    """How a model's SAEs are trained: full-budget step count, batch size, learning rate, and a
    scale on every kind's width (a wide stream needs a smaller multiple to train in seconds)."""

    steps: int
    batch_size: int = 1024
    lr: float = 1e-3
    width_scale: float = 1.0

    def d_sae(self, kind: SaeKind, d_in: int) -> int:
        return max(8, round(kind.expansion * self.width_scale * d_in))


@dataclass(frozen=True)
class SaeStats:
    """Measured on the held-out activations, through the SAE as `SAE.load_from_disk` returns it."""

    explained_variance: float  # 1 - sum |x - x_hat|^2 / sum |x - mean x|^2
    l0: float  # mean number of active latents per token
    dead_fraction: float  # latents never active on the held-out activations
    train_tokens: int
    eval_tokens: int
    steps: int
    seconds: float  # wall-clock training time
    cpu_seconds: float  # CPU time of the training (all threads): a load-independent measure


def _batches(x: torch.Tensor, size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x) - size + 1, size):
            yield x[order[i : i + size]]


def train_sae(acts: torch.Tensor, kind: SaeKind, budget: Budget, out: Path, hook_name: str, model_name: str,
              seed: int = 0, log=print) -> SaeStats:
    """Train a `kind` SAE on `acts` (N, d_in) and save it to `out`, atomically (a temporary
    sibling folder renamed into place), with a zoo.json of its kind and measured stats."""
    from sae_lens import LoggingConfig, SAE, SAETrainer, StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    acts = acts.float()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(acts), generator=generator)
    n_eval = max(1, int(len(acts) * EVAL_FRACTION))
    train, held = acts[order[n_eval:]], acts[order[:n_eval]]
    d_in = acts.shape[1]
    d_sae = budget.d_sae(kind, d_in)
    batch = min(budget.batch_size, len(train))
    steps = max(1, round(budget.steps * kind.budget))
    metadata = SAEMetadata(hook_name=hook_name, model_name=model_name, zoo_kind=kind.name)
    common = dict(d_in=d_in, d_sae=d_sae, normalize_activations="expected_average_only_in", metadata=metadata)

    torch.manual_seed(seed)  # sae_lens initialises the weights from the global generator
    if kind.architecture == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(k=kind.k, **common))
    elif kind.architecture == "standard":
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=kind.l1_coefficient, **common))
    else:
        raise ValueError(f"unknown SAE architecture {kind.architecture!r}")
    config = SAETrainerConfig(total_training_samples=steps * batch, train_batch_size_samples=batch, lr=budget.lr,
                              lr_end=budget.lr, device="cpu", logger=LoggingConfig(log_to_wandb=False),
                              n_batches_for_norm_estimate=min(20, max(1, len(train) // batch)))
    start, cpu_start = time.time(), time.process_time()
    # sae_lens draws its own tqdm bars on stderr, which would tear through the run's progress
    # display; the build reports its own progress and the stats line below.
    with contextlib.redirect_stderr(io.StringIO()):
        trained = SAETrainer(cfg=config, sae=sae, data_provider=_batches(train, batch, generator)).fit()
    seconds, cpu_seconds = time.time() - start, time.process_time() - cpu_start

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    trained.save_inference_model(partial)
    loaded = SAE.load_from_disk(str(partial), device="cpu")
    stats = measure(loaded, held)
    stats = SaeStats(stats.explained_variance, stats.l0, stats.dead_fraction, len(train), len(held), steps,
                     round(seconds, 1), round(cpu_seconds, 1))
    meta = {"kind": asdict(kind), "d_sae": d_sae, "hook_name": hook_name, "model": model_name, "seed": seed,
            "budget": asdict(budget), "stats": asdict(stats)}
    (partial / "zoo.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(out)
    log(f"  {out.name} {kind.name}: d_sae {d_sae}, {steps} steps in {seconds:.1f} s ({cpu_seconds:.1f} s CPU), "
        f"explained variance {stats.explained_variance:.3f}, L0 {stats.l0:.1f}, dead {stats.dead_fraction:.1%}")
    return stats


@torch.no_grad()
def measure(sae, acts: torch.Tensor) -> SaeStats:
    """Explained variance, L0 and dead fraction of an inference SAE on `acts` (N, d_in)."""
    feats = sae.encode(acts)
    recon = sae.decode(feats)
    residual = (acts - recon).pow(2).sum()
    total = (acts - acts.mean(0)).pow(2).sum()
    active = feats > 0
    return SaeStats(float(1 - residual / total), float(active.sum(-1).float().mean()),
                    float((~active.any(0)).float().mean()), 0, len(acts), 0, 0.0, 0.0)


def read_stats(folder: Path) -> dict:
    return json.loads((folder / "zoo.json").read_text())
