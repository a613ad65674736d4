"""The plain-data contract shared by compiler and runtime: expressions, locations, JSON codec."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagec import serial
from sagec.expr import EvaluationError, evaluate, free_variables, truth
from sagec.locations import CrossSection, Location
from sagec.spec import (
    Answer,
    AnswerSide,
    Arith,
    BoolOp,
    Compare,
    Const,
    Not,
    Origin,
    Position,
    Split,
    Task,
    Template,
    ValueList,
    Var,
    Variable,
)


def test_expressions_evaluate_like_python():
    env = {"io": "Mary", "s": "John", "t": 7}
    assert truth(Compare("!=", Var("io"), Var("s")), env)
    assert not truth(Compare("==", Var("io"), Var("s")), env)
    assert truth(Compare("in", Var("io"), ValueList(("Mary", "Anna"))), env)
    assert truth(Compare("not in", Var("s"), ValueList(("Mary",))), env)
    assert evaluate(Arith("//", Var("t"), Const(2)), env) == 3
    assert evaluate(Arith("%", Var("t"), Const(4)), env) == 3
    both = BoolOp("and", (Compare(">", Var("t"), Const(5)), Not(Compare("==", Var("io"), Const("Bob")))))
    assert truth(both, env)
    assert truth(BoolOp("or", (Compare("<", Var("t"), Const(0)), Compare(">=", Var("t"), Const(7)))), env)


def test_expression_errors_are_named_not_raw():
    with pytest.raises(EvaluationError, match="unknown variable 'x'"):
        evaluate(Var("x"), {})
    with pytest.raises(EvaluationError, match="cannot compare"):
        evaluate(Compare("<", Const("a"), Const(1)), {})
    with pytest.raises(EvaluationError, match="cannot compute"):
        evaluate(Arith("//", Const(1), Const(0)), {})


def test_free_variables_in_order():
    e = BoolOp("and", (Compare("!=", Var("s"), Var("io")), Not(Compare(">", Arith("+", Var("t"), Const(1)), Var("s")))))
    assert list(free_variables(e)) == ["s", "io", "t", "s"]


@pytest.mark.parametrize("text", ["resid_pre 0", "resid_mid 3", "resid_post 11", "attn_out 2", "mlp_out 5", "head 3.1", "head_z 0.7"])
def test_locations_round_trip_through_text(text):
    assert str(Location.parse(text)) == text


@pytest.mark.parametrize(
    "text, message",
    [("head 3", "needs a head"), ("mlp_out 3.1", "takes no head"), ("resid 3", "unknown component"), ("resid_pre", "not a location")],
)
def test_bad_locations_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        Location.parse(text)


def _task() -> Task:
    o = Origin("specs/x.sage", 3, 5)
    return Task(
        name="ioi",
        variables=(Variable("io", ("Mary", "John"), o), Variable("t", (1, 2, 3), o)),
        constraints=(Compare("!=", Var("io"), Const("Bob")),),
        templates=(Template("When {{io}} \"quoted\" ü", Compare("==", Var("t"), Const(1)), o),),
        answer=Answer(AnswerSide(" {{io}}"), AnswerSide("{{d}}", "d", (0, 1, 2), Compare(">", Var("d"), Var("t"))), o),
        counterfactual=("io",),
        positions=(Position("end", "last", None, 1, "last", 0, o), Position("s2", "var", "io", 2, "first", -1, o)),
        attributes=("io",),
        split=Split(("t",), 0.75, 0.25, o),
        samples=64,
        seed=3,
        origin=o,
    )


def test_spec_json_round_trip_is_exact():
    task = _task()
    back = serial.from_data(serial.to_data(task))
    assert back == task and isinstance(back.variables, tuple)
    assert task.answer.is_set and not task.answer.answer.is_set
    cs = CrossSection(Location.parse("head 3.1"), "end")
    assert serial.from_data(serial.to_data(cs)) == cs


def test_canonical_json_is_stable_and_rejects_nan():
    assert serial.canonical_json(_task()) == serial.canonical_json(_task())
    with pytest.raises(ValueError):
        serial.canonical_json({"x": math.nan})


@given(st.recursive(st.one_of(st.integers(), st.text(), st.booleans(), st.none()), lambda c: st.lists(c, max_size=4), max_leaves=20))
def test_plain_data_round_trips(value):
    back = serial.from_data(serial.to_data(value))
    as_lists = serial.to_data(back)
    assert as_lists == serial.to_data(value)
