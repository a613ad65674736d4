"""Assignments for the sample pass (METHOD.md section 1): sampling, twins, the split.

A task's variables have finite domains and its constraints are expressions over them; an
assignment binds every variable plus the pseudo-variable `template`, the index of a template whose
guard holds. Assignments come from a randomised depth-first search that checks each constraint as
soon as its variables are bound: the search is complete (it finds an assignment whenever one
exists, so "no assignment" is a fact, not bad luck) and, drawing every value from a seeded
`random.Random`, deterministic in the seed on every platform. Each variable, in declaration
order, is uniform over the values consistent with those before it: exactly uniform over
assignments for symmetric constraints such as `s != io`, close to it for the others.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sagec.diagnostics import SpecError
from sagec.expr import EvaluationError, compiled, free_variables, reads
from sagec.fmt import quote
from sagec.names import TEMPLATE_VARIABLE
from sagec.spec import Arith, BoolOp, Compare, Const, Expr, Not, Task, Value, ValueList, Var

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


T = TypeVar("T")
Check = tuple[Callable[[Mapping[str, Value]], bool], frozenset[str]]
_RECENT: dict[str, list[tuple[tuple, Any]]] = {"checks": [], "applicable": []}


def _recent(kind: str, key: tuple, make: Callable[[], T]) -> T:
    """What `make` gives for `key`, kept for the last few keys of this kind. Keys compare by
    identity: a search runs per prompt and twin with the same task, and hashing a task costs more
    than the search."""
    table = _RECENT[kind]
    for known, value in table:
        if len(known) == len(key) and all(a is b for a, b in zip(known, key)):
            return value
    value = make()
    table[:] = [(key, value), *table[:3]]
    return value


def _checks(task: Task, constraints: Sequence[Expr], templates: bool) -> list[Check]:
    """Each constraint with the variables it reads; a template's guard is a constraint on `template`."""
    return _recent("checks", (task, constraints, templates), lambda: _make_checks(task, constraints, templates))


def _make_checks(task: Task, constraints: Sequence[Expr], templates: bool) -> list[Check]:
    out = [(holds(task, c), reads(c)) for c in constraints]
    if not templates:
        return out
    guard_vars = frozenset(n for t in task.templates if t.guard is not None for n in reads(t.guard))

    def guard_holds(env: Mapping[str, Value]) -> bool:
        guard = task.templates[env[TEMPLATE_VARIABLE]].guard
        return guard is None or holds(task, guard)(env)

    out.append((guard_holds, guard_vars | {TEMPLATE_VARIABLE}))
    return out


def holds(task: Task, expr: Expr) -> Callable[[Mapping[str, Value]], bool]:
    evaluate = compiled(expr)

    def check(env: Mapping[str, Value]) -> bool:
        try:
            return bool(evaluate(env))
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

    try:
        found = extend(len(fixed))
    finally:
        extend = None  # type: ignore[assignment]  # it calls itself through this name: a reference cycle per search
    return {n: env[n] for n in domains} if found else None


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


# --- printing expressions in messages ---------------------------------------------------------


def show(expr: Expr) -> str:
    """An expression as the spec writes it (strings in double quotes), parenthesising compound
    operands rather than tracking precedence: messages need to be unambiguous, not minimal."""
    match expr:
        case Var(name):
            return name
        case Const(value):
            return quote(value) if isinstance(value, str) else str(value)
        case ValueList(items):
            return "[" + ", ".join(show(Const(i)) for i in items) + "]"
        case Compare(op, left, right):
            return f"{_operand(left, Compare, BoolOp, Not)} {op} {_operand(right, Compare, BoolOp, Not)}"
        case Arith(op, left, right):
            return f"{_operand(left, Arith, Compare, BoolOp, Not)} {op} {_operand(right, Arith, Compare, BoolOp, Not)}"
        case BoolOp(op, operands):
            return f" {op} ".join(_operand(o, BoolOp) for o in operands)
        case Not(operand):
            return f"not {_operand(operand, BoolOp)}"
    return repr(expr)


