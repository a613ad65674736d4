"""What report.html shows, derived from a validated results document.

The template only lays things out; every choice of what to compare lives here. The verdict ranks
SAEs on the metrics that judge a whole SAE against the ground truth (sufficiency, logit difference
recovered, necessity, and per attribute the smallest k that matches the supervised edit) by their mean rank over these, and says,
for each, whether the leader's 95% interval clears the runner-up's: a reader learns which SAE is
best and how sure the data are, before any plot.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from statistics import mean

from runtime.report import svg
from runtime.report.svg import Bar, Cell, Curve
from runtime.store import results

# Whole-SAE metrics: one estimate per SAE, comparable across SAEs whatever sites they serve.
HEADLINE = ("sufficiency", "logit_diff_recovered", "necessity")
# Per cross-section metrics; the SAE table shows their mean over the SAE's sites.
PER_SITE = (
    ("explained_variance", ("explained_variance",)),
    ("l0", ("l0",)),
    ("dead_fraction", ("dead_fraction",)),
    ("feature_centric", ("interpretability", "feature_centric")),
    ("value_centric", ("interpretability", "value_centric")),
    ("best_cosine", ("alignment", "best_cosine")),
    ("matched_cosine", ("alignment", "matched_cosine")),
)
LABELS = {
    "sufficiency": "sufficiency",
    "logit_diff_recovered": "LD recovered",
    "necessity": "necessity",
    "spliced_metric": "metric, SAE spliced",
    "explained_variance": "explained var.",
    "l0": "L0",
    "dead_fraction": "dead",
    "feature_centric": "feature F1≥0.8",
    "value_centric": "value F1≥0.8",
    "best_cosine": "best cosine",
    "matched_cosine": "matched cosine",
    "min_k": "min k",
}
F1_THRESHOLD = 0.8
_LOCATION = re.compile(r"^(?P<kind>\S+) (?P<layer>\d+)(?:\.(?P<head>\d+))?$")
# Column order within a layer: what the residual stream passes through, in order.
_KIND_ORDER = ("resid_pre", "head_z", "head", "attn_out", "resid_mid", "mlp_out", "resid_post")
_SHORT = {"head": "h", "head_z": "z", "attn_out": "attn", "mlp_out": "mlp"}  # column labels


@dataclass
class Column:
    key: str
    label: str
    direction: str | None
    description: str
    averaged: bool = False  # a mean over the SAE's cross-sections, without an interval


@dataclass
class Row:
    name: str
    color: str
    cells: dict[str, dict | None] = field(default_factory=dict)  # column key -> estimate


def build(doc: dict) -> dict:
    """The template's context."""
    scored = {name: entry for name, entry in doc["saes"].items() if entry.get("scores")}
    baselines = doc.get("baselines", {})
    colors = {name: svg.color(i) for i, name in enumerate(doc["saes"])}
    baseline_colors = {name: svg.color(len(colors) + i) for i, name in enumerate(baselines)}
    attributes = list(doc["ground_truth"].get("control", {}))
    columns, rows = _sae_table(scored, colors, attributes)
    baseline_columns, baseline_rows = _sae_table(baselines, baseline_colors, attributes)
    suites = doc.get("suites", {})
    suite_colors = {name: svg.color(len(colors) + len(baseline_colors) + i) for i, name in enumerate(suites)}
    scored_suites = {name: entry for name, entry in suites.items() if entry.get("scores")}
    suite_columns, suite_rows = _sae_table(scored_suites, suite_colors, attributes)
    return {
        "doc": doc,
        "suites": _suites(suites, suite_colors),
        "suite_columns": suite_columns,
        "suite_rows": suite_rows,
        "best_suite_by_column": _best_by_column(suite_columns, suite_rows),
        "colors": colors,
        "scored": scored,
        # Members of a family that serve no located cross-section were never loaded (and, for
        # the zoo, never built): they are named, not described.
        "loaded_saes": {name: entry for name, entry in doc["saes"].items() if entry.get("used") is not False},
        "unused_saes": [name for name, entry in doc["saes"].items() if entry.get("used") is False],
        "unscored": {name: entry.get("reason", "not scored") for name, entry in doc["saes"].items() if not entry.get("scores")},
        "verdict": _verdict(doc, scored, columns, rows),
        "against_baselines": _against_baselines(scored, baselines, attributes),
        "baseline_colors": baseline_colors,
        "baseline_columns": baseline_columns,
        "baseline_rows": baseline_rows,
        "columns": columns,
        "rows": rows,
        "best_by_column": _best_by_column(columns, rows),
        "site_columns": [c for c in columns if c.averaged],
        "site_rows": _site_rows(scored, colors),
        "locate": _locate(doc["locate"]),
        "ground_truth": _ground_truth(doc["ground_truth"], attributes),
        "validation_bars": _validation_bars(doc["ground_truth"], scored, colors),
        "control": _control(scored, colors, attributes, baselines, baseline_colors),
        "f1": _f1(scored, baselines),
        "text": _text(doc.get("text"), colors),
        "swatches": colors | {f"baseline {b}": c for b, c in baseline_colors.items()},
        "describe": svg.describe,
        "brief": svg.brief,
        "fmt": svg.fmt,
        "expression": expression,
    }


