"""Evaluating the small expression language of constraints, guards and answer-set filters.

Pure Python on purpose: the checker, the sampler and lowering all evaluate the same trees, and
none of them may pull in torch.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping

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


def evaluate(expr: Expr, env: Mapping[str, Value]) -> Value | bool | tuple[Value, ...]:
    match expr:
        case Var(name):
            if name not in env:
                raise EvaluationError(f"unknown variable {name!r}")
            return env[name]
        case Const(value):
            return value
        case ValueList(items):
            return items
        case Arith(op, left, right):
            try:
                return _ARITH[op](evaluate(left, env), evaluate(right, env))
            except (TypeError, ZeroDivisionError) as e:
                raise EvaluationError(f"cannot compute {op}: {e}") from None
        case Compare(op, left, right):
            try:
                return bool(_COMPARE[op](evaluate(left, env), evaluate(right, env)))
            except TypeError as e:
                raise EvaluationError(f"cannot compare with {op}: {e}") from None
        case BoolOp("and", operands):
            return all(truth(o, env) for o in operands)
        case BoolOp("or", operands):
            return any(truth(o, env) for o in operands)
        case Not(operand):
            return not truth(operand, env)
    raise EvaluationError(f"not an expression: {expr!r}")


def truth(expr: Expr, env: Mapping[str, Value]) -> bool:
    return bool(evaluate(expr, env))


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
