"""The formatter's two laws over generated specs, and its treatment of comments and blank lines.

    parse(to_source(tree)) == tree          for every tree the strategies below generate
    fmt(fmt(text)) == fmt(text)             for every text that parses
"""

from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sagec import ast as A
from sagec.fmt import format_source, quote, to_source
from sagec.parse import keywords, parse

SPECS = Path(__file__).resolve().parent.parent / "specs"

# --- strategies for whole specs ---------------------------------------------------------------

_HEAD, _TAIL = "abcdefghijklmnopqrstuvwxyz_", "abcdefghijklmnopqrstuvwxyz_0123456789"
names = st.builds(str.__add__, st.sampled_from(_HEAD), st.text(_TAIL, max_size=6)).filter(lambda n: n not in keywords())
idents = names.map(A.Ident)
# any text at all: quotes, backslashes, newlines (triple-quoted), control and non-ASCII characters
texts = st.text(max_size=24)
small_ints = st.integers(-50, 50)
naturals = st.integers(0, 99)
fractions = st.floats(0, 10, allow_nan=False, allow_infinity=False)

literals = st.one_of(texts.map(A.Literal), small_ints.map(A.Literal))
strings = texts.map(A.Literal)
lists = st.lists(literals, max_size=4).map(lambda xs: A.ListExpr(tuple(xs)))
ranges = st.builds(A.Range, small_ints, small_ints)
domains = st.one_of(idents, lists, ranges)
name_lists = st.lists(idents, min_size=1, max_size=3).map(tuple)

ARITH = ["+", "-", "*", "//", "%"]
COMPARE = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]

exprs = st.recursive(
    st.one_of(names.map(A.Ref), literals, lists),
    lambda inner: st.one_of(
        st.builds(A.Binary, st.sampled_from(ARITH + COMPARE), inner, inner),
        st.builds(A.Logic, st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(A.Negation, inner),
    ),
    max_leaves=8,
)
maybe = st.none().__or__  # maybe(x): x or None


def setting(*keys: str):
    return st.builds(A.Setting, st.sampled_from(keys), idents)


def keyed_names(*keys: str):
    return st.builds(A.Names, st.sampled_from(keys), name_lists)


sources = st.builds(A.Source, idents, st.lists(strings, min_size=1, max_size=2).map(tuple))
models = st.builds(
    A.Model, idents, st.lists(st.one_of(sources, setting("dtype", "device", "remote"), naturals.map(A.BatchSize)), max_size=4).map(tuple)
)
vocabs = st.one_of(
    st.builds(A.Vocab, idents, st.lists(literals, max_size=5).map(tuple), st.none()),
    st.builds(A.Vocab, idents, st.none(), strings),
)
pos_bases = st.one_of(
    st.builds(A.PosLast),
    st.builds(A.PosFirst),
    st.builds(A.PosVar, idents, st.sampled_from(["first", "last"]), st.one_of(st.just(-1), st.integers(0, 4))),
    st.builds(A.PosRef, idents),
)
answer_sides = st.one_of(
    st.builds(A.AnswerSide, strings),
    st.builds(A.AnswerSide, strings, idents, domains, maybe(exprs)),
)
task_stmts = st.one_of(
    st.builds(A.Var, idents, domains, maybe(exprs)),
    st.builds(A.Template, maybe(exprs), strings),
    st.builds(A.Answer, answer_sides, answer_sides),
    keyed_names("attributes", "counterfactual"),
    st.builds(A.Position, idents, pos_bases, st.integers(-3, 3)),
    st.builds(A.Split, st.lists(idents, max_size=2).map(tuple), fractions, fractions),
    st.builds(A.Samples, naturals, maybe(naturals)),
)
tasks = st.builds(A.Task, idents, st.lists(task_stmts, max_size=8).map(tuple))
saes = st.builds(
    A.Sae,
    idents,
    maybe(st.builds(A.Family, idents, idents, ranges)),
    st.lists(st.one_of(sources, strings.map(A.Hook)), max_size=2).map(tuple),
)
locates = st.builds(
    A.Locate,
    st.lists(
        st.one_of(
            setting("verify"),
            st.builds(A.Method, idents, maybe(naturals)),
            keyed_names("components", "positions"),
            st.builds(A.Layers, st.one_of(ranges, st.lists(naturals, min_size=1, max_size=3).map(tuple))),
            st.builds(A.Select, st.just("top"), naturals, st.booleans()),
            st.builds(A.Select, st.just("fraction"), fractions),
        ),
        max_size=5,
    ).map(tuple),
)
ground_truths = st.builds(A.GroundTruth, st.lists(st.one_of(setting("method"), keyed_names("validate")), max_size=2).map(tuple))
sae_refs = st.builds(A.SaeRef, idents, st.one_of(st.none(), st.just("*"), naturals, ranges))
eval_stmts = st.one_of(
    setting("model", "task"),
    locates,
    ground_truths,
    st.builds(A.Saes, st.lists(sae_refs, min_size=1, max_size=3).map(tuple), maybe(idents)),
    keyed_names("score"),
    st.builds(A.Baselines, st.lists(st.builds(A.Baseline, idents, maybe(naturals)), min_size=1, max_size=4).map(tuple)),
    st.builds(A.Report, strings, st.lists(idents, max_size=2).map(tuple)),
)
evals = st.builds(A.Eval, idents, st.lists(eval_stmts, max_size=6).map(tuple))
includes = st.builds(A.Include, strings)
modules = st.lists(st.one_of(includes, models, vocabs, tasks, saes, evals), max_size=6).map(lambda items: A.Module(tuple(items)))

# Generating whole specs dominates the cost; 80 of them per law keeps the file near ten seconds.
LAWS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the laws ---------------------------------------------------------------------------------


@LAWS
@given(modules)
def test_printing_then_parsing_gives_the_same_tree(module):
    text = to_source(module)
    assert parse(text) == module, text
    assert format_source(text) == text  # and what the printer writes is already canonical


@LAWS
@given(modules, st.data())
def test_formatting_is_idempotent_and_keeps_meaning_and_comments(module, data):
    lines = to_source(module).split("\n")
    # Sprinkle comments (own-line and trailing) and blank lines over the printed text.
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(lines) - 1))
        comment = "# " + data.draw(st.text(st.characters(exclude_characters="\n\r", exclude_categories=("Cs", "Zl", "Zp", "Cc")), max_size=10))
        kind = data.draw(st.sampled_from(["own", "trailing", "blank"]))
        if kind == "own":
            lines.insert(i, comment)
        elif kind == "trailing":
            lines[i] += "   " + comment
        else:
            lines.insert(i, "")
    text = "\n".join(lines)
    try:
        tree = parse(text)
    except Exception:  # noqa: BLE001 - a comment landed inside a string's line break; not a spec
        assume(False)
    assume(tree == module)  # a comment inside a triple-quoted string changes the string itself
    once = format_source(text)
    assert format_source(once) == once
    again = parse(once)
    assert again == module
    assert sorted(c.text.rstrip() for c in again.comments) == sorted(c.text.rstrip() for c in tree.comments)


