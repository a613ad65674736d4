"""What `sagec run` prints when it is done: per eval, a table of the suites and the SAEs, ranked,
with their headline numbers and 95% intervals, the supervised dictionary beside them, and the
paths written. Read from the results documents just written (what the report shows, decided by
runtime/report/view.py's ranking), so the terminal never says something the files do not.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from runtime.report import view
from runtime.report.svg import fmt
from runtime.store import results

HEADLINE = (("sufficiency", "sufficiency"), ("logit_diff_recovered", "LD recovered"), ("necessity", "necessity"))


def estimate(est: dict | None) -> str:
    """value [low, high], or n/a; an undefined bound stays visible as n/a."""
    if not est or est.get("value") is None:
        return "n/a"
    lo, hi = est.get("ci95") or (None, None)
    return f"{fmt(est['value'])} [{fmt(lo)}, {fmt(hi)}]"


def ranked(entries: dict, attributes: list[str]) -> list[str]:
    """Names with scores, best first by their mean rank over the whole-SAE metrics (the
    report's verdict: runtime/report/view.py)."""
    scored = {name: e for name, e in entries.items() if e.get("scores")}
    if not scored:
        return []
    colors = dict.fromkeys(scored, "")
    columns, rows = view._sae_table(scored, colors, attributes)
    return view._verdict({}, scored, columns, rows)["ranking"]


def _min_k(scores: dict) -> str:
    parts = []
    for a, c in (scores.get("control") or {}).items():
        k = (c.get("min_k") or {}).get("value")
        parts.append(f"{a} {fmt(k) if k is not None else '>' + str(max((int(x) for x in c.get('by_k', {})), default=0))}")
    return ", ".join(parts) or "n/a"


def eval_table(doc: dict) -> Table:
    attributes = list(doc["ground_truth"].get("control", {}))
    gt = doc["ground_truth"]
    table = Table(title=f"{doc['eval']}: {doc['prompts']['task']} on {doc['model']['ref']}, {len(gt['sites'])} located cross-sections",
                  title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("suite / SAE")
    table.add_column("serves")
    for _, label in HEADLINE:
        table.add_column(label)
    table.add_column("min k")
    table.add_column("supervised, same sites (LD rec.)")
    suites = doc.get("suites", {})
    for i, name in enumerate(ranked(suites, attributes), start=1):
        e = suites[name]
        cover = e["coverage"]
        effect = cover["patching_effect"]["fraction"]
        serves = f"{cover['sites']['served']}/{cover['sites']['located']} sites" + (f", {fmt(effect)} of effect" if effect is not None else "")
        used = sum(m["used"] for m in e["members"].values())
        table.add_row(str(i), f"suite {name} ({used}/{len(e['members'])} members)", serves,
                      *(estimate(e["scores"].get(k)) for k, _ in HEADLINE), _min_k(e["scores"]),
                      estimate((e.get("supervised_on_same_sites") or {}).get("logit_diff_recovered")))
    for name in (n for n, e in suites.items() if not e.get("scores")):
        table.add_row("", f"suite {name}", "0 sites", "n/a", "n/a", "n/a", "n/a", suites[name].get("reason", ""))
    if suites:
        table.add_section()
    saes = doc["saes"]
    for i, name in enumerate(ranked(saes, attributes), start=1):
        e = saes[name]
        table.add_row(str(i), name, f"{len(e['sites'])} site{'s' if len(e['sites']) != 1 else ''}", *(estimate(e["scores"].get(k)) for k, _ in HEADLINE), _min_k(e["scores"]),
                      estimate((e.get("supervised_on_same_sites") or {}).get("logit_diff_recovered")))
    unused = [n for n, e in saes.items() if not e.get("scores")]
    if unused:
        names = ", ".join(unused) if len(unused) <= 6 else f"{len(unused)} SAEs: {', '.join(unused[:4])}, ..."
        table.add_row("", names, "0 sites", "", "", "", "", "unused: serve no located cross-section" if all(saes[n].get("used") is False for n in unused) else "not scored (see results.json)")
    table.add_section()
    table.add_row("", "supervised dictionary", f"all {len(gt['sites'])}", *(estimate(gt.get(k)) for k, _ in HEADLINE), "", "")
    return table


def print_summary(written: dict[str, Path], reports: dict[str, Path], console: Console, *, quiet: bool = False) -> None:
    """The tables (unless `quiet`), then every path written."""
    if not quiet:
        for name, path in written.items():
            console.print(eval_table(results.load(path)))
    for name, path in written.items():
        console.print(f"{name}: wrote {path}", highlight=False, soft_wrap=True)
    for name, path in reports.items():
        console.print(f"{name}: wrote {path}", highlight=False, soft_wrap=True)
