"""`sagec diff RUN_A RUN_B`: what changed between two runs, number by number and in their setups.

A metric's change means something only against its uncertainty, so each delta comes with whether
the two 95% intervals overlap (None when either interval is undefined). The setups compared are
the resolved specs (eval, model, task and SAE definitions, with source positions left out: moving
a line is no change), the prompt set, model and SAE identities, suites' members and coverage, and
package versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.store import results

IGNORED_KEYS = {"origin"}  # where a definition sits in the spec file, not what it says


def diff_runs(run_a: str | Path, run_b: str | Path) -> dict:
    a, b = results.load(run_a), results.load(run_b)
    return {"a": str(results.find(run_a)), "b": str(results.find(run_b)), **diff(a, b)}


def diff(a: dict, b: dict) -> dict:
    ests_a, ests_b = dict(results.estimates(a)), dict(results.estimates(b))
    rows = []
    for path in [p for p in ests_a if p in ests_b]:
        ea, eb = ests_a[path], ests_b[path]
        va, vb = ea.get("value"), eb.get("value")
        direction = ea.get("direction", eb.get("direction"))
        delta = vb - va if va is not None and vb is not None else None
        rows.append({
            "metric": "/".join(path),
            "direction": direction,
            "a": ea,
            "b": eb,
            "delta": delta,
            "intervals_overlap": _overlap(ea["ci95"], eb["ci95"]),
            "better": _better(va, vb, direction),
        })
    return {
        "setup": _setup_differences(_setup(a), _setup(b)),
        "metrics": rows,
        "only_in_a": ["/".join(p) for p in ests_a if p not in ests_b],
        "only_in_b": ["/".join(p) for p in ests_b if p not in ests_a],
    }


def render(d: dict) -> str:
    """The diff as text: setup differences, then every shared metric."""
    lines = [f"A: {d['a']}", f"B: {d['b']}", ""]
    lines.append(f"setup: {len(d['setup'])} difference{'s' if len(d['setup']) != 1 else ''}")
    lines += [f"  {s['path']}: {_short(s['a'])} -> {_short(s['b'])}" for s in d["setup"]]
    apart = [r for r in d["metrics"] if r["intervals_overlap"] is False]
    lines += ["", f"metrics: {len(d['metrics'])} in both, {len(apart)} with 95% intervals apart (marked *)"]
    width = max((len(r["metric"]) for r in d["metrics"]), default=6) + 2
    lines.append(f"  {'metric':<{width}} {'A':>10} {'B':>10} {'B - A':>10}  intervals")
    for r in d["metrics"]:
        arrow = {"higher": "↑", "lower": "↓", "one": "→1"}.get(r["direction"], " ")
        overlap = {True: "overlap", False: "apart *", None: "undefined"}[r["intervals_overlap"]]
        better = f", B {r['better']}" if r["better"] and r["intervals_overlap"] is False else ""
        lines.append(f"  {r['metric'] + ' ' + arrow:<{width}} {_num(r['a']['value']):>10} {_num(r['b']['value']):>10} {_num(r['delta'], sign=True):>10}  {overlap}{better}")
    for side in ("a", "b"):
        if d[f"only_in_{side}"]:
            lines += ["", f"only in {side.upper()}: " + ", ".join(d[f"only_in_{side}"])]
    return "\n".join(lines)


def _setup(doc: dict) -> dict:
    prompts = {k: v for k, v in doc["prompts"].items() if k != "examples"}
    return {
        "spec": _strip(doc["spec"]),
        "model": doc["model"],
        "prompts": prompts,
        "seeds": doc.get("seeds"),
        "saes": {name: e["sae"] for name, e in doc["saes"].items()},
        "baselines": {name: e["baseline"] for name, e in doc.get("baselines", {}).items()},
        # A suite's numbers are compared with the rest (results.estimates walks them); which
        # member reconstructs which cross-section, and the coverage, are its setup.
        "suites": {name: {"members": {m: x["sites"] for m, x in e["members"].items()}, "coverage": e["coverage"]} for name, e in doc.get("suites", {}).items()},
        "located": doc["locate"]["selected"],
        "versions": doc["versions"],
    }


def _setup_differences(a: Any, b: Any, path: str = "") -> list[dict]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in [*a, *(k for k in b if k not in a)]:
            sub = f"{path}/{k}" if path else str(k)
            if k not in a or k not in b:
                out.append({"path": sub, "a": a.get(k), "b": b.get(k)})
            else:
                out += _setup_differences(a[k], b[k], sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _setup_differences(x, y, f"{path}/{i}")]
    return [] if a == b else [{"path": path, "a": a, "b": b}]


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in IGNORED_KEYS}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _overlap(a: list, b: list) -> bool | None:
    if None in (*a, *b):
        return None
    return max(a[0], b[0]) <= min(a[1], b[1])


def _better(a: float | None, b: float | None, direction: str | None) -> str | None:
    """Whether B improves on A, by the metric's direction ("one": the closer to 1)."""
    if a is None or b is None or direction is None:
        return None
    if direction == "one":
        a, b, direction = abs(a - 1), abs(b - 1), "lower"
    if a == b:
        return "same"
    return "better" if (b > a) == (direction == "higher") else "worse"


def _num(x: float | None, sign: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.4g}" if sign else f"{x:.4g}"


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."
