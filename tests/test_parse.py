"""The grammar and the tree it builds: constructs, strings, positions, and syntax errors in words."""

import re
from pathlib import Path

import pytest

from sagec import ast as A
from sagec.diagnostics import SpecError
from sagec.parse import parse

SPECS = Path(__file__).resolve().parent.parent / "specs"


def one(text: str) -> A.Decl:
    (item,) = parse(text).items
    return item


def syntax_error(text: str):
    with pytest.raises(SpecError) as info:
        parse(text, "x.sage")
    (d,) = info.value.diagnostics
    return d


def test_every_shipped_spec_parses():
    for path in SPECS.glob("*.sage"):
        assert parse(path.read_text(), str(path)).items


def test_model_block_and_spans():
    m = one('model smol {\n  source zoo "smollm2-135m"\n  dtype float32\n  remote ndif\n  batch_size 8\n}')
    assert m == A.Model(
        A.Ident("smol"),
        (A.Source(A.Ident("zoo"), (A.Literal("smollm2-135m"),)), A.Setting("dtype", A.Ident("float32")),
         A.Setting("remote", A.Ident("ndif")), A.BatchSize(8)),
    )
    assert (m.span.line, m.span.column, m.span.end_line) == (1, 1, 6)
    src = m.body[0]
    assert (src.args[0].span.line, src.args[0].span.column) == (2, 14)


def test_vocab_inline_and_from_file():
    assert one('vocab v = ["a", 3, -2,]') == A.Vocab(A.Ident("v"), (A.Literal("a"), A.Literal(3), A.Literal(-2)), None)
    assert one('vocab v from "names.txt"') == A.Vocab(A.Ident("v"), None, A.Literal("names.txt"))


def test_strings_decode_escapes_and_triple_quotes():
    v = one(r'vocab v = ["a\"b", "tab\there", "\u00e9\\", """two' + "\n" + 'lines with "quotes" inside"""]')
    assert [lit.value for lit in v.values] == ['a"b', "tab\there", "é\\", 'two\nlines with "quotes" inside']


def test_unknown_escape_is_located():
    d = syntax_error('vocab v = ["ok", "bad\\q"]')
    assert "unknown escape '\\q'" in d.message
    assert (d.line, d.column) == (1, 22)


def test_task_statements():
    t = one(
        """task t {
          var d in 0..9 where d != 3 and not (d in [1, 2]) or d % 2 == 0
          template when d > 4: "x {{d}}"
          answer "{{y}}" for y in 0..9 where y > d against "{{y}}" for y in 0..9 where y <= d
          counterfactual resample d
          position p = last token of d occurrence last - 1
          position q = p + 2
          position r = first
          attributes d
          split train 0.8, test 0.2
          samples 10
        }"""
    )
    var, template, answer, cf, p, q, r, attrs, split, samples = t.body
    assert var.domain == A.Range(0, 9)
    assert isinstance(var.where, A.Logic) and var.where.op == "or"
    assert template.guard == A.Binary(">", A.Ref("d"), A.Literal(4))
    assert answer.answer.binder == A.Ident("y") and answer.distractor.domain == A.Range(0, 9)
    assert cf == A.Names("counterfactual", (A.Ident("d"),))
    assert p == A.Position(A.Ident("p"), A.PosVar(A.Ident("d"), "last", -1), -1)
    assert q == A.Position(A.Ident("q"), A.PosRef(A.Ident("p")), 2)
    assert r.base == A.PosFirst()
    assert attrs == A.Names("attributes", (A.Ident("d"),))
    assert split == A.Split((), 0.8, 0.2)
    assert samples == A.Samples(10, None)


def test_expression_precedence():
    t = one('task t { var a in 0..3 where a + 1 * 2 == 3 - 1 - 1 and not a > 0 or a not in [1] }')
    e = t.body[0].where
    three = A.Binary("-", A.Binary("-", A.Literal(3), A.Literal(1)), A.Literal(1))
    left = A.Binary("==", A.Binary("+", A.Ref("a"), A.Binary("*", A.Literal(1), A.Literal(2))), three)
    assert e == A.Logic("or", (A.Logic("and", (left, A.Negation(A.Binary(">", A.Ref("a"), A.Literal(0))))), A.Binary("not in", A.Ref("a"), A.ListExpr((A.Literal(1),)))))


def test_keywords_are_contextual():
    t = one('task t { var order in ["ABB"] var first in [1] position x = token of first attributes order }')
    assert [s.name.name for s in t.body[:2]] == ["order", "first"]
    assert t.body[2].base == A.PosVar(A.Ident("first"))


