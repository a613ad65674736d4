"""Reading results.json: find it, load it, check it against its schema (runtime/store/results_schema.json).

Readers (report, export, diff) go through `load`, so a document that breaks the contract fails
here with every problem named by its path, not later as a KeyError deep in a template. The
validator implements the subset of JSON Schema the schema file uses and refuses any other
keyword, so the schema cannot silently ask for a check nobody performs. No torch here: reading
results must not need the runtime's heavy dependencies.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "sagec.results/1"
RESULTS_FILE = "results.json"
MAX_PROBLEMS = 20

# Keywords that only document; everything else must be implemented below.
_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs"}
_TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


class ResultsError(ValueError):
    """A results.json that is missing, unreadable or breaks the schema."""


@cache
def schema() -> dict:
    return json.loads(resources.files("runtime.store").joinpath("results_schema.json").read_text(encoding="utf-8"))


def find(path: str | Path) -> Path:
    """results.json itself, or the one inside a run folder."""
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no {RESULTS_FILE}" if path.is_dir() else f"{path} does not exist"
        raise ResultsError(f"{where}; pass a folder `sagec run` wrote (its spec's `report` folder or --out)")
    return file


def load(path: str | Path) -> dict:
    """The validated document at `path` (a run folder or a results.json)."""
    file = find(path)
    try:
        # NaN would be a sentinel in disguise: the contract writes null with a reason instead.
        doc = json.loads(file.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError) as e:
        raise ResultsError(f"{file}: not readable JSON: {e}") from None
    return validate(doc, str(file))


def validate(doc: Any, name: str = RESULTS_FILE) -> dict:
    problems = errors(doc)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise ResultsError(f"{name} does not follow {SCHEMA_VERSION}:\n  " + "\n  ".join(shown) + more)
    return doc


def errors(doc: Any) -> list[str]:
    """Every way `doc` breaks the schema, as 'path: problem' lines (empty when it is valid)."""
    if isinstance(doc, dict) and doc.get("schema") not in (None, SCHEMA_VERSION):
        return [f"schema: {doc.get('schema')!r} is not {SCHEMA_VERSION!r}; this sagec reads only {SCHEMA_VERSION}"]
    root = schema()
    return list(_check(doc, root, root, ()))


def estimates(doc: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict]]:
    """Every estimate in the document (an object with `value` and `ci95`), with its key path."""
    if isinstance(doc, dict):
        if "value" in doc and "ci95" in doc:
            yield path, doc
            return
        for k, v in doc.items():
            yield from estimates(v, (*path, str(k)))


def at(tree: Any, path: tuple[str, ...]) -> Any:
    """The entry at `path` in a results document (nested keys), or None where it is absent."""
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number in results.json (an undefined value is null with a reason)")


def _check(x: Any, s: dict, root: dict, path: tuple[str, ...]) -> Iterator[str]:
    where = "/".join(path) or "(document)"
    for key, rule in s.items():
        if key in _ANNOTATIONS:
            continue
        if key == "$ref":
            yield from _check(x, _resolve(root, rule), root, path)
        elif key == "type":
            kinds = rule if isinstance(rule, list) else [rule]
            if not any(_TYPES[k](x) for k in kinds):
                yield f"{where}: expected {' or '.join(kinds)}, found {_kind(x)}"
                return  # the other keywords would only repeat this
            if isinstance(x, float) and not math.isfinite(x):
                yield f"{where}: {x} is not a finite number"
        elif key == "const":
            if x != rule or type(x) is not type(rule):
                yield f"{where}: expected {rule!r}, found {x!r}"
        elif key == "enum":
            if not any(x == r and type(x) is type(r) for r in rule):
                yield f"{where}: {x!r} is not one of {', '.join(map(repr, rule))}"
        elif key == "required":
            if isinstance(x, dict):
                for field in rule:
                    if field not in x:
                        yield f"{where}: missing {field!r}"
        elif key == "properties":
            if isinstance(x, dict):
                for field, sub in rule.items():
                    if field in x:
                        yield from _check(x[field], sub, root, (*path, field))
        elif key == "additionalProperties":
            if isinstance(x, dict):
                extra = [k for k in x if k not in s.get("properties", {})]
                for field in extra:
                    if rule is False:
                        yield f"{where}: unexpected field {field!r}"
                    elif isinstance(rule, dict):
                        yield from _check(x[field], rule, root, (*path, field))
        elif key == "items":
            if isinstance(x, list):
                for i, item in enumerate(x):
                    yield from _check(item, rule, root, (*path, str(i)))
        elif key in ("minItems", "maxItems"):
            if isinstance(x, list) and (len(x) < rule if key == "minItems" else len(x) > rule):
                yield f"{where}: {len(x)} items, expected {'at least' if key == 'minItems' else 'at most'} {rule}"
        elif key == "minLength":
            if isinstance(x, str) and len(x) < rule:
                yield f"{where}: shorter than {rule} characters"
        elif key == "minimum":
            if _TYPES["number"](x) and x < rule:
                yield f"{where}: {x} is below the minimum {rule}"
        elif key == "pattern":
            if isinstance(x, str) and not re.search(rule, x):
                yield f"{where}: {x!r} does not match {rule}"
        elif key == "allOf":
            for sub in rule:
                yield from _check(x, sub, root, path)
        elif key == "anyOf":
            failures = [list(_check(x, sub, root, path)) for sub in rule]
            if all(failures):
                # A branch that fails on the type alone (the `null` of "object or null") says
                # less than the branches that got further; show those.
                deeper = [f for f in failures if not f[0].startswith(f"{where}: expected ")] or failures
                yield f"{where}: " + "; or ".join(_relative(f[0], where) for f in deeper)
        else:
            raise ValueError(f"results_schema.json uses {key!r}, which runtime/store/results.py does not implement")


def _relative(problem: str, where: str) -> str:
    """A nested problem without the path prefix its parent already printed."""
    for prefix in (f"{where}: ", f"{where}/"):
        if problem.startswith(prefix):
            return problem[len(prefix):]
    return problem


def _resolve(root: dict, ref: str) -> dict:
    if not ref.startswith("#/"):
        raise ValueError(f"results_schema.json: only local references are supported, not {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _kind(x: Any) -> str:
    return next((k for k, test in _TYPES.items() if k != "integer" and test(x)), type(x).__name__)
