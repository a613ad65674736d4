"""Source text -> `sagec.ast.Module`: Lark's LALR parser over grammar/sage.lark, with the
Transformer that builds AST nodes run inside the parser.

Syntax errors become `Diagnostic`s that say in words what was expected ("expected a name or
'}'"), never Lark's terminal names. A file has at most one syntax error (LALR stops there); the
checker then finds every semantic problem at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import Lexer, PatternStr
from lark.parsers.lalr_interactive_parser import InteractiveParser

from sagec import ast as A
from sagec.diagnostics import Diagnostic, SpecError

# The lexer records comments while it runs; the parse in progress collects into the last list.
_comment_sinks: list[list[A.Comment]] = []


class _Lexer(Lexer):
    """The grammar's tokens, lexed with one regular expression instead of Lark's lexer.

    Lark's contextual lexer costs about 25 us a token on these machines, most of a parse; this one
    does the same job (a word is a keyword only where the parser accepts that keyword, as in
    Lark's contextual lexer) in a few. The token patterns are read from sage.lark, and test_parse
    checks that both lexers give the same trees and spans.
    """

    __future_interface__ = 2

    def __init__(self, conf) -> None:  # noqa: ANN001 - Lark's LexerConf
        by_name = {t.name: t for t in conf.terminals}
        self.keywords = {t.pattern.value: t.name for t in conf.terminals if isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier()}
        self.punctuation = {t.pattern.value: t.name for t in conf.terminals if isinstance(t.pattern, PatternStr) and not t.pattern.value.isidentifier()}
        ops = sorted(self.punctuation, key=len, reverse=True)
        # Whitespace is skipped by the same match as the token after it: one match per token.
        regex = r"\s*(?:" + "|".join(
            [
                f"(?P<COMMENT>{by_name['COMMENT'].pattern.value})",
                f"(?P<STRING>{by_name['STRING'].pattern.value})",
                f"(?P<DECIMAL>{by_name['DECIMAL'].pattern.value})",
                f"(?P<INT>{by_name['INT'].pattern.value})",
                f"(?P<NAME>{by_name['NAME'].pattern.value})",
                "(?P<OP>" + "|".join(re.escape(o) for o in ops) + ")",
                r"(?P<END>\Z)",
            ]
        ) + ")"
        self.pattern = re.compile(regex)

    def lex(self, lexer_state, parser_state):  # noqa: ANN001, ANN201 - Lark's interface
        text = lexer_state.text.text
        states = parser_state.parse_conf.parse_table.states
        stack = parser_state.state_stack
        match = self.pattern.match
        keywords, punctuation = self.keywords, self.punctuation
        sink = _comment_sinks[-1] if _comment_sinks else []
        pos, line, line_start = 0, 1, 0
        while True:
            m = match(text, pos)
            if m is None:  # a character no token starts with: skip the whitespace to point at it
                pos = len(text) - len(text[pos:].lstrip())
                line, line_start = _line_of(text, pos)
                allowed = _accepted(parser_state)
                raise UnexpectedCharacters(text, pos, line, pos - line_start + 1, allowed=allowed, state=parser_state)
            kind = m.lastgroup
            start, stop = m.start(kind), m.end()
            if start != pos:  # whitespace before the token
                newlines = text.count("\n", pos, start)
                if newlines:
                    line += newlines
                    line_start = text.rfind("\n", pos, start) + 1
            if kind == "END":
                return
            value = m.group(kind)
            column = start - line_start + 1
            if kind == "COMMENT":
                sink.append(A.Comment(line, column, value.rstrip()))
                pos = stop
                continue
            if kind == "NAME":
                keyword = keywords.get(value)
                if keyword is not None and keyword in states[stack[-1]]:
                    kind = keyword
            elif kind == "OP":
                kind = punctuation[value]
            elif kind == "STRING" and "\n" in value:
                newlines = value.count("\n")
                last_start = text.rfind("\n", start, stop) + 1
                token = Token(kind, value, start, line, column, line + newlines, stop - last_start + 1, stop)
                line, line_start = line + newlines, last_start
                lexer_state.last_token = token
                yield token
                pos = stop
                continue
            token = Token(kind, value, start, line, column, line, column + len(value), stop)
            lexer_state.last_token = token
            yield token
            pos = stop


def _accepted(parser_state) -> set[str]:  # noqa: ANN001 - Lark's ParserState
    """The terminals the parser can take next, replayed exactly (see _precise_expected)."""
    cursor = InteractiveParser(None, parser_state, SimpleNamespace(_Token=Token))
    try:
        return set(cursor.accepts())
    except Exception:  # noqa: BLE001 - a nicety: fall back to the LALR table's (merged) set
        return {t for t in parser_state.parse_conf.parse_table.states[parser_state.position] if t.isupper()}


def _line_of(text: str, pos: int) -> tuple[int, int]:
    """The 1-based line of offset `pos` and the offset where that line starts."""
    return text.count("\n", 0, pos) + 1, text.rfind("\n", 0, pos) + 1


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = files("sagec.grammar").joinpath("sage.lark").read_text(encoding="utf-8")
    # cache: Lark keeps the built tables in the temp dir, keyed by a hash of the grammar and options.
    return Lark(grammar, parser="lalr", lexer=_Lexer, transformer=_TRANSFORMER, keep_all_tokens=True, maybe_placeholders=False, cache=True)


def parse(text: str, file: str = "<string>") -> A.Module:
    """Parse one file; raise `SpecError` with one located diagnostic on a syntax error."""
    sink: list[A.Comment] = []
    _comment_sinks.append(sink)
    _TRANSFORMER.file = file
    try:
        items = _parser().parse(text)
    except UnexpectedInput as e:
        raise SpecError([_syntax_diagnostic(e, text, file)]) from None
    finally:
        _comment_sinks.pop()
    return A.Module(tuple(items), tuple(sink), file)


# --- strings ----------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


def decode_string(token: Token, file: str) -> str:
    """The value of a string token: quotes removed, escapes decoded (the same in both quotings)."""
    raw = token.value
    opening = 3 if raw.startswith('"""') and len(raw) >= 6 else 1
    body = raw[opening:-opening]

    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc.startswith("u") and len(esc) == 5:
            return chr(int(esc[1:], 16))
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        line, col = _position_in(token, opening + m.start())
        raise SpecError(
            [
                Diagnostic(
                    file, line, col, f"unknown escape '\\{esc}' in a string",
                    end_line=line, end_column=col + 2,
                    hint='write \\\\ for a backslash; known escapes are \\n \\t \\r \\" \\\\ and \\uXXXX',
                )
            ]
        )

    return _ESCAPE.sub(one, body)


def _position_in(token: Token, offset: int) -> tuple[int, int]:
    before = token.value[:offset]
    newlines = before.count("\n")
    if newlines == 0:
        return token.line, token.column + offset
    return token.line + newlines, offset - before.rfind("\n")


# --- tree -> AST, while parsing -------------------------------------------------------------
#
# The transformer runs inside the LALR parser (no parse tree is built), with every token kept so
# a node's span runs from its first token (its keyword) to its last (a closing brace). Lark's
# own position propagation and tree building cost about as much as the parse itself here.

_VALUE_TOKENS = frozenset({"NAME", "STRING", "INT", "DECIMAL"})


@dataclass(frozen=True)
class _Val:
    """A small positioned value between rules (an offset, an occurrence, a keyword)."""

    value: Any
    span: A.Span


def _bounds(x: Any) -> tuple[int, int, int, int] | None:
    if isinstance(x, Token):
        return x.line, x.column, x.end_line, x.end_column
    span = getattr(x, "span", None)
    if span is not None and span is not A.NOWHERE:
        return span.line, span.column, span.end_line, span.end_column
    if isinstance(x, tuple) and x:
        first, last = _bounds(x[0]), _bounds(x[-1])
        if first and last:
            return first[0], first[1], last[2], last[3]
    return None


def _tok_span(file: str, tok: Token) -> A.Span:
    return A.Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _rule(fn):  # noqa: ANN001, ANN202
    """Give `fn` the node's span and its children without keywords and punctuation."""

    def method(self: _ToAst, children: list) -> Any:  # noqa: ANN401
        return fn(self, self._span(children), [c for c in children if not (type(c) is Token and c.type not in _VALUE_TOKENS)])

    method.__name__ = fn.__name__
    return method


def _keyword(self: _ToAst, children: list) -> _Val:
    return _Val(" ".join(str(t) for t in children), self._span(children))


def _const(value: Any):  # noqa: ANN202, ANN401
    def method(self: _ToAst, children: list) -> _Val:
        return _Val(value, self._span(children))

    return method


def _signed(sign: int):  # noqa: ANN202
    def method(self: _ToAst, children: list) -> _Val:
        return _Val(sign * int(children[-1]), self._span(children))

    return method


class _ToAst(Transformer):
    file = "<string>"  # set for each parse (the transformer lives inside the shared parser)

    def _span(self, children: list) -> A.Span:
        start = end = None
        for c in children:
            start = _bounds(c)
            if start:
                break
        for c in reversed(children):
            end = _bounds(c)
            if end:
                break
        if not start or not end:
            return A.NOWHERE
        return A.Span(self.file, start[0], start[1], end[2], end[3])

    def _id(self, tok: Token) -> A.Ident:
        return A.Ident(str(tok), _tok_span(self.file, tok))

    def _str(self, tok: Token) -> A.Literal:
        return A.Literal(decode_string(tok, self.file), _tok_span(self.file, tok))

    def start(self, children):
        return children

    # literals and small pieces
    @_rule
    def string(self, span, c):
        return self._str(c[0])

    @_rule
    def int(self, span, c):
        return A.Literal(int(c[0]), span)

    def neg(self, children):  # a literal, not a _Val
        return A.Literal(-int(children[-1]), self._span(children))

    @_rule
    def decimal(self, span, c):
        return A.Literal(float(c[0]), span)  # type: ignore[arg-type]

    @_rule
    def list_lit(self, span, c):
        return A.ListExpr(tuple(c), span)

    @_rule
    def range(self, span, c):
        return A.Range(c[0].value, c[1].value, span)

    @_rule
    def ident(self, span, c):
        return self._id(c[0])

    @_rule
    def name_list(self, span, c):
        return tuple(c)

    model_key = eval_key = locate_key = gt_key = locate_names_key = compare_op = _keyword

    # top level
    @_rule
    def include(self, span, c):
        return A.Include(self._str(c[0]), span)

    @_rule
    def model(self, span, c):
        return A.Model(self._id(c[0]), tuple(c[1:]), span)

    @_rule
    def source(self, span, c):
        return A.Source(self._id(c[0]), tuple(self._str(t) for t in c[1:]), span)

    @_rule
    def setting(self, span, c):
        return A.Setting(c[0].value, self._id(c[1]), span)

    @_rule
    def locate_method(self, span, c):
        return A.Method(self._id(c[0]), int(c[1]) if len(c) > 1 else None, span)

    @_rule
    def batch_size(self, span, c):
        return A.BatchSize(int(c[0]), span)

    @_rule
    def vocab_inline(self, span, c):
        return A.Vocab(self._id(c[0]), c[1].items, None, span)

    @_rule
    def vocab_file(self, span, c):
        return A.Vocab(self._id(c[0]), None, self._str(c[1]), span)

    # tasks
    @_rule
    def task(self, span, c):
        return A.Task(self._id(c[0]), tuple(c[1:]), span)

    @_rule
    def domain_ref(self, span, c):
        return self._id(c[0])

    @_rule
    def var(self, span, c):
        return A.Var(self._id(c[0]), c[1], c[2] if len(c) > 2 else None, span)

    @_rule
    def template(self, span, c):
        return A.Template(c[0] if len(c) > 1 else None, self._str(c[-1]), span)

    @_rule
    def answer_side(self, span, c):
        if len(c) == 1:
            return A.AnswerSide(self._str(c[0]), span=span)
        return A.AnswerSide(self._str(c[0]), self._id(c[1]), c[2], c[3] if len(c) > 3 else None, span)

    @_rule
    def answer(self, span, c):
        return A.Answer(c[0], c[1], span)

    @_rule
    def names(self, span, c):
        return A.Names(c[0].value, c[1], span)

    def _keyed_names(key: str):  # noqa: N805 - a factory used in the class body
        @_rule
        def method(self, span, c):
            return A.Names(key, c[0], span)

        return method

    attributes = _keyed_names("attributes")
    counterfactual = _keyed_names("counterfactual")
    accept = _keyed_names("accept")
    score = _keyed_names("score")
    validate = _keyed_names("validate")

    @_rule
    def position(self, span, c):
        return A.Position(self._id(c[0]), c[1], c[2].value if len(c) > 2 else 0, span)

    @_rule
    def pos_last(self, span, c):
        return A.PosLast(span)

    @_rule
    def pos_first(self, span, c):
        return A.PosFirst(span)

    @_rule
    def pos_var(self, span, c):
        token = "first"
        if isinstance(c[0], _Val):
            token, c = c[0].value, c[1:]
        occurrence = c[1].value if len(c) > 1 else 1
        return A.PosVar(self._id(c[0]), token, occurrence, span)

    @_rule
    def pos_ref(self, span, c):
        return A.PosRef(self._id(c[0]), span)

    sel_first, sel_last, occ_last, index_all = _const("first"), _const("last"), _const(-1), _const("*")
    occ_int, plus, minus = _signed(1), _signed(1), _signed(-1)

    @_rule
    def index_one(self, span, c):
        return _Val(int(c[0]), span)

    @_rule
    def split(self, span, c):
        by = c[0] if len(c) == 3 else ()
        return A.Split(by, float(c[-2].value), float(c[-1].value), span)

    @_rule
    def samples(self, span, c):
        return A.Samples(int(c[0]), int(c[1]) if len(c) > 1 else None, span)

    # SAEs
    @_rule
    def sae(self, span, c):
        family = c[1] if len(c) > 1 and isinstance(c[1], A.Family) else None
        return A.Sae(self._id(c[0]), family, tuple(c[2 if family else 1 :]), span)

    @_rule
    def family(self, span, c):
        return A.Family(self._id(c[0]), self._id(c[1]), c[2], span)

    @_rule
    def hook(self, span, c):
        return A.Hook(self._str(c[0]), span)

    # evaluations
    @_rule
    def eval(self, span, c):
        return A.Eval(self._id(c[0]), tuple(c[1:]), span)

    @_rule
    def locate(self, span, c):
        return A.Locate(tuple(c), span)

    @_rule
    def ground_truth(self, span, c):
        return A.GroundTruth(tuple(c), span)

    @_rule
    def layers_range(self, span, c):
        return A.Layers(c[0], span)

    @_rule
    def layers_list(self, span, c):
        return A.Layers(tuple(int(t) for t in c), span)

    @_rule
    def select_top(self, span, c):
        return A.Select("top", int(c[0]), len(c) > 1, span)

    @_rule
    def per_family(self, span, c):
        return True

    @_rule
    def select_fraction(self, span, c):
        return A.Select("fraction", float(c[0].value), False, span)

    @_rule
    def saes(self, span, c):
        reconstruct = self._id(c[-1]) if isinstance(c[-1], Token) else None
        refs = c[:-1] if reconstruct is not None else c
        return A.Saes(tuple(refs), reconstruct, span)

    @_rule
    def sae_ref(self, span, c):
        index = c[1] if len(c) > 1 else None
        return A.SaeRef(self._id(c[0]), index.value if isinstance(index, _Val) else index, span)

    @_rule
    def baselines(self, span, c):
        return A.Baselines(tuple(c), span)

    @_rule
    def baseline(self, span, c):
        return A.Baseline(self._id(c[0]), int(c[1]) if len(c) > 1 else None, span)

    @_rule
    def report(self, span, c):
        return A.Report(self._str(c[0]), c[1] if len(c) > 1 else (), span)

    @_rule
    def corpus(self, span, c):
        return A.Corpus(self._str(c[0]), span)

    # expressions
    @_rule
    def ref(self, span, c):
        return A.Ref(str(c[0]), span)

    @_rule
    def atom(self, span, c):  # `( expr )`: the parentheses only group
        return c[0]

    @_rule
    def or_expr(self, span, c):
        return A.Logic("or", tuple(c), span)

    @_rule
    def and_expr(self, span, c):
        return A.Logic("and", tuple(c), span)

    @_rule
    def not_(self, span, c):
        return A.Negation(c[0], span)

    @_rule
    def compare(self, span, c):
        return A.Binary(c[1].value, c[0], c[2], span)

    def _arith(op: str):  # noqa: N805 - a factory used in the class body
        @_rule
        def method(self, span, c):
            return A.Binary(op, c[0], c[1], span)

        return method

    add, sub, mul, floordiv, mod = _arith("+"), _arith("-"), _arith("*"), _arith("//"), _arith("%")


_TRANSFORMER = _ToAst()


# --- syntax errors in words -------------------------------------------------------------------

_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "DECIMAL": "a number",
    "STRING": "a string",
    "$END": "the end of the file",
}


