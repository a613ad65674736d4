"""The sample pass (METHOD.md section 1): from a checked task and a tokenizer to a prompt set.

Assignments and their twins (runtime/task/assignments.py) are rendered through sandboxed Jinja2
(runtime/task/render.py), tokenized, and their named positions resolved through the tokenizer's
offsets mapping; the whole set stores as safetensors plus JSON. Every problem a user can fix (a
multi-token answer, a position that is not in the prompt) is a `SpecError` naming the value, the
template and the spec line; all of them are collected before raising, one per problem.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from runtime.task.assignments import COUNTERFACTUAL, SPLITS, Assignment, no_twin, ordinal, sample_assignments, sample_split, show_env, twin_groups
from runtime.task.render import render, render_answer
from sagec.diagnostics import Diagnostic, SpecError
from sagec.names import TEMPLATE_VARIABLE
from sagec.spec import Position, Task, Value

__all__ = ["Prompt", "PromptSet", "build_prompt_set", "pad", "render", "render_answer", "sample_assignments"]

ARTIFACT_VERSION = 1

# --- the prompt set ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One tokenized prompt. `ids` are unpadded (special tokens as the tokenizer adds them);
    `positions` maps each named position to a token index into `ids`; `answer_ids` and
    `distractor_ids` have one entry for a single-token answer, one per rendering for a set."""

    text: str
    ids: tuple[int, ...]
    positions: Mapping[str, int]
    answers: tuple[str, ...]
    answer_ids: tuple[int, ...]
    distractors: tuple[str, ...]
    distractor_ids: tuple[int, ...]
    assignment: Mapping[str, Value]  # every variable, and `template`
    split: str  # "train" | "test"

    @property
    def template(self) -> int:
        return int(self.assignment[TEMPLATE_VARIABLE])