def _operand(expr: Expr, *compound: type) -> str:
    return f"({show(expr)})" if isinstance(expr, compound) else show(expr)


def show_env(env: Mapping[str, Value]) -> str:
    return ", ".join(f"{k} = {v!r}" for k, v in env.items())


def ordinal(n: int) -> str:
    if n == -1:
        return "last"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"



# --- counterfactual twins ----------------------------------------------------------------------

COUNTERFACTUAL = "counterfactual"


def twin_groups(task: Task, drawn: Sequence[tuple[Assignment, str]]) -> dict[str, list[Assignment | None]]:
    """Each kind of twin of every drawn assignment, aligned with `drawn`: "counterfactual" (the
    spec's resample rule, if it has one) and "twin:ATTR" per attribute (that attribute alone
    changed). Twins stay in their prompt's split. None where no twin exists (see `no_twin`)."""
    rules: list[tuple[str, tuple[str, ...], bool]] = []
    if task.counterfactual:
        rules.append((COUNTERFACTUAL, task.counterfactual, False))
    rules += [(f"twin:{a}", (a,), True) for a in task.attributes]
    domains = split_domains(task)
    out = {}
    for name, change, must_change in rules:
        rng = rng_for(task.seed, name)  # a stream per kind: adding an attribute moves no other twin
        out[name] = [twin(task, a, change, domains[split], rng, must_change) for a, split in drawn]
    return out


def no_twin(task: Task, name: str, assignment: Mapping[str, Value], split: str) -> SpecError:
    if name == COUNTERFACTUAL:
        return SpecError.at(
            task.origin,
            f"task {task.name}: `counterfactual resample {', '.join(task.counterfactual)}` finds no different assignment for {show_env(assignment)} within the constraints ({split} split)",
        )
    attr = name.removeprefix("twin:")
    origin = task.templates[int(assignment[attr])].origin if attr == TEMPLATE_VARIABLE else task.variable(attr).origin
    return SpecError.at(
        origin,
        f"task {task.name}: attribute {attr} cannot change alone in {show_env(assignment)}: no other value of it satisfies the constraints with the other variables kept",
    )



def twin(
    task: Task,
    original: Mapping[str, Value],
    change: Sequence[str],
    domains: Mapping[str, Sequence[Value]],
    rng: random.Random,
    must_change: bool,
) -> Assignment | None:
    """`original` with the variables in `change` redrawn and every other variable kept.

    With `must_change`, each changed variable takes a new value (an attribute twin); otherwise new
    values are only preferred (a resample), but the twin still differs somewhere. Unless `template`
    itself changes, the twin keeps its template when the guard still holds, and otherwise takes the
    template at the same rank among those that now apply: for templates written in parallel per
    order (ABB ones, then BAB ones), flipping the order lands on the parallel template.
    None when no such twin satisfies the constraints.
    """
    changing = set(change)
    keep_template = TEMPLATE_VARIABLE not in changing
    fixed = {n: v for n, v in original.items() if n not in changing and n != TEMPLATE_VARIABLE}

    def candidates(name: str, env: Mapping[str, Value]) -> list[Value]:
        if name == TEMPLATE_VARIABLE and keep_template:
            return _parallel_templates(task, original, env)
        fresh = [v for v in domains[name] if v != original[name]]
        rng.shuffle(fresh)
        return fresh if must_change else fresh + [original[name]]

    found = search(task, domains, fixed, candidates)
    if found is None or all(found[n] == original[n] for n in found):
        return None
    return found


def applicable(task: Task, env: Mapping[str, Value]) -> tuple[int, ...]:
    """The templates whose guards hold in `env`. Guards read a few variables (an order, a frame),
    and twins ask again and again, so the answer is kept per value of those variables."""
    names, known = _recent("applicable", (task,), lambda: (tuple(sorted({n for t in task.templates if t.guard is not None for n in reads(t.guard)})), {}))
    key = tuple(env.get(n, _UNBOUND) for n in names)
    if key not in known:
        known[key] = _applicable(task, env)
    return known[key]


_UNBOUND = object()


