"""Mutation fuzzing of every shipped spec: broken specs get located diagnostics, never a crash.

From each spec in specs/, thousands of mutants (tokens deleted, duplicated, swapped or replaced,
names misspelt, the text truncated), with a fixed seed. Each mutant either checks cleanly or
raises SpecError whose every diagnostic points inside the file it names; nothing else may escape.
Mutants that still parse must also format idempotently and keep their meaning.
"""

import random
import re
from pathlib import Path

import pytest

from sagec.check import check_text
from sagec.diagnostics import SpecError
from sagec.fmt import format_source
from sagec.parse import parse

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.sage"))
# About 4,000 mutants in all, shared among the specs, so the run stays in seconds as specs are added.
MUTANTS_PER_SPEC = max(300, 3000 // max(len(SPECS), 1))

# Token boundaries for mutation only (the real lexer is the grammar's): strings, comments,
# words, numbers and operators.
_TOKEN = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_]\w*|\d+(?:\.\d+)?|\.\.|//|[=!<>]=|\S', re.S)
_LETTERS = "abcdefghijklmnopqrstuvwxyz_"


def _misspell(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    match rng.randrange(4):
        case 0:
            return word[:i] + word[i + 1 :] or "x"
        case 1:
            return word[:i] + rng.choice(_LETTERS) + word[i:]
        case 2:
            return word[:i] + rng.choice(_LETTERS) + word[i + 1 :]
        case _:
            return word[:i] + word[i + 1 : i + 2] + word[i] + word[i + 2 :] if i + 1 < len(word) else word + word[-1]


def mutants(text: str, count: int, seed: int):
    rng = random.Random(seed)
    tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    words = [(a, b) for a, b in tokens if text[a].isalpha() or text[a] == "_"]
    for _ in range(count):
        kind = rng.randrange(6)
        a, b = rng.choice(tokens)
        if kind == 0:  # delete a token
            yield text[:a] + text[b:]
        elif kind == 1:  # duplicate a token
            yield text[:b] + " " + text[a:b] + text[b:]
        elif kind == 2:  # swap a token with the next one
            i = tokens.index((a, b))
            if i + 1 < len(tokens):
                c, d = tokens[i + 1]
                yield text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
            else:
                yield text[:a]
        elif kind == 3:  # truncate anywhere, even inside a token
            yield text[: rng.randrange(len(text))]
        elif kind == 4:  # misspell a name or keyword
            a, b = rng.choice(words)
            yield text[:a] + _misspell(text[a:b], rng) + text[b:]
        else:  # put some other token of the file in this one's place
            c, d = rng.choice(tokens)
            yield text[:a] + text[c:d] + text[b:]


def _inside(diagnostic, sources: dict[str, str]) -> bool:
    source = sources.get(diagnostic.file)
    if source is None:
        source = Path(diagnostic.file).read_text(encoding="utf-8")
    lines = source.split("\n")
    if not 1 <= diagnostic.line <= len(lines):
        return False
    return 1 <= diagnostic.column <= len(lines[diagnostic.line - 1]) + 1


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_mutants_check_cleanly_or_are_located(path):
    original = path.read_text(encoding="utf-8")
    file = str(path)
    outcomes = {"clean": 0, "errors": 0}
    for i, text in enumerate(mutants(original, MUTANTS_PER_SPEC, seed=i_seed(path))):
        try:
            check_text(text, file)
            outcomes["clean"] += 1
        except SpecError as e:
            assert e.diagnostics, f"mutant {i}: SpecError without diagnostics"
            for d in e.diagnostics:
                assert _inside(d, {file: text}), f"mutant {i}: {d} outside the file\n{text}"
                d.render(text if d.file == file else None)
            outcomes["errors"] += 1
    assert outcomes["errors"] > MUTANTS_PER_SPEC // 2  # the mutations really do break things


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_mutants_that_parse_format_idempotently(path):
    original = path.read_text(encoding="utf-8")
    formatted = 0
    for text in mutants(original, MUTANTS_PER_SPEC // 3, seed=i_seed(path) + 1):
        try:
            tree = parse(text)
        except SpecError:
            continue
        once = format_source(text)
        assert format_source(once) == once, text
        assert parse(once) == tree, text
        formatted += 1
    assert formatted > 0


def i_seed(path: Path) -> int:
    return sum(path.name.encode())  # fixed per spec, independent of hash randomisation
