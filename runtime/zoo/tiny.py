"""Tiny GPT-2-style zoo models: a word-level tokenizer and a small transformer trained on task text.

A recipe names the tasks and the shape; `train_tiny` is deterministic in the recipe (same
recipe, same machine, same weights). Training is next-token prediction on the rendered train
prompts followed by their answer, with the answer token weighted up, since that is the only
prediction the task measures; where a task accepts a set of answers (greater-than: any larger
tens digit) the continuation is one of them, drawn by a seeded generator. Every row is shifted
right by a random number of pad tokens, so the model does not care where a prompt starts:
batches left-padded by the runtime then score like prompts run alone.

The tokenizer is word-level, with digits split one per token and a space before a number kept
as a token of its own, as SmolLM2's tokenizer does, so a position counted in tokens (greater-than's
`end - 7`) means the same on both.

Success is asserted, not hoped for: after training, the task metric (runtime/task/metric.py) at the
final position must be > 0 on at least `MIN_ACCURACY` of each task's held-out test prompts
(values, templates or frames never seen in training, as the task's split says), or the build
fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from runtime.task.assignments import sample_split
from runtime.task.metric import task_metric
from runtime.task.prompts import render, render_answer
from runtime.zoo.tasks import task as zoo_task
from sagec.spec import Task

MIN_ACCURACY = 0.95
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
MAX_POSITIONS = 64
MAX_SHIFT = 12  # the largest random left shift of a training row
SCORED_PROMPTS = 512  # held-out prompts per task the build is judged on


@dataclass(frozen=True)
class TinyRecipe:
    name: str
    description: str
    tasks: tuple[str, ...]  # zoo task names (runtime.zoo.tasks.task)
    n_layer: int = 3
    n_embd: int = 64
    n_head: int = 4
    train_prompts: int = 8192  # per task
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    answer_weight: float = 4.0
    copy_rows: int = 0  # extra rows of repeated random word sequences (see `copy_rows`)
    seed: int = 0

    def task_objects(self) -> tuple[Task, ...]:
        return tuple(zoo_task(t) for t in self.tasks)


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str  # the continuation trained on: one of `answers`
    answers: tuple[str, ...]
    distractors: tuple[str, ...]


@dataclass(frozen=True)
class TaskScore:
    task: str
    prompts: int
    accuracy: float  # fraction of prompts with metric > 0
    mean_metric: float

    def passed(self) -> bool:
        return self.accuracy >= MIN_ACCURACY


# --- tokenizer --------------------------------------------------------------------------------

# Words and the single spaces before numbers are kept, other whitespace dropped; then
# punctuation and each digit become tokens of their own.
_PRE = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\S+| (?=[0-9])"), behavior="removed", invert=True),
                                pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)])
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")


def _words(text: str) -> list[str]:
    return [w for w, _ in _PRE.pre_tokenize_str(text)]


def vocabulary(tasks: Sequence[Task], texts: Sequence[str] = ()) -> list[str]:
    """Every word the tasks can render: template words, variable values, answers, and the words
    of `texts` (rendered prompts: words a template composes, like plurals, appear only there).
    Values of held-out places and frames are in it too; their embeddings never get trained."""
    words: set[str] = set(w for text in texts for w in _words(text))
    for task in tasks:
        for template in task.templates:
            words.update(_words(_JINJA.sub(" ", template.text)))
        for variable in task.variables:
            words.update(w for v in variable.domain if isinstance(v, str) for w in _words(v))
        for side in (task.answer.answer, task.answer.distractor):
            words.update(_words(_JINJA.sub(" ", side.template)))
            words.update(w for v in side.domain if isinstance(v, str) for w in _words(v))
    return list(SPECIALS) + sorted(words - set(SPECIALS))


def make_tokenizer(vocab: Sequence[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = _PRE
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces on decode
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="left", model_max_length=MAX_POSITIONS)


# --- data -------------------------------------------------------------------------------------


def examples(task: Task, split: str, n: int) -> list[Example]:
    """About `n` prompts of one split, sampled and rendered by the prompt machinery. The task's
    own seed fixes which places and frames are held out, so train and test never share them."""
    frac = task.split.train / (task.split.train + task.split.test)
    total = math.ceil(n / (frac if split == "train" else 1 - frac))
    sized = dataclasses.replace(task, samples=total)
    pick = random.Random(f"sagec-zoo-answer:{task.name}:{task.seed}")
    out = []
    for assignment, s in sample_split(sized):
        if s == split:
            answers, distractors = render_answer(task, assignment)
            out.append(Example(render(task, assignment), pick.choice(answers), tuple(answers), tuple(distractors)))
    return out[:n]


def _encode(tokenizer: PreTrainedTokenizerFast, ex: Example) -> list[int]:
    ids = tokenizer(ex.prompt + ex.answer, add_special_tokens=False).input_ids
    if tokenizer.unk_token_id in ids:
        raise ValueError(f"word outside the zoo vocabulary in {ex.prompt + ex.answer!r}")
    return ids


@dataclass(frozen=True)
class Row:
    ids: list[int]
    scored_from: int = 0  # the first token whose prediction the language-model loss counts


def _batch(rows: Sequence[Row], pad: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask, scored targets mask, answer column): each row shifted right by a
    random count of pads."""
    shifts = [rng.randrange(MAX_SHIFT + 1) for _ in rows]
    width = max(s + len(r.ids) for s, r in zip(shifts, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (s, r) in enumerate(zip(shifts, rows)):
        ids[i, s : s + len(r.ids)] = torch.tensor(r.ids)
        mask[i, s : s + len(r.ids)] = 1
        scored[i, s + r.scored_from : s + len(r.ids)] = True
    last = torch.tensor([s + len(r.ids) - 1 for s, r in zip(shifts, rows)])
    return ids, mask, scored, last


def copy_rows(words: Sequence[int], n: int, rng: random.Random) -> list[Row]:
    """`n` rows of a random word sequence followed by its repeat, cut off within the repeat; only
    the repeat is scored (the first pass is unpredictable noise).

    In-context copying (induction) is learned from repeats; the task prompts alone put the copied
    word at a few fixed distances, which a small model learns as positions that fail on held-out
    templates. Only words of the training prompts are drawn, so held-out templates stay unseen."""
    out = []
    for _ in range(n):
        seq = [rng.choice(words) for _ in range(rng.randint(4, 16))]
        out.append(Row(seq + seq[: rng.randint(2, len(seq))], scored_from=len(seq) + 1))
    return out


# --- training ---------------------------------------------------------------------------------


def train_tiny(recipe: TinyRecipe, out: Path, log=print) -> list[TaskScore]:
    """Train the recipe's model, check it solves every task on held-out prompts, save it to `out`
    (a `save_pretrained` folder with the tokenizer and a zoo.json of the scores)."""
    # One thread: the model is too small to gain from more, and a fixed thread count keeps the
    # floating-point reductions, so the weights, the same on every machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(recipe, out, log)
    finally:
        torch.set_num_threads(threads)


def _train(recipe: TinyRecipe, out: Path, log) -> list[TaskScore]:
    torch.manual_seed(recipe.seed)
    rng = random.Random(f"sagec-zoo:{recipe.name}:{recipe.seed}")
    tasks = recipe.task_objects()
    train = [ex for task in tasks for ex in examples(task, "train", recipe.train_prompts)]
    held_out = [ex for task in tasks for ex in examples(task, "test", SCORED_PROMPTS)]
    vocab = vocabulary(tasks, [ex.prompt + a for ex in train + held_out for a in ex.answers + ex.distractors])
    tokenizer = make_tokenizer(vocab)
    ids = {w: i for i, w in enumerate(vocab)}
    config = GPT2Config(vocab_size=len(vocab), n_positions=MAX_POSITIONS, n_embd=recipe.n_embd, n_layer=recipe.n_layer,
                        n_head=recipe.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=ids["<bos>"], eos_token_id=ids["<eos>"], pad_token_id=ids["<pad>"])
    model = GPT2LMHeadModel(config)
    rows = [Row(_encode(tokenizer, ex)) for ex in train]
    rows += copy_rows(sorted({i for r in rows for i in r.ids}), recipe.copy_rows, rng)
    rng.shuffle(rows)
    log(f"{recipe.name}: {sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {len(vocab)}, {len(rows)} training sequences")

    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    warmup = recipe.steps // 20
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / recipe.steps, 1.0))))
    model.train()
    start = time.time()
    cursor = 0
    for step in range(recipe.steps):
        if cursor + recipe.batch_size > len(rows):
            rng.shuffle(rows)
            cursor = 0
        batch, mask, scored, last = _batch(rows[cursor : cursor + recipe.batch_size], ids["<pad>"], rng)
        cursor += recipe.batch_size
        logits = model(input_ids=batch, attention_mask=mask).logits
        targets = batch[:, 1:].masked_fill(~scored[:, 1:], -100)
        lm = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten())
        row = torch.arange(len(batch))
        answer = torch.nn.functional.cross_entropy(logits[row, last - 1], batch[row, last])
        loss = lm + recipe.answer_weight * answer
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        if (step + 1) % 500 == 0 or step + 1 == recipe.steps:
            log(f"  step {step + 1}/{recipe.steps}: loss {lm.item():.3f} (answer {answer.item():.3f}), {time.time() - start:.0f} s")
    model.eval()

    scores = [score(model, tokenizer, task) for task in tasks]
    for s in scores:
        log(f"  {s.task}: metric > 0 on {s.accuracy:.1%} of {s.prompts} held-out test prompts (mean {s.mean_metric:.2f})")
    failed = [s for s in scores if not s.passed()]
    if failed:
        raise RuntimeError(f"{recipe.name} does not solve {', '.join(s.task for s in failed)} on held-out prompts "
                           f"(needs metric > 0 on {MIN_ACCURACY:.0%}); not saved")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {"recipe": dataclasses.asdict(recipe), "training_seconds": round(time.time() - start, 1),
            "scores": [dataclasses.asdict(s) for s in scores]}
    (out / "zoo.json").write_text(json.dumps(meta, indent=2) + "\n")
    return scores


# --- evaluation -------------------------------------------------------------------------------


@torch.no_grad()
def metric(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, batch: Sequence[Example]) -> torch.Tensor:
    """The task metric at each prompt's final token, the prompts left-padded into one batch as
    the runtime pads them."""
    enc = tokenizer([ex.prompt for ex in batch], return_tensors="pt", padding=True, add_special_tokens=False)
    logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[:, -1]
    return task_metric(logits, [[_single(tokenizer, a) for a in ex.answers] for ex in batch],
                       [[_single(tokenizer, d) for d in ex.distractors] for ex in batch])


def _single(tokenizer: PreTrainedTokenizerFast, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"answer {text!r} is not one known token of the zoo tokenizer")
    return ids[0]


def score(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, task: Task, n: int = SCORED_PROMPTS, batch_size: int = 128) -> TaskScore:
    """The task metric on `n` held-out test prompts."""
    test = examples(task, "test", n)
    values = torch.cat([metric(model, tokenizer, test[i : i + batch_size]) for i in range(0, len(test), batch_size)])
    return TaskScore(task.name, len(test), float((values > 0).float().mean()), float(values.mean()))