@given(texts)
def test_every_string_survives_quoting(value):
    (item,) = parse(f"vocab v = [{quote(value)}]").items
    assert item.values[0].value == value


def test_canonical_layout():
    source = """# A header comment.

vocab v=[1,2]   # trailing
model m{source zoo "x"
  # before dtype


  dtype   float16}
task t { var a in 0..3 where (a+1)*2 != 4 and not a in [1] template when a==1 : "x\\n{{a}}" position p=last token of a occurrence 1 + 0 }
"""
    expected = """# A header comment.

vocab v = [1, 2]  # trailing

model m {
  source zoo "x"
  # before dtype

  dtype float16
}

task t {
  var a in 0..3 where (a + 1) * 2 != 4 and not a in [1]
  template when a == 1: "x\\n{{a}}"
  position p = last token of a
}
"""
    assert format_source(source) == expected
    assert format_source(expected) == expected


def test_long_statements_wrap_lists_and_triple_quote_templates():
    items = ", ".join(f'"item{i}"' for i in range(20))
    source = f'task t {{ var a in [1] where a in [{items}] template "{"x" * 90}\\nsecond line" }}'
    out = format_source(source)
    lines = out.split("\n")
    assert lines[1] == "  var a in [1] where a in ["
    close = lines.index("  ]")
    assert close > 3 and all(line.startswith('    "item') for line in lines[2:close])
    assert all(len(line) <= 100 for line in lines[: close + 1])
    assert lines[close + 1] == f'  template """{"x" * 90}' and lines[close + 2] == 'second line"""'
    assert format_source(out) == out and parse(out) == parse(source)


def test_nested_logic_keeps_its_parentheses():
    source = "task t { var a in 0..3 where a == 1 and (a == 2 and a == 3) or not (a > 1 or a < 0) }\n"
    out = format_source(source)
    assert "where a == 1 and (a == 2 and a == 3) or not (a > 1 or a < 0)" in out
    assert parse(out) == parse(source)


def test_shipped_specs_are_canonical():
    for path in SPECS.glob("*.sage"):
        text = path.read_text()
        assert format_source(text, str(path)) == text, path