def _suites(suites: dict, colors: dict) -> list[dict]:
    """One line per suite (METHOD.md section 6): how much of the located circuit its members
    serve, which members reconstruct which cross-sections, the unused ones and why, and the
    supervised dictionary on the same cross-sections."""
    out = []
    for name, entry in suites.items():
        members = entry["members"]
        used = {m: e["sites"] for m, e in members.items() if e["used"]}
        out.append({
            "name": name,
            "color": colors[name],
            "reconstruct": entry["reconstruct"],
            "members": len(members),
            "used": used,
            "unused": {m: e.get("reason", "") for m, e in members.items() if not e["used"]},
            "coverage": entry["coverage"],
            "scores": entry.get("scores"),
            "reason": entry.get("reason"),
            "supervised": entry.get("supervised_on_same_sites"),
        })
    return out


def expression(e) -> str:
    """A checked spec expression (as results.json stores it: tagged objects) written as in a spec;
    compound operands are parenthesised, which is always correct if not always minimal."""
    if not isinstance(e, dict):
        return json.dumps(e)

    def operand(x) -> str:
        text = expression(x)
        return f"({text})" if isinstance(x, dict) and x.get("type") in ("Arith", "Compare", "BoolOp") else text

    match e.get("type"):
        case "Var":
            return e["name"]
        case "Const":
            return json.dumps(e["value"])
        case "ValueList":
            return "[" + ", ".join(json.dumps(v) for v in e["items"]) + "]"
        case "Arith" | "Compare":
            return f"{operand(e['left'])} {e['op']} {operand(e['right'])}"
        case "BoolOp":
            return f" {e['op']} ".join(operand(x) for x in e["operands"])
        case "Not":
            return f"not {operand(e['operand'])}"
    return json.dumps(e)


# --- the SAE table and the verdict ------------------------------------------------------------


