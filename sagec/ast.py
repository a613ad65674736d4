"""The syntax tree of a .sage file: what was written, before any name is resolved.

Every node carries the `Span` it came from. Spans take no part in equality, so the formatter's
law `parse(print(tree)) == tree` compares structure only, and trees built by hand (tests,
hypothesis) need no positions. The checker (sagec/check.py) turns a tree into `sagec.spec.Spec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from sagec.spec import Origin, Value


@dataclass(frozen=True)
class Span:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    end_line: int
    end_column: int  # exclusive

    @property
    def origin(self) -> Origin:
        return Origin(self.file, self.line, self.column)


NOWHERE = Span("<unknown>", 1, 1, 1, 1)


def _span() -> Span:
    return field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True)
class Ident:
    """A name as written where it is used: a reference, a list item, an enumerated word."""

    name: str
    span: Span = _span()


@dataclass(frozen=True)
class Literal:
    """A string (escapes decoded) or an integer."""

    value: Value
    span: Span = _span()


@dataclass(frozen=True)
class Range:
    """`lo..hi`, both ends included."""

    lo: int
    hi: int
    span: Span = _span()


# --- expressions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    name: str
    span: Span = _span()


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Literal, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Binary:
    """Arithmetic (`+ - * // %`) or comparison (`== != < <= > >= in`, `not in`)."""

    op: str
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Logic:
    op: str  # "and" | "or"
    operands: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Negation:
    operand: Expr
    span: Span = _span()


Expr = Union[Ref, Literal, ListExpr, Binary, Logic, Negation]
Domain = Union[Ident, ListExpr, Range]  # a vocabulary name, an inline list, an integer range


# --- statements inside blocks ---------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    kind: Ident  # hub | path | gguf | zoo for models; sae_lens | path | zoo for SAEs
    args: tuple[Literal, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Setting:
    """`KEY word`: dtype, device, remote, method, verify, and an eval's `model` and `task`."""

    key: str
    value: Ident
    span: Span = _span()


@dataclass(frozen=True)
class Method:
    """A locate block's `method NAME [steps N]` (steps: integrated gradients' path points)."""

    value: Ident
    steps: int | None = None
    span: Span = _span()


@dataclass(frozen=True)
class BatchSize:
    value: int
    span: Span = _span()


@dataclass(frozen=True)
class Names:
    """`KEY a, b, c`: attributes, counterfactual (written `counterfactual resample`), components,
    positions, validate, score, accept (written `accept preprocessing`, in sae blocks)."""

    key: str
    names: tuple[Ident, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Var:
    name: Ident
    domain: Domain
    where: Expr | None
    span: Span = _span()


@dataclass(frozen=True)
class Template:
    guard: Expr | None
    text: Literal
    span: Span = _span()


@dataclass(frozen=True)
class AnswerSide:
    text: Literal
    binder: Ident | None = None
    domain: Domain | None = None
    where: Expr | None = None
    span: Span = _span()


@dataclass(frozen=True)
class Answer:
    answer: AnswerSide
    distractor: AnswerSide
    span: Span = _span()


@dataclass(frozen=True)
class PosLast:
    span: Span = _span()


@dataclass(frozen=True)
class PosFirst:
    span: Span = _span()


@dataclass(frozen=True)
class PosVar:
    """`[first|last] token of VAR [occurrence N|last]`; occurrence -1 is the last one."""

    variable: Ident
    token: str = "first"
    occurrence: int = 1
    span: Span = _span()


@dataclass(frozen=True)
class PosRef:
    """Another position of the same task, usually with an offset: `s1 + 1`."""

    name: Ident
    span: Span = _span()


PosBase = Union[PosLast, PosFirst, PosVar, PosRef]


@dataclass(frozen=True)
class Position:
    name: Ident
    base: PosBase
    offset: int = 0
    span: Span = _span()


@dataclass(frozen=True)
class Split:
    by: tuple[Ident, ...]
    train: float
    test: float
    span: Span = _span()


@dataclass(frozen=True)
class Samples:
    count: int
    seed: int | None
    span: Span = _span()


@dataclass(frozen=True)
class Hook:
    location: Literal
    span: Span = _span()


@dataclass(frozen=True)
class Layers:
    layers: Range | tuple[int, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Select:
    kind: str  # "top" | "fraction"
    value: float
    per_family: bool = False  # `select top K per family`: each family's top K, not K in total
    span: Span = _span()


@dataclass(frozen=True)
class SaeRef:
    """`res` (a single SAE), `res[*]`, `res[2]` or `res[0..2]` (family members)."""

    name: Ident
    index: str | int | Range | None = None  # "*" for every member
    span: Span = _span()


@dataclass(frozen=True)
class Saes:
    refs: tuple[SaeRef, ...]
    reconstruct: Ident | None
    span: Span = _span()


@dataclass(frozen=True)
class Baseline:
    """One trivial basis to score beside the SAEs: `pca`, `neurons`, `random`, or `pca 8`."""

    name: Ident
    components: int | None = None  # `pca K`: keep the first K principal directions
    span: Span = _span()


@dataclass(frozen=True)
class Baselines:
    items: tuple[Baseline, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Report:
    out_dir: Literal
    formats: tuple[Ident, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Corpus:
    path: Literal
    span: Span = _span()


@dataclass(frozen=True)
class Locate:
    body: tuple[Method | Setting | Names | Layers | Select, ...]
    span: Span = _span()


@dataclass(frozen=True)
class GroundTruth:
    body: tuple[Setting | Names, ...]
    span: Span = _span()


# --- top-level declarations -----------------------------------------------------------------


@dataclass(frozen=True)
class Include:
    path: Literal
    span: Span = _span()


@dataclass(frozen=True)
class Model:
    name: Ident
    body: tuple[Source | Setting | BatchSize, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Vocab:
    """Inline (`values`) or read from a file next to the spec (`file`)."""

    name: Ident
    values: tuple[Literal, ...] | None
    file: Literal | None
    span: Span = _span()


TaskStmt = Union[Var, Template, Answer, Names, Position, Split, Samples]


@dataclass(frozen=True)
class Task:
    name: Ident
    body: tuple[TaskStmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Family:
    """`[l] for l in 0..3`: the bracketed index and the loop variable must be the same name."""

    index: Ident
    binder: Ident
    range: Range
    span: Span = _span()


@dataclass(frozen=True)
class Sae:
    name: Ident
    family: Family | None
    body: tuple[Source | Hook | Names, ...]
    span: Span = _span()


EvalStmt = Union[Setting, Locate, GroundTruth, Saes, Baselines, Names, Report, Corpus]


@dataclass(frozen=True)
class Eval:
    name: Ident
    body: tuple[EvalStmt, ...]
    span: Span = _span()


Decl = Union[Include, Model, Vocab, Task, Sae, Eval]


@dataclass(frozen=True)
class Comment:
    line: int
    column: int
    text: str  # including the leading '#'


@dataclass(frozen=True)
class Module:
    items: tuple[Decl, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
    file: str = field(default="<unknown>", compare=False)
