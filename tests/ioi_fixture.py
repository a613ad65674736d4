"""The IOI task of the prompt tests as a checked spec, importable without torch (a subprocess
test re-derives its assignments under another hash seed)."""

from __future__ import annotations

import dataclasses

from sagec.spec import Answer, AnswerSide, Compare, Const, Origin, Position, Split, Task, Template, Var, Variable

NAMES = ("Mary", "John", "Alice", "Bob", "Tom", "Sarah")
PLACES = ("store", "park", "school", "garden")
WORDS = ["When", "and", "went", "to", "the", "gave", "a", "drink", ",", "Then", "said"]


def at(line: int) -> Origin:
    return Origin("ioi.sage", line, 3)


def ioi(**changes) -> Task:
    task = Task(
        name="ioi",
        variables=(
            Variable("io", NAMES, at(3)),
            Variable("s", NAMES, at(4)),
            Variable("place", PLACES, at(5)),
            Variable("order", ("ABB", "BAB"), at(6)),
        ),
        constraints=(Compare("!=", Var("s"), Var("io")),),
        templates=(
            Template("When {{io}} and {{s}} went to the {{place}}, {{s}} gave a drink to", Compare("==", Var("order"), Const("ABB")), at(7)),
            Template("When {{s}} and {{io}} went to the {{place}}, {{s}} gave a drink to", Compare("==", Var("order"), Const("BAB")), at(8)),
        ),
        answer=Answer(AnswerSide(" {{io}}"), AnswerSide(" {{s}}"), at(9)),
        counterfactual=("io", "s"),
        positions=(
            Position("io", "var", "io", 1, "first", 0, at(11)),
            Position("s1p", "var", "s", 1, "last", 1, at(12)),
            Position("s2", "var", "s", -1, "last", 0, at(13)),
            Position("end", "last", None, 1, "last", 0, at(14)),
        ),
        attributes=("io", "s", "order"),
        split=Split(("place",), 0.5, 0.5, at(16)),
        samples=48,
        seed=0,
        origin=at(2),
    )
    return dataclasses.replace(task, **changes)


def fingerprint() -> str:
    import hashlib

    from runtime.task.assignments import sample_split, twin_groups
    from runtime.task.render import render

    task = ioi(split=Split(("place", "template"), 0.5, 0.5, at(16)), attributes=("io", "s"))
    drawn = sample_split(task)
    texts = [render(task, a) + s for a, s in drawn] + [render(task, t) for ts in twin_groups(task, drawn).values() for t in ts]
    return hashlib.sha256(repr(texts).encode()).hexdigest()