def _sae_table(scored: dict, colors: dict, attributes: list[str]) -> tuple[list[Column], list[Row]]:
    any_scores = next(iter(scored.values()), {}).get("scores", {})
    columns = [Column(m, LABELS[m], any_scores[m]["direction"], any_scores[m]["description"]) for m in HEADLINE if m in any_scores]
    for a in attributes:
        if any(a in e["scores"].get("control", {}) for e in scored.values()):
            example = next(e["scores"]["control"][a]["min_k"] for e in scored.values() if a in e["scores"].get("control", {}))
            columns.append(Column(f"min_k:{a}", f"min k ({a})", example["direction"], example["description"] + f"; attribute {a}"))
    for key, path in PER_SITE:
        example = next((results.at(site, path) for e in scored.values() for site in e["scores"]["per_site"].values()), None)
        if example:
            columns.append(Column(key, LABELS[key], example["direction"], example["description"] + " (mean over the SAE's cross-sections)", averaged=True))
    rows = []
    for name, entry in scored.items():
        s = entry["scores"]
        row = Row(name, colors[name])
        for c in columns:
            if c.key in HEADLINE:
                row.cells[c.key] = s.get(c.key)
            elif c.key.startswith("min_k:"):
                row.cells[c.key] = s.get("control", {}).get(c.key.split(":", 1)[1], {}).get("min_k")
            else:
                path = dict(PER_SITE)[c.key]
                row.cells[c.key] = _site_mean([results.at(site, path) for site in s["per_site"].values()])
        rows.append(row)
    return columns, rows


def _best_by_column(columns: list[Column], rows: list[Row]) -> dict[str, str]:
    best = {}
    for c in columns:
        if c.direction is None or not rows:
            continue
        top = min(rows, key=lambda r: _sort_key(r.cells.get(c.key), c.direction))
        if (top.cells.get(c.key) or {}).get("value") is not None:
            best[c.key] = top.name
    return best


def _site_mean(estimates: list[dict | None]) -> dict:
    values = [e["value"] for e in estimates if e and e.get("value") is not None]
    if not values:
        return {"value": None, "ci95": [None, None], "n": 0, "reason": "undefined at every cross-section"}
    return {"value": mean(values), "ci95": [None, None], "n": len(values), "averaged": True}


@dataclass
class Finding:
    column: Column
    leader: str
    leader_estimate: dict
    runner: str | None
    runner_estimate: dict | None
    separated: bool | None  # the two 95% intervals do not overlap; None when one is undefined
    tied: bool = False
    supervised: dict | None = None  # the supervised dictionary on the leader's own cross-sections


def _verdict(doc: dict, scored: dict, columns: list[Column], rows: list[Row]) -> dict:
    if not scored:
        return {"best": None, "findings": [], "ranking": [], "wins": {}}
    findings = []
    for c in columns:
        if c.averaged or c.direction is None:
            continue
        ranked = sorted(rows, key=lambda r: _sort_key(r.cells.get(c.key), c.direction))
        leader = ranked[0]
        if leader.cells.get(c.key) is None or leader.cells[c.key].get("value") is None:
            continue
        runner = ranked[1] if len(ranked) > 1 else None
        runner_est = runner.cells.get(c.key) if runner else None
        tied = bool(runner_est) and runner_est.get("value") == leader.cells[c.key]["value"]
        supervised = (scored[leader.name].get("supervised_on_same_sites") or {}).get(c.key)
        findings.append(Finding(c, leader.name, leader.cells[c.key], runner.name if runner else None, runner_est, _separated(leader.cells[c.key], runner_est), tied, supervised))
    # A tie is nobody's lead.
    wins = {r.name: sum(f.leader == r.name and not f.tied for f in findings) for r in rows}
    clear = {r.name: sum(f.leader == r.name and bool(f.separated) for f in findings) for r in rows}
    # Best on average over every whole-SAE metric, not by counting first places: with many SAEs
    # and tied metrics, one narrow lead says little.
    ranks = {r.name: mean([_rank(rows, r.name, f.column) for f in findings]) if findings else 0.0 for r in rows}
    ranking = sorted(wins, key=lambda n: (ranks[n], -clear[n], -wins[n]))
    return {"best": ranking[0], "findings": findings, "ranking": ranking, "wins": wins, "clear_leads": clear, "ranks": ranks, "total": len(findings)}


def _sort_key(est: dict | None, direction: str | None) -> tuple:
    value = est.get("value") if est else None
    if value is None:
        return (1, 0.0)
    if direction == "one":  # a ratio whose ideal is 1: overshooting is no better than falling short
        return (0, abs(value - 1))
    return (0, -value if direction == "higher" else value)