def _applicable(task: Task, env: Mapping[str, Value]) -> tuple[int, ...]:
    try:
        return tuple(i for i, t in enumerate(task.templates) if t.guard is None or compiled(t.guard)(env))
    except EvaluationError:
        for t in task.templates:  # `holds` names the guard that cannot be evaluated
            if t.guard is not None:
                holds(task, t.guard)(env)
        raise


def _parallel_templates(task: Task, original: Mapping[str, Value], env: Mapping[str, Value]) -> list[int]:
    now = applicable(task, env)
    index = int(original[TEMPLATE_VARIABLE])
    if index in now or not now:
        return [index] + [i for i in now if i != index]
    before = applicable(task, original)
    pick = now[before.index(index) % len(now)]
    return [pick] + [i for i in now if i != pick]


# --- the split ---------------------------------------------------------------------------------

SPLITS = ("train", "test")


def split_domains(task: Task) -> dict[str, dict[str, tuple[Value, ...]]]:
    """Per split, the domains its prompts draw from: each `split.by` variable's values are dealt
    to train or test (in proportion to the fractions, at least one each), so the two splits share
    no value of it. Without `by` both draw from the full domains: a plain random split.
    It depends on the seed and the domains only, not on `samples`: the zoo trains on more prompts
    of the same split, and must hold out the same values."""
    domains = domains_of(task)
    frac = train_fraction(task)
    rng = rng_for(task.seed, "split")
    out = {name: dict(domains) for name in SPLITS}
    for name in task.split.by:
        values = list(domains[name])
        if len(values) < 2:
            raise SpecError.at(task.split.origin, f"task {task.name}: cannot split by {name}: it has {len(values)} value(s), a split needs two")
        rng.shuffle(values)
        k = min(max(round(len(values) * frac), 1), len(values) - 1)
        train = set(values[:k])
        out["train"][name] = tuple(v for v in domains[name] if v in train)
        out["test"][name] = tuple(v for v in domains[name] if v not in train)
    return out


def train_fraction(task: Task) -> float:
    return task.split.train / (task.split.train + task.split.test)


def sample_split(task: Task) -> list[tuple[Assignment, str]]:
    """`task.samples` assignments with their split, train first.

    Every attribute value must occur in train (a mean code exists only for values seen there), so
    train starts with one prompt per attribute value, drawn with that value fixed; the rest are
    free draws, and train is shuffled so those first prompts are not grouped. A value that no
    train assignment can take is an error naming it."""
    n_train = round(task.samples * train_fraction(task))
    domains = split_domains(task)
    rng = rng_for(task.seed, "train")
    train: list[Assignment] = []
    for attr in task.attributes:
        seen = {a[attr] for a in train}
        for value in domains_of(task)[attr]:
            if value in seen:
                continue
            if value not in domains["train"][attr]:
                raise SpecError.at(task.split.origin, f"task {task.name}: attribute value {attr} = {value!r} cannot occur in the train split (split by {attr}?)")
            try:
                train.append(sample_one(task, domains["train"], rng, fixed={attr: value}))
            except SpecError as e:
                origin = task.variable(attr).origin if attr != TEMPLATE_VARIABLE else task.templates[int(value)].origin
                raise SpecError.at(origin, f"task {task.name}: attribute value {attr} = {value!r} never occurs in the train split: {_why(e)}") from None
    if len(train) > n_train:
        raise SpecError.at(
            task.origin,
            f"task {task.name}: the train split has {n_train} prompts, too few to show each of the {len(train)} attribute values once; raise `samples`",
        )
    train += [sample_one(task, domains["train"], rng, context=" in the train split") for _ in range(n_train - len(train))]
    rng.shuffle(train)
    test_rng = rng_for(task.seed, "test")
    test = [sample_one(task, domains["test"], test_rng, context=" in the test split") for _ in range(task.samples - n_train)]
    return [(a, "train") for a in train] + [(a, "test") for a in test]


def _why(error: SpecError) -> str:
    message = error.diagnostics[0].message
    return message.split(": ", 1)[1] if ": " in message else message
