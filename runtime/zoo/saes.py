"""The zoo's SAEs: four kinds (runtime/zoo/sae_training.py KINDS) on the residual streams of the
zoo models, named `<model>/<kind>/<component>.<layer>`, e.g. `tiny-ioi/topk-k8/resid_post.1`.

- Tiny models: committed under `runtime/zoo/data/saes/<model>/<kind>/<component>.<layer>/`.
- `smollm2-135m`, `gemma-3-270m`: built lazily, per SAE, on first use into `cache_dir()/saes/...`. The corpus
  (runtime/zoo/corpus.py) is generated once per model and kept; activations are collected once
  per location and kept too, so a second kind at the same layer costs only its training, and
  `build_saes` given several names collects all their layers in one pass over the corpus.

Each folder is sae_lens's on-disk format (cfg.json, sae_weights.safetensors; `SAE.load_from_disk`
reads it) plus a zoo.json with the kind, the training budget and the explained variance, L0 and
dead fraction measured on held-out activations. The cfg's `metadata.hook_name` is the
TransformerLens name of the location (`blocks.1.hook_resid_post`), which runtime/saes/loading.py maps
back to the location vocabulary.

runtime/zoo/__init__.py registers `names()` and `resolve_sae(name)` with runtime/saes/loading.py; a caller that needs several SAEs calls
`prepare(names)` first, so their activations come from one pass.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.store.userdirs import cache_dir
from runtime.zoo.corpus import CorpusRecipe
from runtime.zoo.models import GEMMA3, SMOLLM2, TINY, ZOO_DATA, resolve_model
from runtime.zoo.names import unknown
from runtime.zoo.sae_training import KINDS, Budget
from sagec.locations import Location


@dataclass(frozen=True)
class SaePlan:
    """Which SAEs a zoo model has and how they are trained."""

    model: str
    locations: tuple[Location, ...]
    budget: Budget
    corpus: CorpusRecipe
    committed: bool  # True: in runtime/zoo/data; False: built lazily into the cache
    tasks: tuple[str, ...] = ("ioi",)  # zoo tasks whose prompts open the corpus
    seed: int = 0


def _residual(n_layers: int, pre: Iterable[int]) -> tuple[Location, ...]:
    return tuple(Location("resid_pre", l) for l in pre) + tuple(Location("resid_post", l) for l in range(n_layers))


PLANS: dict[str, SaePlan] = {
    "tiny-ioi": SaePlan("tiny-ioi", _residual(TINY["tiny-ioi"].n_layer, []), Budget(steps=400, batch_size=512, lr=2e-3),
                        CorpusRecipe(prompts=2048, generated=256, new_tokens=20), committed=True),
    "tiny-tasks": SaePlan("tiny-tasks", _residual(TINY["tiny-tasks"].n_layer, []), Budget(steps=400, batch_size=512, lr=2e-3),
                          CorpusRecipe(prompts=2048, generated=256, new_tokens=20), committed=True, tasks=TINY["tiny-tasks"].tasks),
    # The corpus also repeats random sequences of every vocabulary word: words that only held-out
    # templates use are in no training row, so the SAEs would otherwise never see them.
    "tiny-induction": SaePlan("tiny-induction", _residual(TINY["tiny-induction"].n_layer, []), Budget(steps=400, batch_size=512, lr=2e-3),
                              CorpusRecipe(prompts=2048, generated=256, new_tokens=20, copy_rows=1024), committed=True,
                              tasks=TINY["tiny-induction"].tasks),
    # Sized for a first `sagec run` on 2 CPU cores: about 10k tokens of corpus, widths half the
    # tiny models' multiples (2x d_model for relu-l1 and TopK), 200 steps of 512.
    SMOLLM2: SaePlan(SMOLLM2, _residual(30, range(30)), Budget(steps=200, batch_size=512, lr=2e-3, width_scale=0.5),
                     CorpusRecipe(prompts=384, generated=64, new_tokens=40, batch_size=64), committed=False),
    # The same budget on Gemma-3-270M (1280 latents, 40 for `weak`), its corpus opened by the two
    # tasks its specs run, every text after a <bos> (left out of the activations).
    GEMMA3: SaePlan(GEMMA3, _residual(18, range(18)), Budget(steps=200, batch_size=512, lr=2e-3, width_scale=0.5),
                    CorpusRecipe(prompts=384, generated=64, new_tokens=40, batch_size=64, bos=True), committed=False,
                    tasks=("ioi", "agreement")),
}


@dataclass(frozen=True)
class ZooSae:
    name: str
    model: str
    kind: str
    location: Location
    committed: bool

    @property
    def folder(self) -> Path:
        root = ZOO_DATA / "saes" if self.committed else cache_dir() / "saes"
        return root / self.model / self.kind / location_key(self.location)

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.location.layer}.hook_{self.location.component}"

    @property
    def built(self) -> bool:
        return (self.folder / "cfg.json").is_file() and (self.folder / "sae_weights.safetensors").is_file()

    @property
    def status(self) -> str:
        """"committed" (shipped), "built" (in the cache), "lazy" (built on first use), or
        "missing" (a committed SAE whose files are absent: `sagec zoo build` it)."""
        if self.committed:
            return "committed" if self.built else "missing"
        return "built" if self.built else "lazy"


def location_key(location: Location) -> str:
    return f"{location.component}.{location.layer}"


def zoo_saes() -> list[ZooSae]:
    return [ZooSae(f"{p.model}/{kind}/{location_key(loc)}", p.model, kind, loc, p.committed)
            for p in PLANS.values() for loc in p.locations for kind in KINDS]


def names() -> list[str]:
    return [s.name for s in zoo_saes()]


def entry(name: str) -> ZooSae:
    for s in zoo_saes():
        if s.name == name:
            return s
    raise KeyError(unknown("zoo SAE", name, names()))


def resolve_sae(name: str) -> Path:
    """The sae_lens folder of the zoo SAE `name`, building it first if it is lazy and unbuilt."""
    sae = entry(name)
    if sae.built:
        return sae.folder
    if sae.committed:
        raise FileNotFoundError(f"zoo SAE {name} is missing from {sae.folder}; run `sagec zoo build {name}`")
    build_saes([name])
    return sae.folder




def prepare(sae_names: Iterable[str]) -> list[Path]:
    """Build every lazy, unbuilt SAE among `sae_names` together: one pass over the corpus
    collects the activations of all their layers. Call it before resolving them one by one."""
    missing = [n for n in dict.fromkeys(sae_names) if not entry(n).built and not entry(n).committed]
    if missing:
        build_saes(missing)
    return [resolve_sae(n) for n in sae_names]


# --- building ----------------------------------------------------------------------------------


def build_saes(sae_names: Sequence[str], log=None) -> list[Path]:
    """Train the named SAEs (deterministically, replacing existing folders), grouped by model so
    each model's corpus and activations are computed once."""
    from rich.console import Console

    # Bound to the real stderr now: the trainer silences sae_lens by redirecting sys.stderr.
    console = Console(file=sys.stderr, highlight=False)
    log = log or console.print
    wanted = [entry(n) for n in dict.fromkeys(sae_names)]
    out = []
    for model in dict.fromkeys(s.model for s in wanted):
        group = [s for s in wanted if s.model == model]
        out += _build_model_saes(PLANS[model], group, console, log)
    return out