def _rank(rows: list[Row], name: str, column: Column) -> int:
    """1 + how many SAEs do strictly better: tied SAEs share a rank."""
    key = {r.name: _sort_key(r.cells.get(column.key), column.direction) for r in rows}
    return 1 + sum(k < key[name] for k in key.values())


def _separated(a: dict | None, b: dict | None) -> bool | None:
    """Whether two 95% intervals miss each other; None when there is nothing to compare."""
    if not a or not b:
        return None
    (a_lo, a_hi), (b_lo, b_hi) = a["ci95"], b["ci95"]
    if None in (a_lo, a_hi, b_lo, b_hi):
        return None
    return a_hi < b_lo or b_hi < a_lo


def _site_rows(scored: dict, colors: dict) -> list[Row]:
    rows = []
    for name, entry in scored.items():
        variants, pairs = entry.get("variant_per_site", {}), entry.get("pair_per_site", {})
        for site, scores in entry["scores"]["per_site"].items():
            how = variants.get(site, "") + (f" with {pairs[site]['sae']}" if site in pairs else "")
            row = Row(f"{name} @ {site}" + (f" ({how})" if how else ""), colors[name])
            row.cells = {key: results.at(scores, path) for key, path in PER_SITE}
            rows.append(row)
    return rows


# --- located cross-sections -------------------------------------------------------------------


def _locate(locate: dict) -> dict:
    """Layer by position heatmaps: a row per layer, a column group per named position, and in
    each group a column per component (heads, MLP, ...) found at that layer."""
    candidates = locate["candidates"]
    parsed = {}
    for c in candidates:
        m = _LOCATION.match(c["location"])
        kind, layer, head = (m["kind"], int(m["layer"]), m["head"]) if m else (c["location"], -1, None)
        short = _SHORT.get(kind, kind)
        slot = f"{short}{head}" if head is not None else short
        order = (_KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER), int(head or 0))
        parsed[c["site"]] = (layer, slot, order)
    positions = list(dict.fromkeys(c["position"] for c in candidates))
    slots = [s for s, _ in sorted({(p[1], p[2]) for p in parsed.values()}, key=lambda x: x[1])]
    layers = sorted({p[0] for p in parsed.values()})
    rows = [f"layer {layer}" if layer >= 0 else "other" for layer in layers]
    columns = [f"{slot} @{pos}" for pos in positions for slot in slots]
    labels = [slot for _ in positions for slot in slots]
    groups = [(pos, len(slots)) for pos in positions]

    def grid(value_of, tip_of) -> dict[tuple[str, str], Cell]:
        cells = {}
        for c in candidates:
            layer, slot, _ = parsed[c["site"]]
            key = (f"layer {layer}" if layer >= 0 else "other", f"{slot} @{c['position']}")
            cells[key] = Cell(value_of(c), tip_of(c), c["selected"])
        return cells

    # The maps show what the method ranked by: integrated gradients under `method integrated`.
    field, score_name = ("integrated", "integrated gradients") if locate.get("method") == "integrated" else ("attribution", "attribution")
    maps = []
    for family in locate["families"]:
        scale = max((abs(c[field].get(family) or 0.0) for c in candidates), default=0.0)
        cells = grid(lambda c: c[field].get(family), lambda c: f"{c['site']}: {score_name} {svg.fmt(c[field].get(family))} ({family}){'; selected' if c['selected'] else ''}")
        maps.append({"family": family, "scale": scale, "svg": svg.heatmap(rows, columns, cells, label=f"{score_name}, {family}", shade=lambda v, s=scale: svg.diverging(v, s), column_groups=groups, column_labels=labels)})
    verified = [c for c in candidates if c["patching"] is not None]
    patching = None
    if verified:
        scale = max(abs(c["patching"]) for c in verified)
        cells = {k: v for k, v in grid(lambda c: c["patching"], lambda c: f"{c['site']}: patching effect {svg.fmt(c['patching'])} with the {c['family']} twin" if c["patching"] is not None else f"{c['site']}: not verified").items()}
        patching = {"scale": scale, "svg": svg.heatmap(rows, columns, cells, label="patching effect", shade=lambda v: svg.diverging(v, scale), column_groups=groups, column_labels=labels)}
    selected = [c for c in candidates if c["selected"]]
    return {"maps": maps, "patching": patching, "selected": selected, "verified": len(verified), "score_name": score_name}


