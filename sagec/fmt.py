"""The canonical printer: one statement per line, blocks indented by two spaces, comments kept.

Two laws hold and are tested: printing any tree and parsing it back gives the same tree
(`parse(to_source(tree)) == tree`), and formatting is idempotent (`fmt(fmt(x)) == fmt(x)`).
Comments are reattached by line: a comment on its own line stays before the statement after it,
a comment at the end of a statement's last line stays at the end of that line, and a single blank
line between statements is kept (more are squeezed to one).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from sagec import ast as A
from sagec.parse import parse

INDENT = "  "
WIDTH = 100
# The indentation of the statement being printed when it is too long for one line, else None:
# then its lists are wrapped and its multi-line strings triple-quoted.
_wrap_at: list[str | None] = [None]


def format_source(text: str, file: str = "<string>") -> str:
    """The canonical form of a spec's text; raises SpecError on a syntax error."""
    module = parse(text, file)
    blank = {i + 1 for i, line in enumerate(text.split("\n")) if not line.strip()}
    return _Printer(module.comments, blank).module(module)


def to_source(module: A.Module) -> str:
    """Print a tree (its comments, if it has any, by their lines)."""
    return _Printer(module.comments, set()).module(module)


# --- leaf syntax ------------------------------------------------------------------------------

_LINE_BREAKS = {"\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"}


