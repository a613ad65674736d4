"""The sample pass (METHOD.md section 1): assignments, rendering, answers.

A task's variables have finite domains and its constraints are expressions over them; an
assignment binds every variable plus the pseudo-variable `template`, the index of a template whose
guard holds. Assignments come from a randomised depth-first search that checks each constraint as
soon as its variables are bound: the search is complete (it finds an assignment whenever one
exists, so "no assignment" is a fact, not bad luck) and, drawing every value from a seeded
`random.Random`, deterministic in the seed on every platform.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from sagec.diagnostics import SpecError
from sagec.expr import EvaluationError, free_variables, truth
from sagec.names import TEMPLATE_VARIABLE
from sagec.spec import AnswerSide, Arith, BoolOp, Compare, Const, Expr, Not, Origin, Task, Value, ValueList, Var

Assignment = dict[str, Value]
# Orders the candidate values of one variable, given the values bound so far.
Candidates = Callable[[str, Mapping[str, Value]], Sequence[Value]]

# A search that visits this many nodes without finding an assignment is reported as unsatisfiable
# in practice: constraints that tight would make sampling unbearably slow anyway.
MAX_STEPS = 200_000


def rng_for(seed: int, purpose: str) -> random.Random:
    """One independent stream per purpose, so adding an attribute does not reshuffle the prompts.
    String seeds go through sha512 in `random.Random`, which is stable across platforms."""
    return random.Random(f"sagec:{seed}:{purpose}")


# --- constraints ------------------------------------------------------------------------------


class _Exhausted(Exception):
    pass


def domains_of(task: Task) -> dict[str, tuple[Value, ...]]:
    """Every variable's domain, `template` last (its guard reads the other variables)."""
    out: dict[str, tuple[Value, ...]] = {v.name: v.domain for v in task.variables}
    out[TEMPLATE_VARIABLE] = tuple(range(len(task.templates)))
    return out


def _checks(task: Task, constraints: Sequence[Expr], templates: bool) -> list[tuple[Callable[[Mapping[str, Value]], bool], frozenset[str]]]:
    """Each constraint with the variables it reads; a template's guard is a constraint on `template`."""
    out = [(_holds(task, c), frozenset(free_variables(c))) for c in constraints]
    if not templates:
        return out
    guard_vars = frozenset(n for t in task.templates if t.guard is not None for n in free_variables(t.guard))

    def guard_holds(env: Mapping[str, Value]) -> bool:
        guard = task.templates[env[TEMPLATE_VARIABLE]].guard
        return guard is None or _holds(task, guard)(env)

    out.append((guard_holds, guard_vars | {TEMPLATE_VARIABLE}))
    return out


def _holds(task: Task, expr: Expr) -> Callable[[Mapping[str, Value]], bool]:
    def check(env: Mapping[str, Value]) -> bool:
        try:
            return truth(expr, env)
        except EvaluationError as e:
            raise SpecError.at(task.origin, f"in task {task.name}, `{show(expr)}` cannot be evaluated: {e}") from None

    return check


def search(
    task: Task,
    domains: Mapping[str, Sequence[Value]],
    fixed: Mapping[str, Value],
    candidates: Candidates,
    constraints: Sequence[Expr] | None = None,
    templates: bool = True,
) -> Assignment | None:
    """The first assignment (in the candidates' order) that extends `fixed` and satisfies every
    constraint and the chosen template's guard; None if there is none. With `templates` False,
    `domains` has no `template` and guards are not consulted."""
    constraints = task.constraints if constraints is None else constraints
    free = [n for n in domains if n not in fixed]
    order = list(fixed) + free
    rank = {n: i for i, n in enumerate(order)}
    due: list[list[Callable[[Mapping[str, Value]], bool]]] = [[] for _ in order]
    upfront = []
    for check, names in _checks(task, constraints, templates):
        if not names <= rank.keys():
            continue  # reads `template`, which this search does not bind
        last = max((rank[n] for n in names), default=-1)
        if last < len(fixed):
            upfront.append(check)
        else:
            due[last].append(check)
    env: Assignment = dict(fixed)
    if not all(check(env) for check in upfront):
        return None
    steps = 0

    def extend(i: int) -> bool:
        nonlocal steps
        if i == len(order):
            return True
        name = order[i]
        for value in candidates(name, env):
            steps += 1
            if steps > MAX_STEPS:
                raise _Exhausted
            env[name] = value
            if all(check(env) for check in due[i]) and extend(i + 1):
                return True
        env.pop(name, None)
        return False

    if not extend(len(fixed)):
        return None
    return {n: env[n] for n in domains}


def shuffled(domains: Mapping[str, Sequence[Value]], rng: random.Random) -> Candidates:
    def candidates(name: str, _env: Mapping[str, Value]) -> list[Value]:
        values = list(domains[name])
        rng.shuffle(values)
        return values

    return candidates