# --- supervised dictionaries ------------------------------------------------------------------


def _ground_truth(gt: dict, attributes: list[str]) -> dict:
    validation = [Bar(LABELS.get(m, m), "supervised", gt.get(m), svg.PALETTE[2]) for m in HEADLINE]
    control = []
    for a in attributes:
        c = gt["control"][a]
        control.append(Bar(a, "edit success", c.get("edit_success"), svg.PALETTE[2]))
        control.append(Bar(a, "no intervention (floor)", c.get("no_intervention_agreement"), svg.MUTED))
    sites = list(gt["per_site"])
    columns = ["all attributes", *attributes]
    cells = {}
    for s in sites:
        per = gt["per_site"][s]
        for col in columns:
            est = per["explained_variance"] if col == "all attributes" else per["attribute_variance_explained"].get(col)
            if est is not None:
                cells[(s, col)] = Cell(est.get("value"), f"{s}, {col}: explained variance {svg.describe(est)}")
    return {
        "metrics": [(m, gt[m]) for m in ("clean_metric", "ablated_metric", "spliced_metric", *HEADLINE) if m in gt],
        "validation_svg": svg.bars(validation, label="supervised dictionary validation", references=[("ideal", 1.0)]),
        "control_svg": svg.bars(control, label="supervised control", references=[("every pair", 1.0)]) if control else None,
        "variance_svg": svg.heatmap(sites, columns, cells, label="explained variance per cross-section", shade=lambda v: svg.sequential(v), numbers=True, cell_w=58, cell_h=18),
    }


def _validation_bars(gt: dict, scored: dict, colors: dict) -> list[dict]:
    """Sufficiency, LD recovered and necessity: each SAE beside the supervised dictionary on the
    very same cross-sections, against the ideal 1 and the supervised dictionary on all of them."""
    charts = []
    for metric in HEADLINE:
        items = []
        for name, entry in scored.items():
            items.append(Bar(name, "SAE", entry["scores"].get(metric), colors[name]))
            items.append(Bar(name, "supervised, same sites", (entry.get("supervised_on_same_sites") or {}).get(metric), svg.MUTED))
        refs = [("ideal", 1.0)]
        if (gt.get(metric) or {}).get("value") is not None:
            refs.append(("supervised, all sites", gt[metric]["value"]))
        description = (gt.get(metric) or {}).get("description", "")
        charts.append({"metric": metric, "label": LABELS[metric], "description": description, "svg": svg.bars(items, label=metric, references=refs)})
    return charts


# --- control against k ------------------------------------------------------------------------


def _control(scored: dict, colors: dict, attributes: list[str], baselines: dict, baseline_colors: dict) -> list[dict]:
    """A panel per SAE and attribute: its edit success against k, with each baseline's on the
    same cross-sections beside it."""
    panels = []
    for name, entry in scored.items():
        for a in attributes:
            c = entry["scores"].get("control", {}).get(a)
            if not c:
                continue
            series = [Curve("SAE", _by_k(c), colors[name])]
            beside = {}
            for b, e in baselines.items():
                theirs = (((e["beside"].get(name) or {}).get("scores") or {}).get("control") or {}).get(a)
                if theirs:
                    series.append(Curve(b, _by_k(theirs), baseline_colors[b]))
                    beside[b] = theirs["min_k"]
            refs = [
                ("supervised", c["supervised_edit_success"].get("value"), "6 3"),
                ("no edit", c["no_intervention_agreement"].get("value"), "2 3"),
            ]
            plot = svg.curves(series, label=f"control {name} {a}", x_label="k latents", y_label="edit success", references=refs)
            panels.append({"sae": name, "attribute": a, "min_k": c["min_k"], "baselines": beside, "svg": plot})
    return panels