def _describe(terminal: str) -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    for t in _parser().terminals:
        if t.name == terminal and isinstance(t.pattern, PatternStr):
            return f"'{t.pattern.value}'"
    return terminal.lower()


def _expected_words(expected: set[str] | frozenset[str]) -> str:
    words = sorted({_describe(t) for t in expected}, key=lambda w: (not w[0].isalpha(), w))
    if len(words) > 12:
        words = words[:12] + ["..."]
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _found(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "STRING":
        return "a string"
    return f"'{tok.value}'"


def _syntax_diagnostic(e: UnexpectedInput, text: str, file: str) -> Diagnostic:
    if isinstance(e, UnexpectedToken):
        tok = e.token
        expected = _precise_expected(e)
        if tok.type == "$END":
            line, col = _end_position(text)
            return Diagnostic(file, line, col, f"unexpected end of file; expected {_expected_words(expected)}")
        end = tok.end_column if tok.end_line == tok.line and tok.end_column else tok.column + 1
        return Diagnostic(
            file, tok.line, tok.column, f"unexpected {_found(tok)}; expected {_expected_words(expected)}",
            end_line=tok.line, end_column=end,
        )
    if isinstance(e, UnexpectedCharacters):
        char = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        if char == '"':
            message = "unterminated string (a string must close on the same line; use \"\"\" for several lines)"
        else:
            message = f"unexpected character {char!r}"
            if e.allowed:
                message += f"; expected {_expected_words(e.allowed)}"
        return Diagnostic(file, e.line, e.column, message, end_line=e.line, end_column=e.column + 1)
    if isinstance(e, UnexpectedEOF):
        line, col = _end_position(text)
        return Diagnostic(file, line, col, f"unexpected end of file; expected {_expected_words(e.expected)}")
    line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    return Diagnostic(file, line, col, "syntax error")


def _precise_expected(e: UnexpectedToken) -> set[str]:
    """LALR merges states, so `e.expected` can hold tokens of other blocks (a `setting` ends the
    same way in a model and in an eval); replaying the parser token by token is exact."""
    try:
        accepted = e.interactive_parser.accepts() if e.interactive_parser is not None else set()
    except Exception:  # noqa: BLE001 - the precise set is a nicety; fall back to Lark's own
        accepted = set()
    return set(accepted) or set(e.expected)


def _end_position(text: str) -> tuple[int, int]:
    """The last character of the file (where a missing '}' would have to go)."""
    stripped = text.rstrip()
    if not stripped:
        return 1, 1
    line = stripped.count("\n") + 1
    return line, len(stripped) - (stripped.rfind("\n") + 1)


@lru_cache(maxsize=1)
def keywords() -> frozenset[str]:
    """Every word the grammar uses as a keyword (where a keyword fits, a name of that spelling
    cannot stand)."""
    return frozenset(
        t.pattern.value for t in _parser().terminals if isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier()
    )
