"""The text zoo SAEs are trained on, and the residual-stream activations over it.

Everything here is produced offline, by the project itself:
- task text: prompts of the model's zoo tasks (runtime/zoo/tasks.py) from their train splits, each
  followed by its answer, rendered by the prompt machinery (runtime/task/assignments.py and
  runtime/task/prompts.py);
- the model's own text: continuations the model samples (temperature 1, top-k 50, seeded) from
  varied short starts: the first one to four words of task prompts, and, for a model whose
  tokenizer knows them, generic openings ("Once upon a time", "The city of", ...).
- where the plan asks for them (tiny-induction), random sequences of the vocabulary's words
  followed by their repeat: the rows runtime/zoo/tiny.py teaches copying with, here drawn from
  every word, held-out templates' words included.
The mix keeps the SAE's inputs on the task's distribution (where SAGE scores it) without being
only that distribution, as an SAE trained on a broad corpus would be.

Activations are read with forward hooks on the decoder layers named by the architecture tables
(runtime/model/architectures.py): a layer's input is `resid_pre L`, its output `resid_post L`. Every
token but each text's first is kept: the first token (Gemma's <bos>, or the first word) is an
attention sink with an outsized norm, which would dominate the reconstruction loss, and no task
position is ever there. One forward per batch serves every requested location, and it stops after
the deepest layer needed, so no logits are ever computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from runtime.model.architectures import family_of
from runtime.task.assignments import sample_split
from runtime.task.prompts import render, render_answer
from sagec.locations import Location
from sagec.spec import Task

GENERIC_STARTS = (
    "Once upon a time", "The city of", "In the morning", "My favourite", "Scientists have found that",
    "The best way to", "Yesterday I", "The history of", "She said that", "In 1990,", "There was a",
    "The weather today", "Our school", "He went to the", "I think that", "The book is about",
)
RESIDUAL = ("resid_pre", "resid_post")


@dataclass(frozen=True)
class CorpusRecipe:
    prompts: int  # task prompts, spread over the zoo tasks
    generated: int  # sampled continuations
    new_tokens: int  # length of each continuation
    seed: int = 0
    batch_size: int = 32
    copy_rows: int = 0  # random word sequences and their repeat, as runtime/zoo/tiny.py trains on
    # Every text starts with the tokenizer's special tokens (Gemma's <bos>), as the model's
    # prompts do: the model is run as it was trained, and the first token left out of the
    # activations is then the BOS, whose residual norm (~1e5 in Gemma-3) would swamp an SAE.
    bos: bool = False


def task_texts(tasks: Sequence[Task], n: int) -> list[str]:
    """About `n` train-split prompts with their answers, spread evenly over `tasks`."""
    out = []
    for task in tasks:
        per = -(-n // len(tasks))
        frac = task.split.train / (task.split.train + task.split.test)
        sized = dataclasses.replace(task, samples=max(task.samples, round(per / frac) + 1))
        train = [a for a, split in sample_split(sized) if split == "train"][:per]
        out += [render(task, a) + render_answer(task, a)[0][0] for a in train]
    return out


def _known(tokenizer, text: str) -> bool:
    unk = tokenizer.unk_token_id
    return unk is None or unk not in tokenizer(text, add_special_tokens=False).input_ids


def build_corpus(hf_model, tokenizer, recipe: CorpusRecipe, tasks: Sequence[Task], progress=None) -> list[list[int]]:
    """Token-id lists: prompts of `tasks` with answers, then the model's own continuations."""
    texts = task_texts(tasks, recipe.prompts)
    rng = random.Random(f"sagec-zoo-corpus:{recipe.seed}")
    starts = [s for s in GENERIC_STARTS if _known(tokenizer, s)]
    for text in texts:
        words = text.split()
        starts.append(" ".join(words[: rng.randint(1, min(4, len(words)))]))
    starts = [rng.choice(starts) for _ in range(recipe.generated)]
    rows = [tokenizer(t, add_special_tokens=recipe.bos).input_ids for t in texts]
    torch.manual_seed(recipe.seed)  # `generate` samples from the global generator
    for i in range(0, len(starts), recipe.batch_size):
        chunk = starts[i : i + recipe.batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=recipe.bos)
        with torch.no_grad():  # generate asks for the last position's logits alone (logits_to_keep=1)
            out = hf_model.generate(**enc, max_new_tokens=recipe.new_tokens, do_sample=True, top_k=50, temperature=1.0,
                                    pad_token_id=tokenizer.pad_token_id)
        for row, mask in zip(out, enc.attention_mask):
            ids = row[int((mask == 0).sum()) :].tolist()  # drop the left padding
            rows.append(_until_pad(ids, tokenizer.pad_token_id, len(mask) - int((mask == 0).sum())))
        if progress is not None:
            progress(len(chunk))
    if recipe.copy_rows:
        from runtime.zoo.tiny import copy_rows

        specials = set(tokenizer.all_special_ids)
        words = [i for i in sorted(tokenizer.get_vocab().values()) if i not in specials]
        rows += [r.ids for r in copy_rows(words, recipe.copy_rows, random.Random(f"sagec-zoo-corpus-copy:{recipe.seed}"))]
    return [r for r in rows if len(r) > 1]


def _until_pad(ids: list[int], pad: int | None, prompt_len: int) -> list[int]:
    """A generated row cut where generation stopped (pad or end-of-text filling the rest)."""
    for j in range(prompt_len, len(ids)):
        if ids[j] == pad:
            return ids[:j]
    return ids


@torch.no_grad()
def residual_activations(hf_model, rows: Sequence[Sequence[int]], locations: Iterable[Location], pad_id: int,
                         batch_size: int = 32, progress=None) -> dict[Location, torch.Tensor]:
    """(N, d_model) activations at each residual location over every token of `rows` but the first."""
    from runtime.model.forward import Reached, pad_left

    locations = tuple(dict.fromkeys(locations))
    for loc in locations:
        if loc.component not in RESIDUAL:
            raise ValueError(f"zoo SAEs read the residual stream; {loc} is not one of {', '.join(RESIDUAL)}")
    layers = hf_model.get_submodule(family_of(hf_model.config).layers)
    deepest = max(loc.layer for loc in locations)
    found: dict[Location, list[torch.Tensor]] = {loc: [] for loc in locations}
    current: dict[Location, torch.Tensor] = {}

    def hook(layer: int):
        def read(module, args, kwargs, output):
            pre = args[0] if args else kwargs["hidden_states"]
            post = output[0] if isinstance(output, tuple) else output
            for loc in locations:
                if loc.layer == layer:
                    current[loc] = pre if loc.component == "resid_pre" else post
            if layer == deepest:
                raise Reached

        return read

    handles = [layers[i].register_forward_hook(hook(i), with_kwargs=True) for i in sorted({l.layer for l in locations})]
    try:
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # little padding per batch
        for i in range(0, len(order), batch_size):
            batch = [rows[j] for j in order[i : i + batch_size]]
            padded = pad_left(batch, pad_id)
            with contextlib.suppress(Reached):
                hf_model(input_ids=padded.input_ids, attention_mask=padded.attention_mask, position_ids=padded.position_ids)
            keep = padded.attention_mask.bool()
            keep[torch.arange(len(batch)), padded.offsets] = False  # each text's first token
            for loc in locations:
                found[loc].append(current[loc][keep].float().clone())
            if progress is not None:
                progress(len(batch))
    finally:
        for h in handles:
            h.remove()
    return {loc: torch.cat(parts) for loc, parts in found.items()}