def test_sae_family_and_eval():
    s = one('sae res[l] for l in 0..3 { source sae_lens "rel" "blocks.{{l}}.hook_resid_pre" hook "resid_pre {{l}}" }')
    assert s.family == A.Family(A.Ident("l"), A.Ident("l"), A.Range(0, 3))
    e = one(
        'eval e { model m task t locate { method attribution components heads, mlp layers 0, 2 positions end '
        'select fraction 0.9 verify patching } ground_truth { method lstsq validate control } '
        'saes res[*], res[1], res[0..2], one reconstruct direct score l0 report "out" as json }'
    )
    locate, gt, saes = e.body[2], e.body[3], e.body[4]
    assert A.Layers((0, 2)) in locate.body and A.Select("fraction", 0.9) in locate.body
    assert gt.body == (A.Setting("method", A.Ident("lstsq")), A.Names("validate", (A.Ident("control"),)))
    assert [r.index for r in saes.refs] == ["*", 1, A.Range(0, 2), None]
    assert saes.reconstruct == A.Ident("direct")
    assert e.body[-1] == A.Report(A.Literal("out"), (A.Ident("json"),))


def test_comments_are_collected_with_positions():
    m = parse('# head\nmodel m { # inner\n  source zoo "x" # "not a string"\n}\n')
    assert [(c.line, c.column, c.text) for c in m.comments] == [(1, 1, "# head"), (2, 11, "# inner"), (3, 18, '# "not a string"')]


def test_hash_inside_a_string_is_not_a_comment():
    v = one('vocab v = ["a # b"]  # real')
    assert v.values[0].value == "a # b"


@pytest.mark.parametrize(
    "text, line, column, words",
    [
        ('model m {\n  source zoo "x"\n  dtype float32\n', 3, 15, ["end of file", "'}'", "'dtype'"]),
        ("task t { var x in [1, 2] where x == }", 1, 37, ["'}'", "a name", "a string", "an integer"]),
        ("task t { position p = token s }", 1, 29, ["'s'", "'of'"]),
        ("eval e { saes a[1 }", 1, 19, ["'..'", "']'"]),
        ('model m { source zoo "x\n }', 1, 22, ["unterminated string"]),
        ("vocab v = [1, 2", 1, 15, ["end of file", "','", "']'"]),
        ("modle m { }", 1, 1, ["'modle'", "'model'", "'task'", "'include'"]),
        ("task t { var x in 0..3 ? }", 1, 24, ["'?'", "'where'", "'var'", "'}'"]),
        ('model m { source zoo "x" @ }', 1, 26, ["'@'", "a string", "'dtype'", "'}'"]),
    ],
)
def test_syntax_errors_say_what_was_expected_in_words(text, line, column, words):
    d = syntax_error(text)
    assert (d.file, d.line, d.column) == ("x.sage", line, column)
    for w in words:
        assert w in d.message
    # never Lark's own terminal names
    assert not re.search(r"\b(NAME|STRING|INT|DECIMAL|__ANON_\d+|LBRACE|RBRACE|\$END)\b", d.message), d.message


def _spans(node):
    """Every span in a tree, in order (spans take no part in node equality)."""
    import dataclasses

    if isinstance(node, tuple):
        for x in node:
            yield from _spans(x)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if f.name == "span":
                yield (value.line, value.column, value.end_line, value.end_column)
            else:
                yield from _spans(value)


def test_the_fast_lexer_agrees_with_larks_own():
    """sagec.parse lexes with one regular expression; Lark's contextual lexer, driven by the same
    grammar, must give the same trees and spans, and fail on the same inputs."""
    from importlib.resources import files

    from lark import Lark
    from lark.exceptions import UnexpectedInput

    from sagec import parse as P
    from tests.test_fuzz import mutants

    reference = Lark(
        files("sagec.grammar").joinpath("sage.lark").read_text(),
        parser="lalr", transformer=P._TRANSFORMER, keep_all_tokens=True, maybe_placeholders=False,
    )
    texts = [p.read_text() for p in SPECS.glob("*.sage")]
    texts += list(mutants(texts[0], 300, seed=5))
    texts += ['vocab v = ["a\\"b", """x\n"y"\n""", -3]\ntask t { var a in 0..3 where a not in [1] or (a >= 2) }']
    for text in texts:
        try:
            ours = parse(text, "x.sage").items
        except SpecError:
            ours = None
        P._TRANSFORMER.file = "x.sage"
        try:
            theirs = tuple(reference.parse(text))
        except (UnexpectedInput, SpecError):
            theirs = None
        assert (ours is None) == (theirs is None), text
        if ours is not None:
            assert ours == theirs and list(_spans(ours)) == list(_spans(theirs)), text
