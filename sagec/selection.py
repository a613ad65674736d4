"""How many cross-sections a locate block selects, and why, in words (METHOD.md section 2).

The same sentence is printed by `sagec plan` (before anything ran: counts are the budget) and
written into results.json and the report by the locate pass (with the counts it found), so a
reader sees one rule in both places. The rule itself is implemented in runtime/sage/selection.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from sagec.spec import Locate

RESIDUALS = ("resid_pre", "resid_mid", "resid_post")
POOLS = ("sublayer", "residual")  # ranked apart: a residual stream sums every sublayer before it


def pool_of(component: str) -> str:
    return "residual" if component in RESIDUALS else "sublayer"


def pools(locate: Locate) -> tuple[str, ...]:
    """The pools a search space has candidates in, in POOLS order."""
    found = {pool_of(c) for c in locate.components}
    return tuple(p for p in POOLS if p in found)


def rule(locate: Locate, families: int) -> str:
    """The selection rule of one pool, e.g. 'top 6 in total over 4 twin families'."""
    fams = f"{families} twin famil{'y' if families == 1 else 'ies'}"
    by = "verified patching effect" if locate.method == "patching" else "integrated gradients" if locate.method == "integrated" else "attribution"
    if locate.top is not None and not locate.per_family:
        return f"top {locate.top} in total by {by}, interleaving {fams}"
    if locate.top is not None:
        return f"top {locate.top} per family by {by}, the union over {fams}"
    return f"those carrying at least {locate.fraction:g} of a family's total |{by}|, the union over {fams}"


def budget(locate: Locate, families: int) -> int | None:
    """At most how many one pool selects (None for a fraction: known only once scored)."""
    if locate.top is None:
        return None
    return locate.top if not locate.per_family else locate.top * max(families, 1)


def describe(locate: Locate, families: int, counts: Mapping[str, int] | None = None, candidates: Mapping[str, int] | None = None) -> str:
    """'6 selected: top 6 in total by attribution, interleaving 4 twin families', per pool;
    `counts` (what was selected per pool) and `candidates` (per pool) once locate ran."""
    parts = []
    for pool in pools(locate):
        n = counts.get(pool) if counts is not None else None
        if n is None:
            b = budget(locate, families)
            n_text = "up to " + str(b) if b is not None and locate.per_family else str(b) if b is not None else "some"
        else:
            n_text = str(n)
        what = "cross-section" if pool == "sublayer" else "residual-stream cross-section"
        among = f" of {candidates[pool]}" if candidates is not None and pool in candidates else ""
        plural = "" if n_text == "1" and not among else "s"  # "1 cross-section", "1 of 2 cross-sections"
        apart = " (ranked apart from the sublayers, with their own budget)" if pool == "residual" and len(pools(locate)) > 1 else ""
        parts.append(f"{n_text}{among} {what}{plural} selected{apart}: {rule(locate, families)}")
    return "; ".join(parts)
