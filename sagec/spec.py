"""The checked, resolved spec: names bound, vocabularies inlined, families expanded.

This is what the checker produces from the AST and what lowering turns into a Plan. It is the
contract between the front end and everything after it, so it holds plain data only (str, int,
float, bool, None and tuples of them, nested frozen dataclasses) and round-trips exactly through
`sagec.serial`. Every construct keeps an `Origin`, so an error found late (a multi-token answer
while sampling prompts, an SAE that does not fit the model) can still name the spec line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

Value = Union[str, int]


@dataclass(frozen=True)
class Origin:
    """Where a construct was written: shown as `file:line:col` in errors raised after checking."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


# --- expressions: constraints, template guards and answer-set filters -------------------------


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Const:
    value: Value


@dataclass(frozen=True)
class ValueList:
    """A literal list, the right-hand side of `in` / `not in`."""

    items: tuple[Value, ...]


@dataclass(frozen=True)
class Arith:
    op: str  # one of sagec.names.ARITH_OPS
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Compare:
    op: str  # one of sagec.names.COMPARE_OPS
    left: Expr
    right: Expr


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    operand: Expr


Expr = Union[Var, Const, ValueList, Arith, Compare, BoolOp, Not]


# --- tasks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """A task variable with a finite domain; `where` constraints live on the Task."""

    name: str
    domain: tuple[Value, ...]
    origin: Origin


@dataclass(frozen=True)
class Template:
    """A Jinja2 prompt template; it applies to an assignment when its guard holds (None: always)."""

    text: str
    guard: Expr | None
    origin: Origin


@dataclass(frozen=True)
class AnswerSide:
    """One side of the metric: a single token, or a set of tokens for probability-mass metrics.

    Single: `binder` is None and `template` renders to exactly one token.
    Set: `template` is rendered once per value of `binder` over `domain` for which `where` holds
    (evaluated with the task's variables bound too); each rendering must be one token.
    """

    template: str
    binder: str | None = None
    domain: tuple[Value, ...] = ()
    where: Expr | None = None

    @property
    def is_set(self) -> bool:
        return self.binder is not None


@dataclass(frozen=True)
class Answer:
    answer: AnswerSide
    distractor: AnswerSide
    origin: Origin

    @property
    def is_set(self) -> bool:
        """Token sets use log-probability mass difference; single tokens use logit difference."""
        return self.answer.is_set or self.distractor.is_set


@dataclass(frozen=True)
class Position:
    """A named token position, resolved per prompt after tokenization.

    kind "last": the prompt's final token.  kind "first": its first token.
    kind "var": an occurrence of `variable`'s rendered value in the prompt text; `occurrence`
    counts from 1 (-1 is the last occurrence) and `token` picks the first or last token of it.
    `offset` then moves that many tokens right (positive) or left (negative).
    """

    name: str
    kind: str  # "last" | "first" | "var"
    variable: str | None
    occurrence: int
    token: str  # "first" | "last"
    offset: int
    origin: Origin


@dataclass(frozen=True)
class Split:
    """Train/test split over prompts, disjoint in the values of `by` (empty: plain random split).

    `by` names non-attribute variables, or the pseudo-variable `template` (the template index).
    """

    by: tuple[str, ...]
    train: float
    test: float
    origin: Origin


@dataclass(frozen=True)
class Task:
    name: str
    variables: tuple[Variable, ...]
    constraints: tuple[Expr, ...]  # all must hold; per-variable `where` clauses land here
    templates: tuple[Template, ...]
    answer: Answer
    counterfactual: tuple[str, ...]  # variables the location-search twin resamples
    positions: tuple[Position, ...]
    attributes: tuple[str, ...]  # the ground-truth feature variables
    split: Split
    samples: int
    seed: int
    origin: Origin

    def variable(self, name: str) -> Variable:
        return next(v for v in self.variables if v.name == name)

    def position(self, name: str) -> Position:
        return next(p for p in self.positions if p.name == name)