def quote(value: str) -> str:
    """A string literal for `value`: on one line with escapes, or, when the statement is too long
    for one line anyway, triple-quoted with its line breaks as they are (long templates)."""
    multiline = "\n" in value and _wrap_at[-1] is not None
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\n" if multiline else "\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch in _LINE_BREAKS or (unicodedata.category(ch) == "Cc"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    body = "".join(out)
    return f'"""{body}"""' if multiline else f'"{body}"'


def number(x: float) -> str:
    return repr(float(x))  # the shortest text that reads back as the same float


def literal(lit: A.Literal) -> str:
    return quote(lit.value) if isinstance(lit.value, str) else str(lit.value)


def literals(items: Sequence[A.Literal]) -> str:
    """A list literal: on one line, or, in a statement too long for one line, its items filled
    into lines of at most WIDTH columns, one indent deeper than the statement."""
    texts = [literal(i) for i in items]
    indent = _wrap_at[-1]
    if indent is None or len(texts) < 2 or any("\n" in t for t in texts):
        return "[" + ", ".join(texts) + "]"
    inner = indent + INDENT
    lines, line = [], ""
    for piece in (t + "," for t in texts):
        if line and len(inner) + len(line) + 1 + len(piece) > WIDTH:
            lines.append(inner + line)
            line = piece
        else:
            line = f"{line} {piece}" if line else piece
    lines.append(inner + line)
    return "[\n" + "\n".join(lines) + "\n" + indent + "]"


def names(idents: Sequence[A.Ident]) -> str:
    return ", ".join(i.name for i in idents)


def rng(r: A.Range) -> str:
    return f"{r.lo}..{r.hi}"


def domain(d: A.Domain) -> str:
    if isinstance(d, A.Ident):
        return d.name
    if isinstance(d, A.Range):
        return rng(d)
    return literals(d.items)


# Binding strength, loosest first; an operand weaker than its slot needs parentheses.
_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _ATOM = range(1, 8)


def _strength(e: A.Expr) -> int:
    if isinstance(e, A.Logic):
        return _OR if e.op == "or" else _AND
    if isinstance(e, A.Negation):
        return _NOT
    if isinstance(e, A.Binary):
        if e.op in ("+", "-"):
            return _SUM
        if e.op in ("*", "//", "%"):
            return _PRODUCT
        return _COMPARE
    return _ATOM


def expr(e: A.Expr, need: int = _OR) -> str:
    text = _expr(e)
    return f"({text})" if _strength(e) < need else text


def _expr(e: A.Expr) -> str:
    match e:
        case A.Ref(name):
            return name
        case A.Literal():
            return literal(e)
        case A.ListExpr(items):
            return literals(items)
        case A.Logic(op, operands):
            inner = _AND if op == "or" else _NOT
            return f" {op} ".join(expr(o, inner) for o in operands)
        case A.Negation(operand):
            return "not " + expr(operand, _NOT)
        case A.Binary(op, left, right):
            s = _strength(e)
            if s == _COMPARE:
                return f"{expr(left, _SUM)} {op} {expr(right, _SUM)}"
            return f"{expr(left, s)} {op} {expr(right, s + 1)}"
    raise TypeError(f"not an expression node: {e!r}")


def _pos_base(b: A.PosBase) -> str:
    match b:
        case A.PosLast():
            return "last"
        case A.PosFirst():
            return "first"
        case A.PosRef(name):
            return name.name
        case A.PosVar(variable, token, occurrence):
            text = ("last " if token == "last" else "") + f"token of {variable.name}"
            if occurrence == -1:
                text += " occurrence last"
            elif occurrence != 1:
                text += f" occurrence {occurrence}"
            return text
    raise TypeError(f"not a position: {b!r}")


def _side(s: A.AnswerSide) -> str:
    text = quote(str(s.text.value))
    if s.binder is not None and s.domain is not None:
        text += f" for {s.binder.name} in {domain(s.domain)}"
        if s.where is not None:
            text += f" where {expr(s.where)}"
    return text


def statement(st: object, depth: int = 0) -> str:
    """One statement (not a block) as source text, its first line without indentation. It spans
    lines inside a triple-quoted string, or when it is too long and has lists to wrap."""
    flat = _statement(st)
    if len(INDENT * depth) + max(len(line) for line in flat.split("\n")) <= WIDTH:
        return flat
    _wrap_at.append(INDENT * depth)
    try:
        return _statement(st)
    finally:
        _wrap_at.pop()


def _statement(st: object) -> str:
    match st:
        case A.Include(path):
            return f"include {literal(path)}"
        case A.Vocab(name, values, file):
            if values is None:
                return f"vocab {name.name} from {literal(file)}"
            return f"vocab {name.name} = {literals(values)}"
        case A.Source(kind, args):
            return " ".join(["source", kind.name, *(literal(a) for a in args)])
        case A.Setting(key, value):
            return f"{key} {value.name}"
        case A.BatchSize(value):
            return f"batch_size {value}"
        case A.Names(key, idents):
            return f"{_NAMES_KEYWORDS.get(key, key)} {names(idents)}"
        case A.Var(name, dom, where):
            return f"var {name.name} in {domain(dom)}" + (f" where {expr(where)}" if where is not None else "")
        case A.Template(guard, text):
            return "template " + (f"when {expr(guard)}: " if guard is not None else "") + literal(text)
        case A.Answer(answer, distractor):
            return f"answer {_side(answer)} against {_side(distractor)}"
        case A.Position(name, base, offset):
            shift = f" + {offset}" if offset > 0 else f" - {-offset}" if offset < 0 else ""
            return f"position {name.name} = {_pos_base(base)}{shift}"
        case A.Split(by, train, test):
            head = f"split by {names(by)}: " if by else "split "
            return f"{head}train {number(train)}, test {number(test)}"
        case A.Samples(count, seed):
            return f"samples {count}" + (f" seed {seed}" if seed is not None else "")
        case A.Hook(location):
            return f"hook {literal(location)}"
        case A.Layers(layers):
            return "layers " + (rng(layers) if isinstance(layers, A.Range) else ", ".join(str(x) for x in layers))
        case A.Select(kind, value, per_family):
            return (f"select top {int(value)}" + (" per family" if per_family else "")) if kind == "top" else f"select fraction {number(value)}"
        case A.Method(value, steps):
            return f"method {value.name}" + (f" steps {steps}" if steps is not None else "")
        case A.Saes(refs, reconstruct):
            return "saes " + ", ".join(_sae_ref(r) for r in refs) + (f" reconstruct {reconstruct.name}" if reconstruct else "")
        case A.Baselines(items):
            return "baselines " + ", ".join(b.name.name + (f" {b.components}" if b.components is not None else "") for b in items)
        case A.Report(out_dir, formats):
            return f"report {literal(out_dir)}" + (f" as {names(formats)}" if formats else "")
        case A.Corpus(path):
            return f"corpus {literal(path)}"
    raise TypeError(f"not a statement: {st!r}")


# `Names` statements whose keyword is two words.
_NAMES_KEYWORDS = {"counterfactual": "counterfactual resample", "accept": "accept preprocessing"}


def _sae_ref(r: A.SaeRef) -> str:
    if r.index is None:
        return r.name.name
    index = rng(r.index) if isinstance(r.index, A.Range) else str(r.index)
    return f"{r.name.name}[{index}]"


def _header(block: object) -> str:
    match block:
        case A.Model(name):
            return f"model {name.name}"
        case A.Task(name):
            return f"task {name.name}"
        case A.Sae(name, family):
            if family is None:
                return f"sae {name.name}"
            return f"sae {name.name}[{family.index.name}] for {family.binder.name} in {rng(family.range)}"
        case A.Eval(name):
            return f"eval {name.name}"
        case A.Locate():
            return "locate"
        case A.GroundTruth():
            return "ground_truth"
    raise TypeError(f"not a block: {block!r}")


_BLOCKS = (A.Model, A.Task, A.Sae, A.Eval, A.Locate, A.GroundTruth)


# --- layout with comments ---------------------------------------------------------------------


class _Printer:
    def __init__(self, comments: Sequence[A.Comment], blank_lines: set[int]):
        self.comments = sorted(comments, key=lambda c: (c.line, c.column))
        self.next = 0  # the first comment not yet printed
        self.blank = blank_lines
        self.lines: list[str] = []
        self.last = 0  # the source line of the last thing printed

    def module(self, module: A.Module) -> str:
        previous: object | None = None
        for item in module.items:
            if previous is not None and (isinstance(item, _BLOCKS) or isinstance(previous, _BLOCKS)):
                self._blank()
            self._node(item, 0, first=previous is None)
            previous = item
        self._comments_before(None, 0, first=previous is None)
        return "\n".join(self.lines).rstrip("\n") + "\n" if self.lines else ""

    def _node(self, node: object, depth: int, first: bool) -> None:
        span: A.Span = node.span  # type: ignore[attr-defined]
        if self._comments_before(span.line, depth, first):
            first = False
        if not first and self._gap(span.line):
            self._blank()
        if isinstance(node, _BLOCKS):
            self._block(node, depth)
        else:
            self._leaf(statement(node, depth), span, depth)
        self.last = max(self.last, span.end_line)

    def _block(self, node: object, depth: int) -> None:
        span: A.Span = node.span  # type: ignore[attr-defined]
        body = node.body  # type: ignore[attr-defined]
        # A comment on the header line belongs to the header, unless a statement shares that line.
        shared = bool(body) and body[0].span.line == span.line
        self._emit(depth, _header(node) + " {" + ("" if shared else self._trailing_on(span.line)))
        self.last = span.line
        for i, child in enumerate(body):
            self._node(child, depth + 1, first=i == 0)
        self._comments_before(span.end_line, depth + 1, first=not body)
        self._emit(depth, "}" + self._trailing_on(span.end_line))

    def _leaf(self, text: str, span: A.Span, depth: int) -> None:
        inner = self._take(lambda c: c.line <= span.end_line)
        for c in inner[:-1]:  # comments inside a statement move above it
            self._emit(depth, c.text)
        trailing = f"  {inner[-1].text}" if inner else ""
        lines = text.split("\n")
        lines[-1] += trailing
        self._emit(depth, lines[0])
        self.lines.extend(lines[1:])  # wrapped lists come indented; triple-quoted strings verbatim

    def _comments_before(self, line: int | None, depth: int, first: bool) -> bool:
        taken = self._take(lambda c: line is None or c.line < line)
        for c in taken:
            if not first and self._gap(c.line):
                self._blank()
            self._emit(depth, c.text)
            self.last = c.line
            first = False
        return bool(taken)

    def _trailing_on(self, line: int) -> str:
        taken = self._take(lambda c: c.line <= line)
        if not taken:
            return ""
        return "  " + "  ".join(c.text for c in taken)  # one at most: a comment runs to the line's end

    def _take(self, pred: Callable[[A.Comment], bool]) -> list[A.Comment]:
        taken = []
        while self.next < len(self.comments) and pred(self.comments[self.next]):
            taken.append(self.comments[self.next])
            self.next += 1
        return taken

    def _gap(self, line: int) -> bool:
        return any(n in self.blank for n in range(self.last + 1, line))

    def _blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def _emit(self, depth: int, text: str) -> None:
        self.lines.append(INDENT * depth + text)