@dataclass(frozen=True)
class PromptSet:
    """A task's prompts and their twins, aligned by index: `counterfactual[i]` and
    `twins[attr][i]` are twins of `prompts[i]` (same split). `counterfactual` is empty when the
    task has no counterfactual rule. Train prompts come first."""

    task: str
    seed: int
    position_names: tuple[str, ...]
    attributes: tuple[str, ...]
    prompts: tuple[Prompt, ...]
    counterfactual: tuple[Prompt, ...]
    twins: Mapping[str, tuple[Prompt, ...]]

    def groups(self) -> dict[str, tuple[Prompt, ...]]:
        """Every aligned list by name: "clean", "counterfactual" (if any), then one per attribute."""
        out = {"clean": self.prompts}
        if self.counterfactual:
            out[COUNTERFACTUAL] = self.counterfactual
        out.update({f"twin:{a}": self.twins[a] for a in self.attributes})
        return out

    def indices(self, split: str) -> tuple[int, ...]:
        return tuple(i for i, p in enumerate(self.prompts) if p.split == split)

    def summary(self, examples: int = 1) -> dict[str, Any]:
        """Counts per split and per template, and the first prompts of each template."""
        per_template = Counter(p.template for p in self.prompts)
        shown: list[dict[str, Any]] = []
        for index in sorted(per_template):
            for p in [p for p in self.prompts if p.template == index][:examples]:
                shown.append({"template": index, "split": p.split, "text": p.text, "answers": list(p.answers), "distractors": list(p.distractors), "positions": dict(p.positions)})
        return {
            "task": self.task,
            "seed": self.seed,
            "prompts": len(self.prompts),
            "splits": {s: len(self.indices(s)) for s in SPLITS},
            "templates": {str(i): per_template[i] for i in sorted(per_template)},
            "twins": [g for g in self.groups() if g != "clean"],
            "max_tokens": max((len(p.ids) for ps in self.groups().values() for p in ps), default=0),
            "examples": shown,
        }

    # Token ids, positions and answer ids go to safetensors (ragged lists as flat values plus
    # lengths); texts, strings and assignments to JSON, whose str/int values come back exactly.
    def to_artifact(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {}
        groups: dict[str, Any] = {}
        for name, prompts in self.groups().items():
            for field in ("ids", "answer_ids", "distractor_ids"):
                flat, lengths = _ragged([getattr(p, field) for p in prompts])
                tensors[f"{name}.{field}"], tensors[f"{name}.{field}.lengths"] = flat, lengths
            tensors[f"{name}.positions"] = torch.tensor(
                [[p.positions[n] for n in self.position_names] for p in prompts], dtype=torch.int64
            ).reshape(len(prompts), len(self.position_names))
            groups[name] = {
                "texts": [p.text for p in prompts],
                "answers": [list(p.answers) for p in prompts],
                "distractors": [list(p.distractors) for p in prompts],
                "assignments": [[[k, v] for k, v in p.assignment.items()] for p in prompts],
                "splits": [p.split for p in prompts],
            }
        meta = {
            "version": ARTIFACT_VERSION,
            "task": self.task,
            "seed": self.seed,
            "position_names": list(self.position_names),
            "attributes": list(self.attributes),
            "groups": groups,
        }
        return tensors, meta

    @classmethod
    def from_artifact(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> PromptSet:
        if meta.get("version") != ARTIFACT_VERSION:
            raise ValueError(f"prompt set artifact version {meta.get('version')!r}, expected {ARTIFACT_VERSION}")
        names = tuple(meta["position_names"])
        groups: dict[str, tuple[Prompt, ...]] = {}
        for name, g in meta["groups"].items():
            ids, answer_ids, distractor_ids = (_unragged(tensors[f"{name}.{f}"], tensors[f"{name}.{f}.lengths"]) for f in ("ids", "answer_ids", "distractor_ids"))
            positions = tensors[f"{name}.positions"].tolist()
            groups[name] = tuple(
                Prompt(
                    text=g["texts"][i],
                    ids=ids[i],
                    positions=dict(zip(names, positions[i])),
                    answers=tuple(g["answers"][i]),
                    answer_ids=answer_ids[i],
                    distractors=tuple(g["distractors"][i]),
                    distractor_ids=distractor_ids[i],
                    assignment={k: v for k, v in g["assignments"][i]},
                    split=g["splits"][i],
                )
                for i in range(len(g["texts"]))
            )
        attributes = tuple(meta["attributes"])
        return cls(
            task=meta["task"],
            seed=meta["seed"],
            position_names=names,
            attributes=attributes,
            prompts=groups["clean"],
            counterfactual=groups.get(COUNTERFACTUAL, ()),
            twins={a: groups[f"twin:{a}"] for a in attributes},
        )

    def meta_json(self) -> str:
        """The JSON half of the artifact, canonical (sorted keys), for byte-exact storage."""
        return json.dumps(self.to_artifact()[1], sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _ragged(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    flat = torch.tensor([x for row in rows for x in row], dtype=torch.int64)
    return flat, torch.tensor([len(row) for row in rows], dtype=torch.int64)


def _unragged(flat: torch.Tensor, lengths: torch.Tensor) -> list[tuple[int, ...]]:
    values, out, start = flat.tolist(), [], 0
    for n in lengths.tolist():
        out.append(tuple(values[start : start + n]))
        start += n
    return out


def pad(prompts: Sequence[Prompt], pad_id: int, side: str = "left") -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """A batch: ids (B, T), attention mask (B, T), and each named position as (B,) indices into
    the padded rows (shifted by the padding when it is on the left)."""
    width = max(len(p.ids) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(prompts), width), dtype=torch.int64)
    shift = []
    for row, p in enumerate(prompts):
        start = width - len(p.ids) if side == "left" else 0
        ids[row, start : start + len(p.ids)] = torch.tensor(p.ids, dtype=torch.int64)
        mask[row, start : start + len(p.ids)] = 1
        shift.append(start)
    names = prompts[0].positions.keys() if prompts else ()
    positions = {n: torch.tensor([p.positions[n] + s for p, s in zip(prompts, shift)], dtype=torch.int64) for n in names}
    return ids, mask, positions


# --- building ---------------------------------------------------------------------------------


class _Problems:
    """Diagnostics collected while building, one per distinct problem (not one per prompt)."""

    LIMIT = 20

    def __init__(self, task: Task) -> None:
        self.task = task
        self.found: dict[Any, Diagnostic] = {}
        self.dropped: set[Any] = set()

    def add(self, key: Any, error: SpecError) -> None:
        if key in self.found:
            return
        if len(self.found) < self.LIMIT:
            self.found[key] = error.diagnostics[0]
        else:
            self.dropped.add(key)

    def raise_any(self) -> None:
        if self.dropped:
            more = Diagnostic.at(self.task.origin, f"task {self.task.name}: {len(self.dropped)} more problems of the kinds below are not shown")
            raise SpecError([*self.found.values(), more])
        if self.found:
            raise SpecError(self.found.values())


class _Tokens:
    """The tokenizer, with what the build needs from it: ids with character spans, and the one id
    of an answer string."""

    def __init__(self, tokenizer: Any):
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("build_prompt_set needs a fast (Rust-backed) tokenizer: positions are found through its offsets mapping")
        self.tokenizer = tokenizer
        self._single: dict[str, list[int]] = {}

    def encode(self, text: str, special: bool = True) -> tuple[list[int], list[tuple[int, int]]]:
        return self.encode_many([text], special)[text]

    def encode_many(self, texts: Sequence[str], special: bool = True) -> dict[str, tuple[list[int], list[tuple[int, int]]]]:
        """Each distinct text's ids and character spans, from one batched call (twins repeat
        many texts, and the Rust tokenizer encodes a batch in parallel)."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            return {}
        enc = self.tokenizer(unique, add_special_tokens=special, return_offsets_mapping=True)
        return {text: (list(ids), _trimmed(text, offsets)) for text, ids, offsets in zip(unique, enc["input_ids"], enc["offset_mapping"])}

    def answer_ids(self, text: str, answer: str) -> list[int]:
        """The tokens of `answer` as a continuation of the prompt `text`. Alone first (cached);
        in context when alone it is not one token, since sentencepiece tokenizers prefix a space
        marker to a string that starts a text but not to one that continues it."""
        if answer not in self._single:
            self._single[answer] = self.encode(answer, special=False)[0]
        alone = self._single[answer]
        if len(alone) == 1:
            return alone
        prefix = self.encode(text, special=False)[0]
        whole = self.encode(text + answer, special=False)[0]
        if whole[: len(prefix)] == prefix and len(whole) == len(prefix) + 1:
            return whole[len(prefix) :]
        return alone

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([i]) for i in ids]


def _trimmed(text: str, offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans without leading whitespace: byte-level BPE tokens such as " Mary" may or may not
    include the space in their offsets, depending on the tokenizer's trim_offsets."""
    spans = []
    for start, end in offsets:
        while start < end and text[start].isspace():
            start += 1
        spans.append((start, end))
    return spans


def _values(assignment: Mapping[str, Value]) -> str:
    return show_env({k: v for k, v in assignment.items() if k != TEMPLATE_VARIABLE})


def _where(task: Task, assignment: Mapping[str, Value]) -> str:
    index = int(assignment[TEMPLATE_VARIABLE])
    return f"template {index} (line {task.templates[index].origin.line})"


def _resolve(task: Task, position: Position, text: str, ids: Sequence[int], spans: Sequence[tuple[int, int]], assignment: Mapping[str, Value]) -> int:
    where = _where(task, assignment)
    if position.kind == "last":
        index = len(ids) - 1
    elif position.kind == "first":
        # The first token of the text itself, after any beginning-of-sequence token.
        index = next((i for i, (s, e) in enumerate(spans) if e > s), 0)
    else:
        var = position.variable
        value = str(assignment[var])
        found = _occurrences(value, text, spans)
        if not found:
            inside = value and value in text
            how = "occurs only inside longer tokens of" if inside else "does not occur in"
            raise SpecError.at(position.origin, f"position {position.name}: {var} = {value!r} {how} the prompt {text!r} from {where}")
        n = position.occurrence
        if n > len(found) or n == 0 or n < -len(found):
            times = {1: "once", 2: "twice"}.get(len(found), f"{len(found)} times")
            raise SpecError.at(
                position.origin,
                f"position {position.name}: there is no {ordinal(n)} occurrence of {var} = {value!r} in the prompt {text!r} from {where}; it occurs {times}",
            )
        covering = found[n - 1] if n > 0 else found[n]
        index = covering[0] if position.token == "first" else covering[-1]
    moved = index + position.offset
    if not 0 <= moved < len(ids):
        raise SpecError.at(
            position.origin,
            f"position {position.name}: token {index} moved by {position.offset:+d} falls outside the {len(ids)} tokens of the prompt {text!r} from {where}",
        )
    return moved


def _occurrences(value: str, text: str, spans: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The tokens covering each occurrence of `value` in `text` that starts and ends on token
    boundaries (so "Ann" is not found inside a token "Anna"), in order of appearance.

    Whole words come first: a BPE tokenizer may split "Mary" as "Ma" + "ry", which would make a
    value "Ma" occur inside it. Only when the value never stands as a word (a year's "32" in
    "1732") do occurrences inside words count."""
    if not value:
        return []
    words, inside = [], []
    start = text.find(value)
    while start != -1:
        end = start + len(value)
        splits, covering = False, []
        for i, (s, e) in enumerate(spans):  # one pass: is a token cut, and which tokens cover it
            if s < start < e or s < end < e:
                splits = True
                break
            if s < end and e > start and e > s:
                covering.append(i)
        if not splits and covering:
            glued = (value[0].isalnum() and start > 0 and text[start - 1].isalnum()) or (value[-1].isalnum() and end < len(text) and text[end].isalnum())
            (inside if glued else words).append(covering)
        start = text.find(value, start + 1)
    return words or inside


@dataclass(frozen=True)
class _Draft:
    """A rendered assignment, waiting for its tokens."""

    assignment: Assignment
    split: str
    text: str
    answers: tuple[str, ...]
    distractors: tuple[str, ...]


def _draft(task: Task, assignment: Assignment, split: str, problems: _Problems) -> _Draft | None:
    try:
        return _Draft(assignment, split, render(task, assignment), *render_answer(task, assignment))
    except SpecError as e:
        d = e.diagnostics[0]
        problems.add(("render", d.file, d.line), e)  # one per template or answer line
        return None


def _prompt(task: Task, tokens: _Tokens, draft: _Draft, encoded: tuple[list[int], list[tuple[int, int]]], problems: _Problems) -> Prompt | None:
    assignment, text, answers, distractors = draft.assignment, draft.text, draft.answers, draft.distractors
    ids, spans = encoded
    positions = {}
    for position in task.positions:
        try:
            positions[position.name] = _resolve(task, position, text, ids, spans, assignment)
        except SpecError as e:
            # A position missing from a template is one problem, whatever the values; a value
            # hidden inside a longer token is a problem of that value.
            value = str(assignment[position.variable]) if "inside longer tokens" in str(e) and position.variable else None
            problems.add(("position", position.name, assignment[TEMPLATE_VARIABLE], value), e)
    side_ids: dict[str, list[int]] = {"answer": [], "distractor": []}
    for what, strings in (("answer", answers), ("distractor", distractors)):
        for s in strings:
            got = tokens.answer_ids(text, s)
            if len(got) == 1 and got[0] == tokens.tokenizer.unk_token_id:
                problems.add(
                    (what, s),
                    SpecError.at(task.answer.origin, f"{what} {s!r} (for {_values(assignment)}, {_where(task, assignment)}) is not in the tokenizer's vocabulary: it encodes to the unknown token"),
                )
            elif len(got) != 1:
                pieces = " + ".join(repr(p) for p in tokens.pieces(got)) or "nothing"
                problems.add(
                    (what, s),
                    SpecError.at(
                        task.answer.origin,
                        f"{what} {s!r} (for {_values(assignment)}, {_where(task, assignment)}) is {len(got)} tokens, {pieces}; each {what} must be exactly one token",
                        hint="choose values that are a single token for this model's tokenizer",
                    ),
                )
            else:
                side_ids[what].append(got[0])
    if len(positions) < len(task.positions) or len(side_ids["answer"]) < len(answers) or len(side_ids["distractor"]) < len(distractors):
        return None
    return Prompt(
        text=text,
        ids=tuple(ids),
        positions=positions,
        answers=answers,
        answer_ids=tuple(side_ids["answer"]),
        distractors=distractors,
        distractor_ids=tuple(side_ids["distractor"]),
        assignment=dict(assignment),
        split=draft.split,
    )


def build_prompt_set(task: Task, tokenizer: Any) -> PromptSet:
    """The task's prompt set for this tokenizer: `task.samples` prompts split train/test, each
    with its counterfactual twin and one twin per attribute. Byte-for-byte deterministic in
    `task.seed`. Raises one SpecError listing every problem found."""
    tokens = _Tokens(tokenizer)
    problems = _Problems(task)
    drawn = sample_split(task)
    drafts: dict[str, list[_Draft | None]] = {"clean": [_draft(task, a, s, problems) for a, s in drawn]}
    for name, twins in twin_groups(task, drawn).items():
        group: list[_Draft | None] = []
        for other, (assignment, split) in zip(twins, drawn):
            if other is None:
                problems.add((name,), no_twin(task, name, assignment, split))
            group.append(_draft(task, other, split, problems) if other is not None else None)
        drafts[name] = group
    encoded = tokens.encode_many([d.text for group in drafts.values() for d in group if d is not None])
    built = {name: [_prompt(task, tokens, d, encoded[d.text], problems) if d is not None else None for d in group] for name, group in drafts.items()}
    problems.raise_any()
    done = {name: tuple(p for p in group if p is not None) for name, group in built.items()}
    return PromptSet(
        task=task.name,
        seed=task.seed,
        position_names=tuple(p.name for p in task.positions),
        attributes=task.attributes,
        prompts=done["clean"],
        counterfactual=done.get(COUNTERFACTUAL, ()),
        twins={a: done[f"twin:{a}"] for a in task.attributes},
    )

