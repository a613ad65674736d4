"""The tasks the zoo models are trained on, as checked `sagec.spec.Task`s.

Two sources:
- IOI, written here in Python: tiny-ioi and the SmolLM2 SAE corpus were built from it before the
  library had shared task files, and a rewrite would change what they were trained on.
- the task library `specs/tasks/*.sage`, the very files the specs in specs/ include, read with
  the compiler, so a zoo model is trained on the task its spec measures (`task(name)`).
The prompt machinery (runtime/task/assignments.py, runtime/task/prompts.py) samples, splits and renders
both exactly as it does a spec's tasks. The values are single tokens for SmolLM2-135M as well
(shared/STACK.md section 7), so a spec can run the same task on a zoo model and the real one.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sagec.spec import Answer, AnswerSide, BoolOp, Compare, Const, Origin, Position, Split, Task, Template, Var, Variable

_ORIGIN = Origin(str(Path(__file__)), 1, 1)

NAMES = ("Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma",
         "David", "Anna", "Paul", "Lisa", "Mark", "Kate", "Peter", "Laura")
PLACES = ("store", "park", "school", "garden", "station", "office",
          "restaurant", "hospital", "library", "market", "beach", "museum")
OBJECTS = ("drink", "book", "ball", "ring", "bone", "apple", "letter", "key")

# Sentence frames with A and B the two names in order and S the repeated one. A frame is a
# variable of its own (not just a template index) so the split can hold out whole frames, both
# orders of each, and the test measures generalisation to sentences never seen in training.
IOI_FRAMES = (
    "When {A} and {B} went to the {{place}}, {S} gave a {{object}} to",
    "After {A} and {B} went to the {{place}}, {S} gave a {{object}} to",
    "Then, {A} and {B} had a long argument. Afterwards {S} said to",
    "While {A} and {B} were working at the {{place}}, {S} gave a {{object}} to",
    "Then, {A} and {B} went to the {{place}}. {S} gave a {{object}} to",
    "When {A} and {B} got a {{object}} at the {{place}}, {S} decided to give it to",
    "After {A} and {B} had a long day at the {{place}}, {S} gave a {{object}} to",
    "Then, {A} and {B} were working at the {{place}}. {S} handed the {{object}} to",
)
_ORDERS = {"ABB": ("{{io}}", "{{s}}"), "BAB": ("{{s}}", "{{io}}")}


def _ioi_templates() -> tuple[Template, ...]:
    out = []
    for frame, text in enumerate(IOI_FRAMES):
        for order, (a, b) in _ORDERS.items():
            guard = BoolOp("and", (Compare("==", Var("order"), Const(order)), Compare("==", Var("frame"), Const(frame))))
            out.append(Template(text.replace("{A}", a).replace("{B}", b).replace("{S}", "{{s}}"), guard, _ORIGIN))
    return tuple(out)


def _position(name: str, variable: str | None, occurrence: int = 1) -> Position:
    kind = "last" if variable is None else "var"
    return Position(name, kind, variable, occurrence, "first", 0, _ORIGIN)


IOI = Task(
    name="ioi",
    variables=(
        Variable("io", NAMES, _ORIGIN),
        Variable("s", NAMES, _ORIGIN),
        Variable("order", tuple(_ORDERS), _ORIGIN),
        Variable("frame", tuple(range(len(IOI_FRAMES))), _ORIGIN),
        Variable("place", PLACES, _ORIGIN),
        Variable("object", OBJECTS, _ORIGIN),
    ),
    constraints=(Compare("!=", Var("s"), Var("io")),),
    templates=_ioi_templates(),
    answer=Answer(AnswerSide(" {{io}}"), AnswerSide(" {{s}}"), _ORIGIN),
    counterfactual=("io", "s"),
    positions=(_position("io", "io"), _position("s1", "s"), _position("s2", "s", -1), _position("end", None)),
    attributes=("io", "s", "order"),
    # Test prompts use places and sentence frames that no training prompt used.
    split=Split(("place", "frame"), 0.75, 0.25, _ORIGIN),
    samples=512,
    seed=0,
    origin=_ORIGIN,
)

TASKS: dict[str, Task] = {t.name: t for t in (IOI,)}

# The task library, beside the package in a source checkout (`pip install -e .`, as the README
# says); only rebuilding a zoo model needs it, loading one does not.
LIBRARY = Path(__file__).resolve().parents[2] / "specs" / "tasks"


@functools.cache
def library() -> dict[str, Task]:
    """The tasks of specs/tasks/*.sage by name."""
    import sagec

    if not LIBRARY.is_dir():
        raise FileNotFoundError(f"the task library {LIBRARY} is missing: rebuilding a zoo model needs a source checkout of sagec")
    return {t.name: t for path in sorted(LIBRARY.glob("*.sage")) for t in sagec.load_spec(str(path)).tasks}


def task(name: str) -> Task:
    """A zoo task by name: IOI, or a task of the library."""
    if name in TASKS:
        return TASKS[name]
    found = library()
    if name not in found:
        from runtime.zoo.names import unknown

        raise KeyError(unknown("zoo task", name, [*TASKS, *found]))
    return found[name]