def _by_k(control: dict) -> list[tuple[float, dict]]:
    return sorted(((float(k), v["edit_success"]) for k, v in control["by_k"].items()), key=lambda p: p[0])


# --- against the baselines --------------------------------------------------------------------

# What an SAE must beat a trivial basis on (METHOD.md section 7): control through min k per
# attribute, and interpretability in both views, cross-section by cross-section.
INTERPRETABILITY = ("feature_centric", "value_centric")


@dataclass
class Comparison:
    label: str
    description: str
    sae: dict | None  # the SAE's estimate (or, for interpretability, its mean over cross-sections)
    baseline: str
    baseline_estimate: dict | None
    outcome: str  # "better" | "worse" | "mixed" | "overlap": 95% intervals apart in the SAE's favour, against, both, neither
    better_at: int | None = None  # interpretability: cross-sections where the SAE's interval is clear above
    worse_at: int | None = None
    sites: int | None = None


def _against_baselines(scored: dict, baselines: dict, attributes: list[str]) -> list[dict]:
    """One line per SAE: is it better than the best baseline on the cross-sections it serves?
    Per comparison the best baseline is the one with the best value there; the SAE is better on
    a comparison when their 95% intervals are apart in its favour (for interpretability, at some
    cross-section and at none the other way), and better overall when it is better on at least
    one comparison and worse on none."""
    lines = []
    for name, entry in scored.items():
        beside = {b: e["beside"][name]["scores"] for b, e in baselines.items() if (e["beside"].get(name) or {}).get("scores")}
        if not beside:
            continue
        comparisons = []
        for a in attributes:
            mine = entry["scores"].get("control", {}).get(a, {}).get("min_k")
            theirs = {b: s.get("control", {}).get(a, {}).get("min_k") for b, s in beside.items()}
            best = min(theirs, key=lambda b: _k_bounds(theirs[b])[0])
            outcome = _k_outcome(_k_bounds(mine), _k_bounds(theirs[best]))
            description = (mine or {}).get("description", "") + f"; attribute {a}"
            comparisons.append(Comparison(f"min k ({a})", description, mine, best, theirs[best], outcome))
        sites = entry["scores"]["per_site"]
        for view in INTERPRETABILITY:
            mine_at = {s: sites[s]["interpretability"][view] for s in sites}
            theirs_at = {b: {s: (sc["per_site"].get(s) or {}).get("interpretability", {}).get(view) for s in sites} for b, sc in beside.items()}
            best = max(theirs_at, key=lambda b: _site_mean(list(theirs_at[b].values())).get("value") or -1.0)
            apart = [_separated(mine_at[s], theirs_at[best][s]) for s in sites]
            ahead = [(mine_at[s].get("value") or 0.0) > ((theirs_at[best][s] or {}).get("value") or 0.0) for s in sites]
            better = sum(bool(x) and up for x, up in zip(apart, ahead, strict=True))
            worse = sum(bool(x) and not up for x, up in zip(apart, ahead, strict=True))
            outcome = "mixed" if better and worse else "better" if better else "worse" if worse else "overlap"
            example = next(iter(mine_at.values()))
            comparisons.append(Comparison(LABELS[view], example.get("description", ""), _site_mean(list(mine_at.values())), best,
                                          _site_mean(list(theirs_at[best].values())), outcome, better, worse, len(sites)))
        outcomes = {c.outcome for c in comparisons}
        won, lost = bool(outcomes & {"better", "mixed"}), bool(outcomes & {"worse", "mixed"})
        overall = "mixed" if won and lost else "better" if won else "worse" if lost else "indistinguishable"
        lines.append({"sae": name, "sites": len(sites), "overall": overall, "comparisons": comparisons})
    return lines