def _build_model_saes(plan: SaePlan, group: list[ZooSae], console, log) -> list[Path]:
    import torch

    acts = _activations(plan, sorted({s.location for s in group}), console, log)
    # Committed SAEs train on one thread: a fixed thread count fixes the floating-point
    # reductions, so a rebuild gives the same weights on any machine.
    threads = torch.get_num_threads()
    if plan.committed:
        torch.set_num_threads(1)
    try:
        return _train_all(plan, group, acts, console, log)
    finally:
        torch.set_num_threads(threads)


def _train_all(plan: SaePlan, group: list[ZooSae], acts, console, log) -> list[Path]:
    from runtime.zoo.sae_training import train_sae

    out = []
    with _progress(console) as progress:
        task = progress.add_task(f"training {len(group)} SAE(s) for {plan.model}", total=len(group))
        for s in group:
            progress.update(task, description=f"training {s.name}")
            train_sae(acts[s.location], KINDS[s.kind], plan.budget, s.folder, s.hook_name, plan.model, seed=plan.seed, log=log)
            progress.advance(task)
            out.append(s.folder)
    return out


def _activations(plan: SaePlan, locations: list[Location], console, log):
    """Activations at `locations` over the model's corpus; for lazy models both are cached."""
    from safetensors.torch import load_file, save_file

    from runtime.zoo.corpus import residual_activations

    store = None if plan.committed else cache_dir() / "saes" / plan.model / f"activations-{_corpus_key(plan)}"
    found = {}
    if store is not None:
        for loc in locations:
            f = store / f"{location_key(loc)}.safetensors"
            if f.is_file():
                found[loc] = load_file(f)["acts"]
    missing = [loc for loc in locations if loc not in found]
    if not missing:
        return found

    hf_model, tokenizer = _load(plan.model, log)
    rows = _corpus(plan, hf_model, tokenizer, store, console, log)
    with _progress(console) as progress:
        task = progress.add_task(f"activations of {plan.model} at {', '.join(map(str, missing))}", total=len(rows))
        fresh = residual_activations(hf_model, rows, missing, tokenizer.pad_token_id,
                                     progress=lambda n: progress.advance(task, n))
    log(f"  {plan.model}: {len(next(iter(fresh.values())))} activation vectors per location over {len(rows)} texts")
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
        for loc, t in fresh.items():
            partial = store / f"{location_key(loc)}.partial"
            save_file({"acts": t.contiguous()}, str(partial))
            partial.rename(store / f"{location_key(loc)}.safetensors")
    return {**found, **fresh}


