"""Evaluating the small expression language of constraints, guards and answer-set filters.

Pure Python on purpose: the checker, the sampler and lowering all evaluate the same trees, and
none of them may pull in torch.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from sagec.spec import Arith, BoolOp, Compare, Const, Expr, Not, Value, ValueList, Var

_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}
_ARITH = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
    "%": operator.mod,
}


class EvaluationError(ValueError):
    """An expression could not be evaluated (unbound name, comparing a string with a number)."""


Evaluator = Callable[[Mapping[str, Value]], "Value | bool | tuple[Value, ...]"]
T = TypeVar("T")
# Keyed by identity (the entry keeps its expression alive): hashing a tree costs as much as
# evaluating it.
_COMPILED: dict[int, tuple[Expr, Evaluator]] = {}
_READS: dict[int, tuple[Expr, frozenset[str]]] = {}
_CACHE_LIMIT = 4096


def evaluate(expr: Expr, env: Mapping[str, Value]) -> Value | bool | tuple[Value, ...]:
    return compiled(expr)(env)


def truth(expr: Expr, env: Mapping[str, Value]) -> bool:
    return bool(evaluate(expr, env))


def compiled(expr: Expr) -> Evaluator:
    """The expression as a function of the environment, built once per expression object: the
    sampler checks the same few constraints and guards hundreds of thousands of times."""
    return _once(_COMPILED, expr, _compile)


def reads(expr: Expr) -> frozenset[str]:
    """The variables an expression reads, worked out once per expression object."""
    return _once(_READS, expr, lambda e: frozenset(free_variables(e)))


def _once(table: dict[int, tuple[Expr, T]], expr: Expr, make: Callable[[Expr], T]) -> T:
    hit = table.get(id(expr))
    if hit is not None and hit[0] is expr:
        return hit[1]
    if len(table) >= _CACHE_LIMIT:
        table.clear()
    value = make(expr)
    table[id(expr)] = (expr, value)
    return value


def _compile(expr: Expr) -> Evaluator:
    match expr:
        case Var(name):
            def var(env: Mapping[str, Value]) -> Value:
                if name not in env:
                    raise EvaluationError(f"unknown variable {name!r}")
                return env[name]

            return var
        case Const(value):
            return lambda env: value
        case ValueList(items):
            return lambda env: items
        case Arith(op, left, right):
            arith, lhs, rhs = _ARITH[op], _compile(left), _compile(right)

            def compute(env: Mapping[str, Value]) -> Value:
                try:
                    return arith(lhs(env), rhs(env))
                except (TypeError, ZeroDivisionError) as e:
                    raise EvaluationError(f"cannot compute {op}: {e}") from None

            return compute
        case Compare(op, left, right):
            compare, lhs, rhs = _COMPARE[op], _compile(left), _compile(right)

            def test(env: Mapping[str, Value]) -> bool:
                try:
                    return bool(compare(lhs(env), rhs(env)))
                except TypeError as e:
                    raise EvaluationError(f"cannot compare with {op}: {e}") from None

            return test
        case BoolOp("and", operands):
            parts = tuple(_compile(o) for o in operands)

            def conjunction(env: Mapping[str, Value]) -> bool:
                for part in parts:
                    if not part(env):
                        return False
                return True

            return conjunction
        case BoolOp("or", operands):
            parts = tuple(_compile(o) for o in operands)

            def disjunction(env: Mapping[str, Value]) -> bool:
                for part in parts:
                    if part(env):
                        return True
                return False

            return disjunction
        case Not(operand):
            inner = _compile(operand)
            return lambda env: not inner(env)
    raise EvaluationError(f"not an expression: {expr!r}")


def free_variables(expr: Expr) -> Iterator[str]:
    """Every variable name an expression reads, in order of appearance (with repeats)."""
    match expr:
        case Var(name):
            yield name
        case Arith(_, left, right) | Compare(_, left, right):
            yield from free_variables(left)
            yield from free_variables(right)
        case BoolOp(_, operands):
            for o in operands:
                yield from free_variables(o)
        case Not(operand):
            yield from free_variables(operand)
