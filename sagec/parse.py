"""Source text -> `sagec.ast.Module`: Lark builds the tree, a Transformer turns it into nodes.

Syntax errors become `Diagnostic`s that say in words what was expected ("expected a name or
'}'"), never Lark's terminal names. A file has at most one syntax error (LALR stops there); the
checker then finds every semantic problem at once.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import Lexer, PatternStr

from sagec import ast as A
from sagec.diagnostics import Diagnostic, SpecError

# The lexer records comments while it runs; the parse in progress collects into the last list.
_comment_sinks: list[list[A.Comment]] = []


class _Lexer(Lexer):
    """The grammar's tokens, lexed with one regular expression instead of Lark's lexer.

    Lark's contextual lexer costs about 25 us a token on these machines, most of a parse; this one
    does the same job (a word is a keyword only where the parser accepts that keyword, as in
    Lark's contextual lexer) in a few. The token patterns are those of sage.lark; test_parse
    checks that the two agree on every terminal.
    """

    __future_interface__ = 2

    def __init__(self, conf) -> None:  # noqa: ANN001 - Lark's LexerConf
        by_name = {t.name: t for t in conf.terminals}
        self.keywords = {t.pattern.value: t.name for t in conf.terminals if isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier()}
        self.punctuation = {t.pattern.value: t.name for t in conf.terminals if isinstance(t.pattern, PatternStr) and not t.pattern.value.isidentifier()}
        ops = sorted(self.punctuation, key=len, reverse=True)
        regex = "|".join(
            [
                r"(?P<WS>\s+)",
                f"(?P<COMMENT>{by_name['COMMENT'].pattern.value})",
                f"(?P<STRING>{by_name['STRING'].pattern.value})",
                f"(?P<DECIMAL>{by_name['DECIMAL'].pattern.value})",
                f"(?P<INT>{by_name['INT'].pattern.value})",
                f"(?P<NAME>{by_name['NAME'].pattern.value})",
                "(?P<OP>" + "|".join(re.escape(o) for o in ops) + ")",
            ]
        )
        self.pattern = re.compile(regex)

    def lex(self, lexer_state, parser_state):  # noqa: ANN001, ANN201 - Lark's interface
        text = lexer_state.text.text
        states = parser_state.parse_conf.parse_table.states
        match = self.pattern.match
        keywords, punctuation = self.keywords, self.punctuation
        sink = _comment_sinks[-1] if _comment_sinks else []
        pos, line, line_start, end = 0, 1, 0, len(text)
        while pos < end:
            m = match(text, pos)
            if m is None:
                raise UnexpectedCharacters(text, pos, line, pos - line_start + 1, state=parser_state)
            kind, value, stop = m.lastgroup, m.group(), m.end()
            column = pos - line_start + 1
            newlines = value.count("\n") if kind in ("WS", "STRING") else 0
            end_line, end_column = line, column + len(value)
            if newlines:
                end_line = line + newlines
                end_column = stop - (text.rfind("\n", pos, stop) + 1) + 1
            if kind == "WS":
                pass
            elif kind == "COMMENT":
                sink.append(A.Comment(line, column, value.rstrip()))
            else:
                if kind == "NAME":
                    keyword = keywords.get(value)
                    if keyword is not None and keyword in states[parser_state.position]:
                        kind = keyword
                elif kind == "OP":
                    kind = punctuation[value]
                token = Token(kind, value, pos, line, column, end_line, end_column, stop)
                lexer_state.last_token = token
                yield token
            if newlines:
                line, line_start = end_line, text.rfind("\n", pos, stop) + 1
            pos = stop


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = files("sagec.grammar").joinpath("sage.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer=_Lexer, propagate_positions=True, maybe_placeholders=True)


def parse(text: str, file: str = "<string>") -> A.Module:
    """Parse one file; raise `SpecError` with one located diagnostic on a syntax error."""
    sink: list[A.Comment] = []
    _comment_sinks.append(sink)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise SpecError([_syntax_diagnostic(e, text, file)]) from None
    finally:
        _comment_sinks.pop()
    try:
        items = _ToAst(file).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, SpecError):
            raise e.orig_exc from None
        raise
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


# --- tree -> AST ------------------------------------------------------------------------------


def _span(file: str, meta: Any) -> A.Span:
    if getattr(meta, "empty", True):
        return A.NOWHERE
    return A.Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> A.Span:
    return A.Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _s(self, meta: Any) -> A.Span:
        return _span(self.file, meta)

    def _id(self, tok: Token) -> A.Ident:
        return A.Ident(str(tok), _tok_span(self.file, tok))

    def _str(self, tok: Token) -> A.Literal:
        return A.Literal(decode_string(tok, self.file), _tok_span(self.file, tok))

    def start(self, meta, items):
        return items

    # literals and small pieces
    def string(self, meta, c):
        return self._str(c[0])

    def int(self, meta, c):
        return A.Literal(int(c[0]), self._s(meta))

    def neg(self, meta, c):
        return A.Literal(-int(c[0]), self._s(meta))

    def decimal(self, meta, c):
        return A.Literal(float(c[0]), self._s(meta))  # type: ignore[arg-type]

    def list_lit(self, meta, c):
        return A.ListExpr(tuple(x for x in c if x is not None), self._s(meta))

    def range(self, meta, c):
        return A.Range(c[0].value, c[1].value, self._s(meta))

    def ident(self, meta, c):
        return self._id(c[0])

    def name_list(self, meta, c):
        return tuple(c)

    def _key(self, meta, c):
        return str(c[0])

    model_key = eval_key = locate_key = gt_key = locate_names_key = _key

    # top level
    def include(self, meta, c):
        return A.Include(self._str(c[0]), self._s(meta))

    def model(self, meta, c):
        return A.Model(self._id(c[0]), tuple(c[1:]), self._s(meta))

    def source(self, meta, c):
        args = tuple(self._str(t) for t in c[1:] if t is not None)
        return A.Source(self._id(c[0]), args, self._s(meta))

    def setting(self, meta, c):
        return A.Setting(c[0], self._id(c[1]), self._s(meta))

    def batch_size(self, meta, c):
        return A.BatchSize(int(c[0]), self._s(meta))

    def vocab_inline(self, meta, c):
        return A.Vocab(self._id(c[0]), c[1].items, None, self._s(meta))

    def vocab_file(self, meta, c):
        return A.Vocab(self._id(c[0]), None, self._str(c[1]), self._s(meta))

    # tasks
    def task(self, meta, c):
        return A.Task(self._id(c[0]), tuple(c[1:]), self._s(meta))

    def domain_ref(self, meta, c):
        return self._id(c[0])

    def var(self, meta, c):
        return A.Var(self._id(c[0]), c[1], c[2], self._s(meta))

    def template(self, meta, c):
        return A.Template(c[0], self._str(c[1]), self._s(meta))

    def answer_side(self, meta, c):
        binder = self._id(c[1]) if c[1] is not None else None
        return A.AnswerSide(self._str(c[0]), binder, c[2], c[3], self._s(meta))

    def answer(self, meta, c):
        return A.Answer(c[0], c[1], self._s(meta))

    def names(self, meta, c):
        return A.Names(c[0], c[1], self._s(meta))

    def _keyed_names(key: str):  # noqa: N805 - a factory used in the class body
        def method(self, meta, c):
            return A.Names(key, c[0], self._s(meta))

        return method

    attributes = _keyed_names("attributes")
    counterfactual = _keyed_names("counterfactual")
    score = _keyed_names("score")
    validate = _keyed_names("validate")

    def position(self, meta, c):
        return A.Position(self._id(c[0]), c[1], c[2] if c[2] is not None else 0, self._s(meta))

    def pos_last(self, meta, c):
        return A.PosLast(self._s(meta))

    def pos_first(self, meta, c):
        return A.PosFirst(self._s(meta))

    def pos_var(self, meta, c):
        token = c[0] if c[0] is not None else "first"
        occurrence = c[2] if c[2] is not None else 1
        return A.PosVar(self._id(c[1]), token, occurrence, self._s(meta))

    def pos_ref(self, meta, c):
        return A.PosRef(self._id(c[0]), self._s(meta))

    def sel_first(self, meta, c):
        return "first"

    def sel_last(self, meta, c):
        return "last"

    def occ_int(self, meta, c):
        return int(c[0])

    def occ_last(self, meta, c):
        return -1

    def plus(self, meta, c):
        return int(c[0])

    def minus(self, meta, c):
        return -int(c[0])

    def split(self, meta, c):
        by = c[0] if c[0] is not None else ()
        return A.Split(by, float(c[1].value), float(c[2].value), self._s(meta))

    def samples(self, meta, c):
        return A.Samples(int(c[0]), int(c[1]) if c[1] is not None else None, self._s(meta))

    # SAEs
    def sae(self, meta, c):
        return A.Sae(self._id(c[0]), c[1], tuple(c[2:]), self._s(meta))

    def family(self, meta, c):
        return A.Family(self._id(c[0]), self._id(c[1]), c[2], self._s(meta))

    def hook(self, meta, c):
        return A.Hook(self._str(c[0]), self._s(meta))

    # evaluations
    def eval(self, meta, c):
        return A.Eval(self._id(c[0]), tuple(c[1:]), self._s(meta))

    def locate(self, meta, c):
        return A.Locate(tuple(c), self._s(meta))

    def ground_truth(self, meta, c):
        return A.GroundTruth(tuple(c), self._s(meta))

    def layers_range(self, meta, c):
        return A.Layers(c[0], self._s(meta))

    def layers_list(self, meta, c):
        return A.Layers(tuple(int(t) for t in c), self._s(meta))

    def select_top(self, meta, c):
        return A.Select("top", int(c[0]), self._s(meta))

    def select_fraction(self, meta, c):
        return A.Select("fraction", float(c[0].value), self._s(meta))

    def saes(self, meta, c):
        *refs, reconstruct = c
        return A.Saes(tuple(refs), self._id(reconstruct) if reconstruct is not None else None, self._s(meta))

    def sae_ref(self, meta, c):
        return A.SaeRef(self._id(c[0]), c[1], self._s(meta))

    def index_all(self, meta, c):
        return "*"

    def index_one(self, meta, c):
        return int(c[0])

    def report(self, meta, c):
        return A.Report(self._str(c[0]), c[1] if c[1] is not None else (), self._s(meta))

    # expressions
    def ref(self, meta, c):
        return A.Ref(str(c[0]), self._s(meta))

    def or_expr(self, meta, c):
        return A.Logic("or", tuple(c), self._s(meta))

    def and_expr(self, meta, c):
        return A.Logic("and", tuple(c), self._s(meta))

    def not_(self, meta, c):
        return A.Negation(c[0], self._s(meta))

    def compare_op(self, meta, c):
        return " ".join(str(t) for t in c)

    def compare(self, meta, c):
        return A.Binary(c[1], c[0], c[2], self._s(meta))

    def _arith(op: str):  # noqa: N805 - a factory used in the class body
        def method(self, meta, c):
            return A.Binary(op, c[0], c[1], self._s(meta))

        return method

    add, sub, mul, floordiv, mod = _arith("+"), _arith("-"), _arith("*"), _arith("//"), _arith("%")


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