def _k_bounds(est: dict | None) -> tuple[float, float, float]:
    """min k as (value, low, high) with "no k up to the largest reaches" as infinity, which is
    what an undefined min k or upper bound means (runtime/sage/evaluate.min_k)."""
    inf = float("inf")
    if not est or est.get("value") is None:
        return inf, inf, inf
    low, high = est["ci95"]
    return est["value"], inf if low is None else low, inf if high is None else high


def _k_outcome(mine: tuple[float, float, float], theirs: tuple[float, float, float]) -> str:
    if mine[2] < theirs[1]:
        return "better"
    if theirs[2] < mine[1]:
        return "worse"
    return "overlap"


# --- interpretability -------------------------------------------------------------------------


def _f1(scored: dict, baselines: dict) -> dict | None:
    """A row per attribute value, a column per (SAE or baseline, cross-section): the F1 of the
    value's best latent (a baseline's best direction, active above its train median). Outlined
    cells pass the threshold; a value no latent passes is occluded, one several latents pass is
    split."""
    rows, columns, labels, groups, cells = [], [], [], [], {}
    occluded, split, pairs = {}, {}, {}
    for name, entry in [*scored.items(), *((f"baseline {b}", e) for b, e in baselines.items())]:
        sites = entry["scores"]["per_site"]
        groups.append((name, len(sites)))
        occluded[name] = split[name] = pairs[name] = 0
        for site, scores in sites.items():
            column = f"{name} @ {site}"
            columns.append(column)
            labels.append(site)
            for v in scores["interpretability"]["values"]:
                row = f"{v['attribute']} = {v['value']}"
                if row not in rows:
                    rows.append(row)
                f1 = v.get("best_f1")
                tip = (f"{column}, {row}: best F1 {svg.fmt(f1)} (latent {v.get('latent')}), precision {svg.fmt(v.get('precision'))}, "
                       f"recall {svg.fmt(v.get('recall'))}, {v['latents_above_threshold']} latents with F1 >= {F1_THRESHOLD}")
                cells[(row, column)] = Cell(f1, tip, f1 is not None and f1 >= F1_THRESHOLD)
                pairs[name] += 1
                occluded[name] += v["latents_above_threshold"] == 0
                split[name] += v["latents_above_threshold"] > 1
    if not rows:
        return None
    plot = svg.heatmap(rows, columns, cells, label="best F1 per attribute value", shade=svg.sequential, column_groups=groups, column_labels=labels, numbers=True, cell_w=40)
    return {"svg": plot, "occluded": occluded, "split": split, "pairs": pairs, "values": len(rows), "threshold": F1_THRESHOLD}


TEXT_COLUMNS = (("ce_loss_score", "CE loss score"), ("kl_div_score", "KL div score"), ("explained_variance", "explained var."),
                ("l0", "L0"), ("dead_fraction", "dead"))


def _text(text: dict | None, colors: dict) -> dict | None:
    """The loss-recovered table (METHOD.md section 8): one row per SAE spliced in over the corpus,
    SAEs that could not be with their reason."""
    if text is None:
        return None
    entries = text["saes"]
    example = next((e["scores"] for e in entries.values() if e.get("scores")), None)
    columns = [Column(k, label, example[k]["direction"], example[k]["description"]) for k, label in TEXT_COLUMNS] if example else []
    rows = [Row(name, colors.get(name, svg.color(0)), {c.key: e["scores"][c.key] for c in columns}) for name, e in entries.items() if e.get("scores")]
    return {"corpus": text["corpus"], "columns": columns, "rows": rows, "best": _best_by_column(columns, rows),
            "at": {name: e["location"] for name, e in entries.items()},
            "unscored": {name: e.get("reason", "not computed") for name, e in entries.items() if not e.get("scores")}}