def sample_one(task: Task, domains: Mapping[str, Sequence[Value]], rng: random.Random, fixed: Mapping[str, Value] = {}, context: str = "") -> Assignment:
    try:
        found = search(task, domains, fixed, shuffled(domains, rng))
    except _Exhausted:
        raise SpecError.at(task.origin, f"task {task.name}: no assignment satisfying the constraints found in {MAX_STEPS} steps{context}") from None
    if found is None:
        raise unsatisfiable(task, domains, fixed, context)
    return found


def sample_assignments(task: Task, n: int, seed: int) -> list[Assignment]:
    """`n` assignments satisfying the task's constraints, each with the `template` it renders
    through. Independent draws (repeats are possible when the domains are small)."""
    domains = domains_of(task)
    rng = rng_for(seed, "sample")
    return [sample_one(task, domains, rng) for _ in range(n)]


def unsatisfiable(task: Task, domains: Mapping[str, Sequence[Value]], fixed: Mapping[str, Value] = {}, context: str = "") -> SpecError:
    """Name the constraint that empties the space: the first one that, with those before it,
    leaves no assignment. A `where` clause lands on the variable it was written on, the last
    declared of those it reads, so that variable's line is where the error points."""
    plain = {n: d for n, d in domains.items() if n != TEMPLATE_VARIABLE}
    in_order: Candidates = lambda name, _env: plain[name]  # noqa: E731
    fix = "".join(f", {n} = {v!r}" for n, v in fixed.items() if n != TEMPLATE_VARIABLE)
    for k in range(1, len(task.constraints) + 1):
        try:
            found = search(task, plain, fixed, in_order, task.constraints[:k], templates=False)
        except _Exhausted:
            break
        if found is None:
            culprit = task.constraints[k - 1]
            names = set(free_variables(culprit))
            declared = [v for v in task.variables if v.name in names]
            origin = declared[-1].origin if declared else task.origin
            alone = "" if k == 1 else " together with the constraints before it"
            return SpecError.at(origin, f"task {task.name}: no assignment satisfies `{show(culprit)}`{alone}{fix}{context}")
    guarded = [t for t in task.templates if t.guard is not None]
    origin = guarded[0].origin if guarded else task.origin
    return SpecError.at(origin, f"task {task.name}: no template's guard holds for any assignment satisfying the constraints{fix}{context}")


# --- rendering --------------------------------------------------------------------------------

# Sandboxed: a spec is data a user may have been sent, and a template must not reach Python.
# StrictUndefined: a misspelt variable is an error, never an empty string in a prompt.
_JINJA = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=None)
def _compiled(text: str) -> jinja2.Template:
    return _JINJA.from_string(text)


def render_text(text: str, env: Mapping[str, Value], origin: Origin, what: str) -> str:
    try:
        return _compiled(text).render(dict(env))
    except jinja2.TemplateError as e:
        raise SpecError.at(origin, f"{what} {text!r} cannot be rendered with {_show_env(env)}: {e}") from None


def render(task: Task, assignment: Mapping[str, Value]) -> str:
    """The prompt text of an assignment, through the template it names."""
    index = int(assignment[TEMPLATE_VARIABLE])
    template = task.templates[index]
    return render_text(template.text, assignment, template.origin, f"template {index}")


def render_side(task: Task, side: AnswerSide, assignment: Mapping[str, Value], what: str) -> tuple[str, ...]:
    origin = task.answer.origin
    if not side.is_set:
        return (render_text(side.template, assignment, origin, what),)
    out = []
    for value in side.domain:
        env = {**assignment, side.binder: value}
        if side.where is None or _holds(task, side.where)(env):
            out.append(render_text(side.template, env, origin, what))
    if not out:
        raise SpecError.at(origin, f"the {what} set {side.template!r} is empty for {_show_env(assignment)}")
    return tuple(out)


def render_answer(task: Task, assignment: Mapping[str, Value]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(answer strings, distractor strings): one each for a single-token answer, the filtered
    renderings over the binder's domain for a token set."""
    return (
        render_side(task, task.answer.answer, assignment, "answer"),
        render_side(task, task.answer.distractor, assignment, "distractor"),
    )


# --- printing expressions in messages ---------------------------------------------------------


def show(expr: Expr) -> str:
    match expr:
        case Var(name):
            return name
        case Const(value):
            return repr(value) if isinstance(value, str) else str(value)
        case ValueList(items):
            return "[" + ", ".join(show(Const(i)) for i in items) + "]"
        case Arith(op, left, right) | Compare(op, left, right):
            return f"{show(left)} {op} {show(right)}"
        case BoolOp(op, operands):
            return f" {op} ".join(f"({show(o)})" if isinstance(o, BoolOp) else show(o) for o in operands)
        case Not(operand):
            return f"not ({show(operand)})"
    return repr(expr)


def _show_env(env: Mapping[str, Value]) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in env.items())


def ordinal(n: int) -> str:
    if n == -1:
        return "last"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"