# --- models and SAEs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """`source` is one of sagec.names.MODEL_SOURCES; `ref` is the hub id, the absolute path of a
    folder or .gguf file, or the zoo name."""

    name: str
    source: str
    ref: str
    dtype: str
    device: str
    remote: str | None  # None (local) | "ndif" | "simulate"
    batch_size: int | None
    origin: Origin


@dataclass(frozen=True)
class Sae:
    """One SAE, after family expansion (`res[2]` is its own Sae named "res[2]").

    source "sae_lens": `release` and `sae_id`.  source "path": `ref` is an absolute folder.
    source "zoo": `ref` is a zoo SAE name.  `hook` overrides the location read from the SAE's own
    config, in the location vocabulary (e.g. "resid_pre 2"). `accept_preprocessing`: TransformerLens
    options the SAE was trained under that sagec cannot reproduce, evaluated all the same
    (`accept preprocessing fold_value_biases`; runtime/saes/preprocessing.py).
    """

    name: str
    source: str
    ref: str | None
    release: str | None
    sae_id: str | None
    hook: str | None
    origin: Origin
    accept_preprocessing: tuple[str, ...] = ()


# --- evaluations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Locate:
    method: str  # sagec.names.LOCATE_METHODS
    components: tuple[str, ...]  # sagec.names.COMPONENTS
    layers: tuple[int, ...] | None  # None: every layer of the model
    positions: tuple[str, ...]  # names of task positions
    top: int | None  # select the top k (in total, or per family) ...
    fraction: float | None  # ... or those above this fraction of a family's total |attribution|
    verify: bool  # run real activation patching on the selection and a margin below it
    origin: Origin
    steps: int | None = None  # `method integrated`: points on the path from the twin to the clean activations
    per_family: bool = False  # `select top k per family`: the union of each twin family's top k


@dataclass(frozen=True)
class GroundTruth:
    method: str  # sagec.names.DICTIONARY_METHODS
    validate: tuple[str, ...]  # sagec.names.VALIDATIONS
    origin: Origin


@dataclass(frozen=True)
class SaeUse:
    sae: str  # the expanded Sae name
    reconstruct: str  # sagec.names.RECONSTRUCTIONS


@dataclass(frozen=True)
class Baseline:
    """A trivial basis scored beside the SAEs (METHOD.md section 7): `kind` is one of
    sagec.names.BASELINES; `components` keeps the first K directions (`pca K`), None all."""

    kind: str
    components: int | None = None

    @property
    def name(self) -> str:
        """How results and the report name it: `pca`, `neurons`, `random`, `pca 8`."""
        return self.kind if self.components is None else f"{self.kind} {self.components}"


@dataclass(frozen=True)
class Report:
    out_dir: str  # absolute, resolved against the spec's folder
    formats: tuple[str, ...]  # sagec.names.REPORT_FORMATS


@dataclass(frozen=True)
class Eval:
    name: str
    model: str
    task: str
    locate: Locate
    ground_truth: GroundTruth
    saes: tuple[SaeUse, ...]
    score: tuple[str, ...]  # sagec.names.METRICS
    report: Report
    origin: Origin
    baselines: tuple[Baseline, ...] = ()
    # The text file the text metrics (sagec.names.TEXT_METRICS) run on, absolute; None: the
    # model's zoo corpus for zoo models, else the task's own prompts (METHOD.md section 8).
    corpus: str | None = None


@dataclass(frozen=True)
class Spec:
    """A whole checked program, includes merged in."""

    file: str
    models: tuple[Model, ...]
    tasks: tuple[Task, ...]
    saes: tuple[Sae, ...]
    evals: tuple[Eval, ...]

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)

    def task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)

    def sae(self, name: str) -> Sae:
        return next(s for s in self.saes if s.name == name)

    def eval(self, name: str) -> Eval:
        return next(e for e in self.evals if e.name == name)
