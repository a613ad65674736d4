"""AST -> `sagec.spec.Spec`: resolve names, read vocabularies, expand families, check templates.

The checker reports every problem it finds, not only the first: each check records a Diagnostic
and carries on with a harmless stand-in, and `SpecError` is raised once at the end. Templates are
parsed by Jinja2's sandboxed environment and inspected with `jinja2.meta`; nothing in a spec is
ever executed here.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from sagec import ast as A
from sagec import names as N
from sagec import spec as S
from sagec.diagnostics import Diagnostic, SpecError
from sagec.locations import Location
from sagec.parse import parse

_JINJA = SandboxedEnvironment()
_FAMILY_INDEX = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_RESERVED_POSITIONS = ("last", "first")


def load_spec(path: str | os.PathLike[str]) -> S.Spec:
    """Parse and check a spec file and everything it includes; raise `SpecError` listing every
    problem (file, line, column, message) if there is any."""
    file = str(path)
    modules = load_modules(file)
    return check_modules(modules, file)


def check_text(text: str, file: str = "<string>") -> S.Spec:
    """Check source text as if it were the file `file` (includes resolve relative to it)."""
    modules = load_modules(file, text)
    return check_modules(modules, file)


def load_modules(file: str, text: str | None = None) -> list[A.Module]:
    """The file and its includes, each parsed once, included files before their includer."""
    loader = _Loader()
    loader.load(file, text, stack=(), at=None)
    if loader.diagnostics:
        raise SpecError(loader.diagnostics)
    return loader.modules


@dataclass
class _Loader:
    modules: list[A.Module] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def load(self, file: str, text: str | None, stack: tuple[str, ...], at: A.Include | None) -> None:
        key = os.path.realpath(file)
        if key in stack:
            chain = " -> ".join([*(_short(p) for p in stack[stack.index(key):]), _short(key)])
            assert at is not None  # the first file cannot be on the stack already
            self._error(at.path.span, f"include cycle: {chain}")
            return
        if key in self.seen:  # a diamond: shared definitions are merged once
            return
        self.seen.add(key)
        if text is None:
            try:
                text = Path(file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                reason = "no such file" if isinstance(e, FileNotFoundError) else f"cannot read it ({e.__class__.__name__})"
                if at is None:
                    self.diagnostics.append(Diagnostic(file, 1, 1, f"cannot read spec {file!r}: {reason}"))
                else:
                    self._error(at.path.span, f"cannot include {at.path.value!r}: {reason} ({file})")
                return
        try:
            module = parse(text, file)
        except SpecError as e:
            self.diagnostics.extend(e.diagnostics)
            return
        for item in module.items:
            if isinstance(item, A.Include):
                target = os.path.normpath(os.path.join(os.path.dirname(file), str(item.path.value)))
                self.load(target, None, (*stack, key), item)
        self.modules.append(module)

    def _error(self, span: A.Span, message: str) -> None:
        self.diagnostics.append(_diag(span, message))


def _short(path: str) -> str:
    return os.path.basename(path)


def _diag(span: A.Span, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span.file, span.line, span.column, message, span.end_line, span.end_column, hint=hint)


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """A did-you-mean hint, or the list of choices when it is short and nothing is close."""
    options = sorted(set(candidates))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if 0 < len(options) <= 12:
        return "expected one of: " + ", ".join(options)
    return None


_PLAIN_FIELD = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_JINJA_SYNTAX = ("{{", "}}", "{%", "%}", "{#", "#}")
_JINJA_CONSTANTS = {"true", "false", "none", "True", "False", "None"}


@lru_cache(maxsize=4096)
def template_names(source: str) -> tuple[frozenset[str], tuple[int, str] | None]:
    """The free names of a Jinja2 template, or (line, message) of its syntax error.

    Templates made only of text and `{{name}}` fields, nearly all of them, are read with a regular
    expression (Jinja's parser costs milliseconds a template on these machines); anything else goes
    through the sandboxed environment's parser and `jinja2.meta`.
    """
    fields = _PLAIN_FIELD.findall(source)
    rest = _PLAIN_FIELD.sub("", source)
    if not any(mark in rest for mark in _JINJA_SYNTAX) and not _JINJA_CONSTANTS.intersection(fields):
        return frozenset(fields), None
    try:
        tree = _JINJA.parse(source)
    except jinja2.TemplateSyntaxError as e:
        return frozenset(), (e.lineno or 1, e.message or "invalid template")
    return frozenset(meta.find_undeclared_variables(tree)), None


def check_modules(modules: Sequence[A.Module], file: str) -> S.Spec:
    checker = _Checker()
    spec = checker.run([item for m in modules for item in m.items], file)
    if checker.diagnostics:
        raise SpecError(checker.diagnostics)
    return spec


# --- the checker ------------------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, span: A.Span, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(_diag(span, message, hint))

    def unknown(self, ident: A.Ident | A.Ref, what: str, candidates: Iterable[str]) -> None:
        self.error(ident.span, f"unknown {what} '{ident.name}'", suggest(ident.name, candidates))

    def word(self, ident: A.Ident, what: str, choices: Sequence[str]) -> str:
        """An enumerated word (dtype, method, metric ...) from sagec.names."""
        if ident.name not in choices:
            self.unknown(ident, what, choices)
        return ident.name

    # -- top level ------------------------------------------------------------------------------

    def run(self, items: list[A.Decl], file: str) -> S.Spec:
        self.vocabs: dict[str, tuple[S.Value, ...]] = {}
        self.vocab_decls = self._unique([i for i in items if isinstance(i, A.Vocab)], "vocab")
        for v in self.vocab_decls.values():
            self.vocabs[v.name.name] = self._vocab(v)
        models = [self._model(m) for m in self._unique([i for i in items if isinstance(i, A.Model)], "model").values()]
        tasks = [self._task(t) for t in self._unique([i for i in items if isinstance(i, A.Task)], "task").values()]
        sae_decls = self._unique([i for i in items if isinstance(i, A.Sae)], "sae")
        self.families: dict[str, tuple[int, ...] | None] = {}  # name -> family indices (None: single)
        saes: list[S.Sae] = []
        for decl in sae_decls.values():
            saes.extend(self._sae(decl))
        self.models = {m.name: m for m in models}
        self.tasks = {t.name: t for t in tasks}
        self.saes = {s.name: s for s in saes}
        evals = [self._eval(e) for e in self._unique([i for i in items if isinstance(i, A.Eval)], "eval").values()]
        return S.Spec(file, tuple(models), tuple(tasks), tuple(saes), tuple(evals))

    def _unique(self, decls: list, kind: str) -> dict:
        out: dict = {}
        for d in decls:
            name = d.name.name
            if name in out:
                first = out[name].name.span
                self.error(d.name.span, f"duplicate {kind} '{name}' (first declared at {first.file}:{first.line}:{first.column})")
            else:
                out[name] = d
        return out

    def _settings(self, body: Iterable, allowed: dict[str, type], block: str) -> dict:
        """Statements of a block keyed by their keyword; wrong-block and repeated ones reported."""
        out: dict = {}
        for st in body:
            key = _key(st)
            if key not in allowed or not isinstance(st, allowed[key]):
                self.error(st.span, f"'{key}' does not belong in {block}", suggest(key, allowed))
                continue
            if key in out:
                self.error(st.span, f"'{key}' is given twice in {block} (first at line {out[key].span.line})")
                continue
            out[key] = st
        return out

    # -- vocabularies ---------------------------------------------------------------------------

    def _vocab(self, v: A.Vocab) -> tuple[S.Value, ...]:
        if v.values is not None:
            values = self._values(v.values, f"vocab '{v.name.name}'")
            if not values:
                self.error(v.span, f"vocab '{v.name.name}' is empty")
            return values
        assert v.file is not None
        path = _relative(v.span.file, str(v.file.value))
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            reason = "no such file" if isinstance(e, FileNotFoundError) else f"cannot read it ({e.__class__.__name__})"
            self.error(v.file.span, f"vocab '{v.name.name}': {reason}: {path}")
            return ()
        # One value per line; blank lines and `#` lines are skipped so lists can be annotated.
        values = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
        if not values:
            self.error(v.file.span, f"vocab '{v.name.name}' is empty: {path} has no values")
        if len(set(values)) != len(values):
            dup = next(x for i, x in enumerate(values) if x in values[:i])
            self.error(v.file.span, f"vocab '{v.name.name}' lists {dup!r} twice ({path})")
        return values

    def _values(self, items: Sequence[A.Literal], what: str) -> tuple[S.Value, ...]:
        seen: dict[S.Value, A.Literal] = {}
        for lit in items:
            if lit.value in seen and type(lit.value) is type(seen[lit.value].value):
                self.error(lit.span, f"{what} lists {lit.value!r} twice")
            else:
                seen[lit.value] = lit
        return tuple(lit.value for lit in items)

    def _range(self, r: A.Range, what: str) -> tuple[int, ...]:
        if r.lo > r.hi:
            self.error(r.span, f"{what}: the range {r.lo}..{r.hi} is reversed and so empty", f"did you mean {r.hi}..{r.lo}?")
            return ()
        return tuple(range(r.lo, r.hi + 1))

    def _domain(self, d: A.Domain, what: str) -> tuple[S.Value, ...] | None:
        """The values of a domain; None when unknown (already reported)."""
        if isinstance(d, A.Ident):
            if d.name not in self.vocabs:
                self.unknown(d, "vocab", self.vocabs)
                return None
            return self.vocabs[d.name]
        if isinstance(d, A.Range):
            return self._range(d, what) or None
        values = self._values(d.items, what)
        if not values:
            self.error(d.span, f"{what}: the domain is empty")
            return None
        return values

    # -- models ---------------------------------------------------------------------------------

    def _model(self, m: A.Model) -> S.Model:
        what = f"model '{m.name.name}'"
        st = self._settings(m.body, {"source": A.Source, "dtype": A.Setting, "device": A.Setting, "remote": A.Setting, "batch_size": A.BatchSize}, f"a model block")
        source, ref = "hub", ""
        if "source" not in st:
            self.error(m.name.span, f"{what} needs a source, e.g. `source hub \"gpt2\"` or `source zoo \"smollm2-135m\"`")
        else:
            src: A.Source = st["source"]
            source = self.word(src.kind, "model source", N.MODEL_SOURCES)
            if len(src.args) != 1:
                self.error(src.span, f"a model source takes one string, e.g. `source {source} \"...\"`")
            if src.args:
                ref = str(src.args[0].value)
                if source in ("path", "gguf"):
                    ref = _relative(src.span.file, ref)
                    if not os.path.exists(ref):
                        self.error(src.args[0].span, f"{what}: no such {'file' if source == 'gguf' else 'folder'}: {ref}")
        dtype = self.word(st["dtype"].value, "dtype", N.DTYPES) if "dtype" in st else "float32"
        device = self.word(st["device"].value, "device", N.DEVICES) if "device" in st else "cpu"
        remote = self.word(st["remote"].value, "remote backend", N.REMOTES) if "remote" in st else None
        batch = None
        if "batch_size" in st:
            batch = st["batch_size"].value
            if batch < 1:
                self.error(st["batch_size"].span, "batch_size must be at least 1")
        return S.Model(m.name.name, source, ref, dtype, device, remote, batch, m.span.origin)

    # -- tasks ----------------------------------------------------------------------------------

    def _task(self, t: A.Task) -> S.Task:
        tname = t.name.name
        what = f"task '{tname}'"
        variables: dict[str, S.Variable] = {}
        var_decls: dict[str, A.Var] = {}
        for st in t.body:
            if isinstance(st, A.Var):
                name = st.name.name
                if name in var_decls:
                    self.error(st.name.span, f"duplicate variable '{name}' in {what} (first declared at line {var_decls[name].span.line})")
                    continue
                if name == N.TEMPLATE_VARIABLE:
                    self.error(st.name.span, f"'{name}' is reserved: it names the template a prompt was rendered from")
                var_decls[name] = st
                domain = self._domain(st.domain, f"variable '{name}'")
                variables[name] = S.Variable(name, domain or (), st.span.origin)
        scope = set(variables)
        constraints = tuple(self._expr(st.where, scope, f"the constraint on '{st.name.name}'") for st in var_decls.values() if st.where is not None)

        templates: list[S.Template] = []
        template_vars: list[tuple[A.Template, frozenset[str]]] = []
        for st in t.body:
            if isinstance(st, A.Template):
                used = self._jinja(st.text, scope, "template")
                if used is not None:  # a template that does not parse has been reported already
                    template_vars.append((st, used))
                guard = self._expr(st.guard, scope, "the template's guard") if st.guard is not None else None
                templates.append(S.Template(str(st.text.value), guard, st.span.origin))
        if not templates:
            self.error(t.name.span, f"{what} has no template")

        single = self._settings(
            [st for st in t.body if not isinstance(st, (A.Var, A.Template, A.Position))],
            {"answer": A.Answer, "counterfactual": A.Names, "attributes": A.Names, "split": A.Split, "samples": A.Samples},
            "a task block",
        )
        answer = self._answer(single.get("answer"), scope, t)
        counterfactual = self._var_list(single.get("counterfactual"), scope, "counterfactual")
        if counterfactual and all(len(variables[v].domain) <= 1 for v in counterfactual):
            self.error(single["counterfactual"].span, "the counterfactual twin would equal the prompt: every variable it resamples has a single value")
        attributes = self._var_list(single.get("attributes"), scope, "attribute")
        for key, example in (("counterfactual", "counterfactual resample io, s"), ("attributes", "attributes io, s")):
            if key not in single:
                self.error(t.name.span, f"{what} needs `{key} ...`, e.g. `{example}`")
        positions = self._positions([st for st in t.body if isinstance(st, A.Position)], scope, template_vars)
        split = self._split(single.get("split"), variables, set(attributes), len(templates), t)
        samples, seed = 1, 0
        if "samples" not in single:
            self.error(t.name.span, f"{what} needs `samples N` (how many prompts to draw), e.g. `samples 256 seed 0`")
        else:
            s: A.Samples = single["samples"]
            samples, seed = s.count, s.seed if s.seed is not None else 0
            if samples < 1:
                self.error(s.span, "samples must be at least 1")
        return S.Task(
            tname, tuple(variables.values()), constraints, tuple(templates), answer, counterfactual, positions,
            attributes, split, samples, seed, t.span.origin,
        )

    def _jinja(self, text: A.Literal, scope: set[str], what: str) -> frozenset[str] | None:
        """Parse a template (never render it); report syntax errors and undeclared names.
        The names it reads, or None if it does not parse."""
        used, problem = template_names(str(text.value))
        if problem is not None:
            lineno, message = problem
            line = text.span.line + lineno - 1
            column = text.span.column if line == text.span.line else 1
            self.diagnostics.append(Diagnostic(text.span.file, line, column, f"{what} syntax error: {message}"))
            return None
        for name in sorted(used - scope):
            self.error(text.span, f"{what} uses '{{{{{name}}}}}', which is not a variable here", suggest(name, scope))
        return used

    def _answer(self, st: A.Answer | None, scope: set[str], t: A.Task) -> S.Answer:
        if st is None:
            self.error(t.name.span, f"task '{t.name.name}' needs an answer, e.g. `answer \" {{{{io}}}}\" against \" {{{{s}}}}\"`")
            return S.Answer(S.AnswerSide(""), S.AnswerSide(""), t.span.origin)
        return S.Answer(self._side(st.answer, scope, "answer"), self._side(st.distractor, scope, "distractor"), st.span.origin)

    def _side(self, side: A.AnswerSide, scope: set[str], what: str) -> S.AnswerSide:
        if side.binder is None:
            self._jinja(side.text, scope, what)
            return S.AnswerSide(str(side.text.value))
        b = side.binder.name
        if b in scope:
            self.error(side.binder.span, f"the {what}'s set variable '{b}' shadows a task variable; pick another name")
        assert side.domain is not None
        domain = self._domain(side.domain, f"the {what} set") or ()
        inner = scope | {b}
        self._jinja(side.text, inner, what)
        where = self._expr(side.where, inner, f"the {what} set's filter") if side.where is not None else None
        return S.AnswerSide(str(side.text.value), b, domain, where)

    def _var_list(self, st: A.Names | None, scope: set[str], what: str) -> tuple[str, ...]:
        if st is None:
            return ()
        out: list[str] = []
        for ident in st.names:
            if ident.name not in scope:
                self.unknown(ident, f"variable", scope)
            elif ident.name in out:
                self.error(ident.span, f"'{ident.name}' is listed twice")
            else:
                out.append(ident.name)
        return tuple(out)

    def _positions(self, decls: list[A.Position], scope: set[str], templates: list[tuple[A.Template, frozenset[str]]]) -> tuple[S.Position, ...]:
        by_name: dict[str, A.Position] = {}
        for p in decls:
            name = p.name.name
            if name in _RESERVED_POSITIONS:
                self.error(p.name.span, f"'{name}' is reserved for the position keyword; pick another name")
            elif name in by_name:
                self.error(p.name.span, f"duplicate position '{name}' (first declared at line {by_name[name].span.line})")
            else:
                by_name[name] = p
        resolved: dict[str, S.Position | None] = {}

        def resolve(p: A.Position, chain: tuple[str, ...]) -> S.Position | None:
            name = p.name.name
            if name in resolved:
                return resolved[name]
            origin = p.span.origin
            base = p.base
            result: S.Position | None
            if isinstance(base, A.PosLast):
                result = S.Position(name, "last", None, 1, "last", p.offset, origin)
            elif isinstance(base, A.PosFirst):
                result = S.Position(name, "first", None, 1, "first", p.offset, origin)
            elif isinstance(base, A.PosVar):
                var = base.variable.name
                result = S.Position(name, "var", var, base.occurrence, base.token, p.offset, origin)
                if var not in scope:
                    self.unknown(base.variable, "variable", scope)
                    result = None
                else:
                    for tpl, used in templates:
                        if var not in used:
                            self.error(base.variable.span, f"position '{name}' needs '{var}' in every template, but the template at line {tpl.span.line} does not use it")
                            break
                if base.occurrence == 0 or base.occurrence < -1:
                    self.error(base.span, "occurrences count from 1 (or `occurrence last`)")
            else:
                target = base.name.name
                if target in chain:
                    self.error(base.name.span, f"position '{name}' is defined in terms of itself ({' -> '.join((*chain, target))})")
                    result = None
                elif target not in by_name:
                    self.unknown(base.name, "position", list(by_name) + ["last", "first"])
                    result = None
                else:
                    ref = resolve(by_name[target], (*chain, target))
                    result = None if ref is None else S.Position(name, ref.kind, ref.variable, ref.occurrence, ref.token, ref.offset + p.offset, origin)
            resolved[name] = result
            return result

        out = [resolve(p, (p.name.name,)) for p in by_name.values()]
        return tuple(p for p in out if p is not None)

    def _split(self, st: A.Split | None, variables: dict[str, S.Variable], attributes: set[str], templates: int, t: A.Task) -> S.Split:
        if st is None:
            return S.Split((), 0.5, 0.5, t.span.origin)
        by: list[str] = []
        for ident in st.by:
            name = ident.name
            if name in attributes:
                self.error(
                    ident.span, f"cannot split by '{name}': it is an attribute",
                    "every value of an attribute must occur in train; split by a non-attribute variable or by `template`",
                )
            elif name == N.TEMPLATE_VARIABLE:
                if templates < 2:
                    self.error(ident.span, "cannot split by 'template': the task has a single template")
                else:
                    by.append(name)
            elif name not in variables:
                self.unknown(ident, "variable", [*variables, N.TEMPLATE_VARIABLE])
            elif len(variables[name].domain) == 1:
                self.error(ident.span, f"cannot split by '{name}': it has a single value, so train and test cannot differ in it")
            else:
                by.append(name)
        if not (0 < st.train <= 1 and 0 < st.test <= 1):
            self.error(st.span, "train and test fractions must each lie in (0, 1]")
        elif st.train + st.test > 1 + 1e-9:
            self.error(st.span, f"train {st.train:g} + test {st.test:g} is more than 1")
        return S.Split(tuple(by), st.train, st.test, st.span.origin)

    def _expr(self, e: A.Expr, scope: set[str], what: str) -> S.Expr:
        match e:
            case A.Ref(name):
                if name not in scope:
                    self.error(e.span, f"unknown variable '{name}' in {what}", suggest(name, scope))
                return S.Var(name)
            case A.Literal(value):
                return S.Const(value)
            case A.ListExpr(items):
                return S.ValueList(tuple(i.value for i in items))
            case A.Binary(op, left, right):
                cls = S.Compare if op in N.COMPARE_OPS else S.Arith
                return cls(op, self._expr(left, scope, what), self._expr(right, scope, what))
            case A.Logic(op, operands):
                return S.BoolOp(op, tuple(self._expr(o, scope, what) for o in operands))
            case A.Negation(operand):
                return S.Not(self._expr(operand, scope, what))
        raise TypeError(f"not an expression node: {e!r}")

    # -- SAEs -----------------------------------------------------------------------------------

    def _sae(self, d: A.Sae) -> list[S.Sae]:
        name = d.name.name
        st = self._settings(d.body, {"source": A.Source, "hook": A.Hook, "accept": A.Names}, "an sae block")
        strings: list[A.Literal] = []
        if "source" in st:
            strings.extend(st["source"].args)
        if "hook" in st:
            strings.append(st["hook"].location)
        if d.family is None:
            self.families[name] = None
            for lit in strings:
                for m in _FAMILY_INDEX.finditer(str(lit.value)):
                    self.error(lit.span, f"'{{{{{m.group(1)}}}}}' in sae '{name}': only a family (`sae {name}[l] for l in 0..3`) substitutes an index")
            return [self._one_sae(name, d, st, {})]
        fam = d.family
        index = fam.index.name
        if fam.binder.name != index:
            self.error(fam.binder.span, f"the loop variable '{fam.binder.name}' must be the family index '{index}' (as in `{name}[{index}] for {index} in ...`)")
        members = self._range(fam.range, f"sae family '{name}'")
        self.families[name] = members
        used = {m.group(1) for lit in strings for m in _FAMILY_INDEX.finditer(str(lit.value))}
        for lit in strings:
            for m in _FAMILY_INDEX.finditer(str(lit.value)):
                if m.group(1) != index:
                    self.error(lit.span, f"'{{{{{m.group(1)}}}}}' in sae family '{name}': only the index '{{{{{index}}}}}' is substituted", suggest(m.group(1), [index]))
        if index not in used and strings:
            self.error(fam.index.span, f"the family index '{index}' is not used in the source or hook, so every member would be the same SAE", f"write {{{{{index}}}}} where the index goes, e.g. \"blocks.{{{{{index}}}}}.hook_resid_pre\"")
        return [self._one_sae(f"{name}[{i}]", d, st, {index: i}, first=i == members[0]) for i in members]

    def _one_sae(self, name: str, d: A.Sae, st: dict, env: dict[str, int], first: bool = True) -> S.Sae:
        """One SAE (a family member when `env` binds the index); problems common to all members
        are reported for the `first` only."""

        def sub(lit: A.Literal) -> str:
            return _FAMILY_INDEX.sub(lambda m: str(env[m.group(1)]) if m.group(1) in env else m.group(0), str(lit.value))

        source, ref, release, sae_id, hook = "zoo", None, None, None, None
        if "source" not in st:
            if first:
                self.error(d.name.span, f"sae '{d.name.name}' needs a source, e.g. `source sae_lens \"release\" \"id\"` or `source path \"saes/res\"`")
        else:
            src: A.Source = st["source"]
            source = self.word(src.kind, "sae source", N.SAE_SOURCES) if first else src.kind.name
            need = 2 if source == "sae_lens" else 1
            if len(src.args) != need and first:
                example = 'source sae_lens "release" "id"' if need == 2 else f'source {source} "..."'
                self.error(src.span, f"an sae source {source} takes {need} string{'s' if need > 1 else ''}, e.g. `{example}`")
            args = [sub(a) for a in src.args]
            if source == "sae_lens":
                release, sae_id = (args + [None, None])[:2]
            elif args:
                ref = args[0]
                if source == "path":
                    ref = _relative(src.span.file, ref)
                    if not os.path.isdir(ref):
                        self.error(src.args[0].span, f"sae '{name}': no such folder: {ref}")
        if "hook" in st:
            text = sub(st["hook"].location)
            try:
                hook = str(Location.parse(text))
            except ValueError as e:
                if first:
                    hint = suggest(text.split()[0], N.LOCATION_COMPONENTS) if text.split() else None
                    self.error(st["hook"].location.span, f"sae '{name}': bad hook: {e}", hint)
        accept: tuple[str, ...] = ()
        if "accept" in st:  # the same for every member: reported once
            accept = self._accept(st["accept"]) if first else tuple(i.name for i in st["accept"].names)
        return S.Sae(name, source, ref, release, sae_id, hook, d.span.origin, accept)

    def _accept(self, stmt: A.Names) -> tuple[str, ...]:
        """`accept preprocessing a, b`: option names; any name may appear in an SAE's config, but
        one close to a known option is taken for a typo, and reproduced options need no accepting."""
        out = []
        for ident in self._no_repeats(stmt.names):
            if ident.name in N.TL_NOTHING_TO_ACCEPT:
                self.error(ident.span, f"'{ident.name}' needs no accepting: sagec {'reproduces it' if ident.name == 'center_writing_weights' else 'is unaffected by it'}")
            elif ident.name not in N.TL_OPTIONS and difflib.get_close_matches(ident.name, N.TL_OPTIONS, n=1, cutoff=0.8):
                self.unknown(ident, "TransformerLens option", N.TL_OPTIONS)
            out.append(ident.name)
        return tuple(out)

    # -- evaluations ----------------------------------------------------------------------------

    def _eval(self, e: A.Eval) -> S.Eval:
        name = e.name.name
        st = self._settings(
            [s for s in e.body if not isinstance(s, A.Saes)],
            {"model": A.Setting, "task": A.Setting, "locate": A.Locate, "ground_truth": A.GroundTruth, "score": A.Names, "report": A.Report, "baselines": A.Baselines, "corpus": A.Corpus},
            "an eval block",
        )
        model = task = ""
        for key, table in (("model", self.models), ("task", self.tasks)):
            if key not in st:
                self.error(e.name.span, f"eval '{name}' needs `{key} NAME`")
                continue
            ident = st[key].value
            if ident.name not in table:
                self.unknown(ident, key, table)
            if key == "model":
                model = ident.name
            else:
                task = ident.name
        the_task = self.tasks.get(task)
        if "locate" not in st:
            self.error(e.name.span, f"eval '{name}' needs a `locate {{ ... }}` block")
            locate = S.Locate("attribution", (), None, (), None, None, False, e.span.origin)
        else:
            locate = self._locate(st["locate"], the_task)
        ground_truth = self._ground_truth(st.get("ground_truth"), e)
        uses = self._uses([s for s in e.body if isinstance(s, A.Saes)])
        score = N.METRICS
        if "score" in st:
            score = tuple(self.word(i, "metric", N.METRICS) for i in self._no_repeats(st["score"].names))
        report = self._report(st.get("report"), e)
        baselines = self._baselines(st["baselines"]) if "baselines" in st else ()
        corpus = self._corpus(st["corpus"], score) if "corpus" in st else None
        return S.Eval(name, model, task, locate, ground_truth, uses, score, report, e.span.origin, baselines, corpus)

    def _corpus(self, c: A.Corpus, score: Sequence[str]) -> str:
        """`corpus "file.txt"`: a text file, relative to the spec's folder, read only by the text metrics."""
        path = _relative(c.span.file, str(c.path.value))
        if not os.path.isfile(path):
            self.error(c.path.span, f"corpus: no such file: {path}")
        if not any(m in N.TEXT_METRICS for m in score):
            self.error(c.span, f"nothing reads this corpus: only {' and '.join(N.TEXT_METRICS)} do, and `score` lists neither",
                       f"add them to `score`, e.g. `score ..., {', '.join(N.TEXT_METRICS)}`")
        return path

    def _no_repeats(self, idents: Iterable[A.Ident]) -> list[A.Ident]:
        out: list[A.Ident] = []
        for i in idents:
            if any(o.name == i.name for o in out):
                self.error(i.span, f"'{i.name}' is listed twice")
            else:
                out.append(i)
        return out

    def _locate(self, loc: A.Locate, task: S.Task | None) -> S.Locate:
        st = self._settings(
            loc.body,
            {"method": A.Method, "components": A.Names, "layers": A.Layers, "positions": A.Names, "select": A.Select, "verify": A.Setting},
            "a locate block",
        )
        method = self.word(st["method"].value, "locate method", N.LOCATE_METHODS) if "method" in st else "attribution"
        steps = None
        if "method" in st and st["method"].steps is not None:
            steps = st["method"].steps
            if method != "integrated":
                self.error(st["method"].span, f"`steps` belongs to `method integrated` (the points of its path), not to method '{method}'")
            elif steps < 1:
                self.error(st["method"].span, f"method integrated needs at least 1 step on its path, got {steps}")
        if method == "integrated" and steps is None:
            steps = N.INTEGRATED_STEPS
        components: list[str] = []
        if "components" not in st:
            self.error(loc.span, "locate needs `components ...`, e.g. `components heads, mlp`")
        else:
            for ident in self._no_repeats(st["components"].names):
                canonical = N.COMPONENT_ALIASES.get(ident.name, ident.name)
                if canonical not in N.COMPONENTS:
                    self.unknown(ident, "component", [*N.COMPONENTS, *N.COMPONENT_ALIASES])
                elif canonical in components:
                    self.error(ident.span, f"'{ident.name}' names component '{canonical}' again")
                else:
                    components.append(canonical)
        layers: tuple[int, ...] | None = None
        if "layers" in st:
            spec_layers = st["layers"].layers
            if isinstance(spec_layers, A.Range):
                layers = self._range(spec_layers, "layers")
            else:
                layers = spec_layers
            if any(layer < 0 for layer in layers):
                self.error(st["layers"].span, "layers are numbered from 0")
            if len(set(layers)) != len(layers):
                self.error(st["layers"].span, "a layer is listed twice")
        known = [p.name for p in task.positions] if task else []
        positions: list[str] = []
        if "positions" in st:
            for ident in self._no_repeats(st["positions"].names):
                if task is not None and ident.name not in known:
                    self.error(ident.span, f"task '{task.name}' has no position '{ident.name}'", suggest(ident.name, known))
                positions.append(ident.name)
        elif task is not None:
            positions = known
            if not known:
                self.error(loc.span, f"task '{task.name}' names no positions for locate to search; add e.g. `position end = last`")
        top = fraction = None
        per_family = False
        if "select" not in st:
            self.error(loc.span, "locate needs `select top N` or `select fraction F`")
        else:
            sel: A.Select = st["select"]
            if sel.kind == "top":
                top = int(sel.value)
                per_family = sel.per_family
                if top < 1:
                    self.error(sel.span, "select top needs at least 1")
            else:
                fraction = float(sel.value)
                if not 0 < fraction <= 1:
                    self.error(sel.span, "select fraction must lie in (0, 1]")
        verify = False
        if "verify" in st:
            verify = self.word(st["verify"].value, "verification", ("patching",)) == "patching"
        return S.Locate(method, tuple(components), layers, tuple(positions), top, fraction, verify, loc.span.origin, steps, per_family)

    def _ground_truth(self, gt: A.GroundTruth | None, e: A.Eval) -> S.GroundTruth:
        if gt is None:
            return S.GroundTruth("mean", N.VALIDATIONS, e.span.origin)
        st = self._settings(gt.body, {"method": A.Setting, "validate": A.Names}, "a ground_truth block")
        method = self.word(st["method"].value, "dictionary method", N.DICTIONARY_METHODS) if "method" in st else "mean"
        validate = N.VALIDATIONS
        if "validate" in st:
            validate = tuple(self.word(i, "validation", N.VALIDATIONS) for i in self._no_repeats(st["validate"].names))
        return S.GroundTruth(method, validate, gt.span.origin)

    def _uses(self, stmts: list[A.Saes]) -> tuple[S.SaeUse, ...]:
        out: list[S.SaeUse] = []
        for st in stmts:
            reconstruct = self.word(st.reconstruct, "reconstruction", N.RECONSTRUCTIONS) if st.reconstruct else "residual"
            for ref in st.refs:
                for sae in self._members(ref):
                    use = S.SaeUse(sae, reconstruct)
                    if use in out:
                        self.error(ref.span, f"'{sae}' with reconstruct {reconstruct} is listed twice")
                    else:
                        out.append(use)
        return tuple(out)

    def _baselines(self, st: A.Baselines) -> tuple[S.Baseline, ...]:
        out: list[S.Baseline] = []
        for item in st.items:
            kind = self.word(item.name, "baseline", N.BASELINES)
            if item.components is not None and kind in N.BASELINES and kind not in N.TRUNCATABLE_BASELINES:
                self.error(item.span, f"baseline '{kind}' takes no number of components; only {', '.join(N.TRUNCATABLE_BASELINES)} can be truncated", f"write just '{kind}'")
            elif item.components is not None and item.components < 1:
                self.error(item.span, f"'{kind} {item.components}' keeps no component; it needs at least 1")
            baseline = S.Baseline(kind, item.components)
            if baseline in out:
                self.error(item.span, f"baseline '{baseline.name}' is listed twice")
            else:
                out.append(baseline)
        return tuple(out)

    def _members(self, ref: A.SaeRef) -> list[str]:
        name = ref.name.name
        if name not in self.families:
            self.unknown(ref.name, "sae", self.families)
            return []
        members = self.families[name]
        if members is None:
            if ref.index is not None:
                self.error(ref.span, f"sae '{name}' is a single SAE, not a family; write just '{name}'")
            return [name]
        if ref.index is None:
            self.error(ref.span, f"sae '{name}' is a family", f"write {name}[*] for every member or {name}[{members[0] if members else 0}] for one")
            return []
        if ref.index == "*":
            return [f"{name}[{i}]" for i in members]
        wanted = [ref.index] if isinstance(ref.index, int) else list(self._range(ref.index, f"members of '{name}'"))
        missing = [i for i in wanted if i not in members]
        if missing:
            span = f"{members[0]}..{members[-1]}" if members else "none"
            self.error(ref.span, f"sae family '{name}' has no member {missing[0]} (its indices are {span})")
        return [f"{name}[{i}]" for i in wanted if i in members]

    def _report(self, r: A.Report | None, e: A.Eval) -> S.Report:
        if r is None:
            return S.Report(_relative(e.span.file, f"runs/{e.name.name}"), N.REPORT_FORMATS)
        formats = tuple(self.word(i, "report format", N.REPORT_FORMATS) for i in self._no_repeats(r.formats)) or N.REPORT_FORMATS
        return S.Report(_relative(r.span.file, str(r.out_dir.value)), formats)


def _key(st: object) -> str:
    """The keyword a block statement starts with."""
    if isinstance(st, (A.Setting, A.Names)):
        return st.key
    if isinstance(st, A.Method):
        return "method"
    return {
        A.Source: "source", A.BatchSize: "batch_size", A.Hook: "hook", A.Answer: "answer", A.Split: "split",
        A.Samples: "samples", A.Corpus: "corpus", A.Locate: "locate", A.GroundTruth: "ground_truth", A.Report: "report",
        A.Layers: "layers", A.Select: "select", A.Saes: "saes", A.Baselines: "baselines", A.Var: "var", A.Template: "template", A.Position: "position",
    }[type(st)]


def _relative(including_file: str, path: str) -> str:
    """A path written in a spec, resolved against the folder of the file that wrote it."""
    return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(including_file)), os.path.expanduser(path)))