def corpus_rows(model: str, log=lambda *_: None) -> list[list[int]] | None:
    """The token rows of the SAE corpus of zoo model `model` (None if it has no SAEs): what its
    SAEs were trained on, read from the cache for lazy models (generated there on first use),
    regenerated (seeded, seconds) for tiny ones. The text metrics run on it (runtime/passes/corpus.py)."""
    plan = PLANS.get(model)
    if plan is None:
        return None
    store = None if plan.committed else cache_dir() / "saes" / plan.model / f"activations-{_corpus_key(plan)}"
    if store is not None and (store / "corpus.json").is_file():
        return json.loads((store / "corpus.json").read_text())["rows"]
    import torch

    hf_model, tokenizer = _load(plan.model, log)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as when the SAEs were built: the same sampled texts on any machine
    try:
        return _corpus(plan, hf_model, tokenizer, store, None, log)
    finally:
        torch.set_num_threads(threads)


def _corpus(plan: SaePlan, hf_model, tokenizer, store: Path | None, console, log) -> list[list[int]]:
    from runtime.zoo.corpus import build_corpus
    from runtime.zoo.tasks import task as zoo_task

    cached = store / "corpus.json" if store is not None else None
    if cached is not None and cached.is_file():
        return json.loads(cached.read_text())["rows"]
    with _progress(console) as progress:
        task = progress.add_task(f"{plan.model} writing its share of the SAE corpus", total=plan.corpus.generated)
        rows = build_corpus(hf_model, tokenizer, plan.corpus, [zoo_task(t) for t in plan.tasks],
                            progress=lambda n: progress.advance(task, n))
    log(f"  {plan.model}: corpus of {len(rows)} texts, {sum(map(len, rows))} tokens")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        partial.write_text(json.dumps({"recipe": asdict(plan.corpus), "rows": rows}))
        partial.rename(cached)
    return rows


def _corpus_key(plan: SaePlan) -> str:
    """Changes whenever the corpus would: its recipe or the zoo tasks it samples."""
    from runtime.zoo.tasks import task as zoo_task

    tasks = [(t.name, [tp.text for tp in t.templates], [(v.name, v.domain) for v in t.variables], t.answer.answer.template,
              t.split.by, t.split.train, t.split.test, t.seed)
             for t in map(zoo_task, plan.tasks)]  # not origins: paths vary by install
    return hashlib.sha256(repr((asdict(plan.corpus), tasks)).encode()).hexdigest()[:12]


def _load(model: str, log):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return hf_model, tokenizer


@contextmanager
def _progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        yield progress
