"""The report's plots, drawn as inline SVG in Python: no script, no network, nothing to load.

Three shapes cover every figure: a heatmap (cross-sections, F1 per value), horizontal bars with
95% whiskers (sufficiency, necessity, validation), and curves with interval bands (control
against k). Every mark carries a <title>, so hovering shows the exact number and its interval.
Numbers arrive as estimates (`{"value", "ci95", "reason"?}`); an undefined one is drawn as a
hollow marker with its reason, never as zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

FONT = 11
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
MUTED = "#9aa5b1"


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x == 0 or 1e-3 <= abs(x) < 100:
        return f"{x:.3g}"
    return f"{x:.0f}" if 100 <= abs(x) < 1e6 else f"{x:.2e}"


def describe(est: dict | None) -> str:
    """An estimate as one line: value [low, high] (n), or n/a and why."""
    if not est:
        return "not computed"
    lo, hi = est.get("ci95") or (None, None)
    text = f"{fmt(est.get('value'))} [{fmt(lo)}, {fmt(hi)}] (n={est.get('n')})"
    return f"{text}: {est['reason']}" if est.get("reason") else text


def brief(est: dict | None) -> str:
    """An estimate as value [low, high]; its reason, if any, belongs in a tooltip."""
    if not est:
        return "not computed"
    lo, hi = est.get("ci95") or (None, None)
    return f"{fmt(est.get('value'))} [{fmt(lo)}, {fmt(hi)}]"


def _title(text: str) -> Markup:
    return Markup("<title>{}</title>").format(text)


def _text(x: float, y: float, s: str, *, anchor: str = "start", size: int = FONT, weight: str = "normal", fill: str = "#222", rotate: bool = False) -> str:
    transform = f' transform="rotate(-45 {x:.1f} {y:.1f})"' if rotate else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" fill="{fill}"{transform}>{escape(s)}</text>'


def _svg(width: float, height: float, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg class="plot" role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui, sans-serif">'
        + "".join(body)
        + "</svg>"
    )


# --- heatmap ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    value: float | None
    tip: str
    marked: bool = False  # outlined: a selected cross-section, an F1 above threshold


def diverging(v: float, scale: float) -> str:
    """Blue for negative, red for positive, white at zero; `scale` maps to full colour."""
    t = max(-1.0, min(1.0, v / scale)) if scale > 0 else 0.0
    a, b = (255, 255, 255), ((178, 24, 43) if t > 0 else (33, 102, 172))
    r, g, bl = (round(a[i] + (b[i] - a[i]) * abs(t)) for i in range(3))
    return f"rgb({r},{g},{bl})"


def sequential(v: float, lo: float = 0.0, hi: float = 1.0) -> str:
    """White to green over [lo, hi]."""
    t = 0.0 if hi <= lo else max(0.0, min(1.0, (v - lo) / (hi - lo)))
    r, g, b = (round(255 + (c - 255) * t) for c in (0, 109, 44))
    return f"rgb({r},{g},{b})"


def heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    cells: dict[tuple[str, str], Cell],
    *,
    label: str,
    shade,  # value -> fill colour
    column_groups: Sequence[tuple[str, int]] = (),  # (label, number of columns), spanning the columns in order
    column_labels: Sequence[str] | None = None,  # shown instead of the column keys
    numbers: bool = False,
    cell_w: int = 22,
    cell_h: int = 16,
) -> Markup:
    labels = list(column_labels or columns)
    hatch = "hatch-" + re.sub(r"\W+", "-", label)  # ids are page-wide; plot labels are unique on a page
    left = 8 + 6.5 * max((len(r) for r in rows), default=4)
    top = (18 if column_groups else 0) + 10 + 5.5 * max((len(c) for c in labels), default=2)
    # Column labels lean right at 45 degrees: leave them room past the last column.
    width, height = left + cell_w * len(columns) + 10 + 4 * max((len(c) for c in labels), default=0), top + cell_h * len(rows) + 8
    body = []
    x0 = left
    for i, (name, span) in enumerate(column_groups):
        # A group name wider than its columns is cut to fit; hovering shows it whole.
        room = max(1, int(span * cell_w / 6.5))
        shown = name if len(name) <= room else name[: max(1, room - 1)] + "…"
        body.append(f'<g>{_title(name)}{_text(x0 + span * cell_w / 2, 12, shown, anchor="middle", weight="bold")}</g>')
        body.append(f'<line x1="{x0 + 2:.1f}" x2="{x0 + span * cell_w - 2:.1f}" y1="16" y2="16" stroke="#888"/>')
        if i:  # a rule between groups, down through the grid
            body.append(f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{top:.1f}" y2="{top + cell_h * len(rows):.1f}" stroke="#333" stroke-width="1.5"/>')
        x0 += span * cell_w
    for j, c in enumerate(labels):
        body.append(_text(left + (j + 0.5) * cell_w, top - 4, c, anchor="start", size=FONT - 1, rotate=True))
    for i, r in enumerate(rows):
        y = top + i * cell_h
        body.append(_text(left - 4, y + cell_h - 4, r, anchor="end"))
        for j, c in enumerate(columns):
            cell = cells.get((r, c))
            if cell is None:
                continue
            x = left + j * cell_w
            fill = f"url(#{hatch})" if cell.value is None else shade(cell.value)
            stroke = ' stroke="#111" stroke-width="2"' if cell.marked else ' stroke="#fff" stroke-width="0.5"'
            body.append(f'<rect class="cell" x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}"{stroke}>{_title(cell.tip)}</rect>')
            if numbers and cell.value is not None:
                body.append(_text(x + cell_w / 2, y + cell_h - 4, f"{cell.value:.2f}", anchor="middle", size=FONT - 2))
    defs = f'<defs><pattern id="{hatch}" width="4" height="4" patternUnits="userSpaceOnUse"><rect width="4" height="4" fill="#eee"/><path d="M0 4L4 0" stroke="#bbb"/></pattern></defs>'
    return _svg(width, height, [defs, *body], label)


# --- bars with intervals ----------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    group: str  # the row label (an SAE)
    series: str  # which bar within the row (the SAE itself, the supervised dictionary, ...)
    estimate: dict | None
    color: str


def _domain(values: list[float], ideal: Sequence[float]) -> tuple[float, float]:
    """Enough to show every point estimate and the reference lines; intervals are clipped to it
    (a ratio over a near-zero baseline can have an interval a hundred times wider than any value)."""
    lo, hi = min([*values, *ideal, 0.0]), max([*values, *ideal, 0.0])
    pad = 0.08 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def bars(items: Sequence[Bar], *, label: str, references: Sequence[tuple[str, float]] = (), width: int = 640) -> Markup:
    groups = list(dict.fromkeys(b.group for b in items))
    per_group = {g: [b for b in items if b.group == g] for g in groups}
    bar_h, gap = 12, 10
    left = 12 + 6.5 * max((len(g) for g in groups), default=4)
    right = 16
    top = 14 + 10 * max(1, len(references))  # one line per reference name, so names never collide
    height = top + sum(len(v) * bar_h + gap for v in per_group.values()) + 24
    values = [b.estimate["value"] for b in items if b.estimate and b.estimate.get("value") is not None]
    lo, hi = _domain(values, [v for _, v in references])
    scale = (width - left - right) / (hi - lo)

    def x(v: float) -> float:
        return left + (v - lo) * scale

    body = []
    for tick in _ticks(lo, hi):
        body.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top - 4}" y2="{height - 20}" stroke="#eee"/>')
        body.append(_text(x(tick), height - 8, fmt(tick), anchor="middle", size=FONT - 1, fill="#555"))
    for i, (name, v) in enumerate(references):
        body.append(f'<line class="reference" x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top - 6 - 10 * (len(references) - 1 - i)}" y2="{height - 20}" stroke="#444" stroke-dasharray="4 3">{_title(f"{name}: {fmt(v)}")}</line>')
        right = x(v) > width - 120  # near the right edge the name goes left of its line
        body.append(_text(x(v) + (-3 if right else 3), 10 + 10 * i, f"{name} {fmt(v)}", anchor="end" if right else "start", size=FONT - 2, fill="#444"))
    y = top
    for g in groups:
        body.append(_text(left - 6, y + len(per_group[g]) * bar_h / 2 + 4, g, anchor="end", weight="bold"))
        for b in per_group[g]:
            est = b.estimate or {}
            v = est.get("value")
            tip = f"{b.group}, {b.series}: {describe(b.estimate)}"
            if v is None:
                body.append(f'<rect class="bar undefined" x="{x(0) - 3:.1f}" y="{y + 1}" width="6" height="{bar_h - 2}" fill="none" stroke="{b.color}" stroke-dasharray="2 2">{_title(tip)}</rect>')
                body.append(_text(x(0) + 6, y + bar_h - 2, f"n/a: {est.get('reason', 'not computed')}"[:70], size=FONT - 2, fill="#666"))
            else:
                x0, x1 = sorted((x(0), x(v)))
                body.append(f'<rect class="bar" x="{x0:.1f}" y="{y + 1}" width="{max(x1 - x0, 1):.1f}" height="{bar_h - 2}" fill="{b.color}" fill-opacity="0.75">{_title(tip)}</rect>')
                body.append(_whisker(est, x, lo, hi, y + bar_h / 2))
            y += bar_h
        y += gap
    body.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top - 4}" y2="{height - 20}" stroke="#999"/>')
    return _svg(width, height, body, label)


def _whisker(est: dict, x, lo: float, hi: float, y: float) -> str:
    low, high = est.get("ci95") or (None, None)
    if low is None or high is None:
        return ""
    out = []
    a, b = max(low, lo), min(high, hi)
    out.append(f'<line class="whisker" x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#111" stroke-width="1.2"/>')
    for v, clipped, sign in ((a, low < lo, -1), (b, high > hi, 1)):
        if clipped:  # the interval runs off the axis: an arrowhead says so
            out.append(f'<path d="M{x(v):.1f} {y:.1f} l{-sign * 5} -3.5 v7 z" fill="#111"/>')
        else:
            out.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{y - 3.5:.1f}" y2="{y + 3.5:.1f}" stroke="#111" stroke-width="1.2"/>')
    return "".join(out)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return []
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


# --- curves with bands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    name: str
    points: Sequence[tuple[float, dict]]  # (x, estimate)
    color: str


def curves(series: Sequence[Curve], *, label: str, x_label: str, y_label: str, references: Sequence[tuple[str, float | None, str]] = (), width: int = 330, height: int = 190) -> Markup:
    """Lines over a log2 x axis (k = 1, 2, 4, ...) on y in [0, 1]; a shaded band is the 95%
    interval; horizontal lines are references (name, value, dash pattern)."""
    left, right, top, bottom = 40, 120, 12, 34
    xs = sorted({p[0] for c in series for p in c.points}) or [1.0]
    lx0, lx1 = math.log2(xs[0]), math.log2(xs[-1])
    span = (lx1 - lx0) or 1.0

    def px(v: float) -> float:
        return left + (math.log2(v) - lx0) / span * (width - left - right)

    def py(v: float) -> float:
        return top + (1 - max(0.0, min(1.0, v))) * (height - top - bottom)

    body = [f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#ccc"/>']
    for t in (0, 0.25, 0.5, 0.75, 1):
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#f0f0f0"/>')
        body.append(_text(left - 4, py(t) + 4, f"{t:g}", anchor="end", size=FONT - 1, fill="#555"))
    for v in xs:
        body.append(_text(px(v), height - bottom + 14, f"{v:g}", anchor="middle", size=FONT - 1, fill="#555"))
    body.append(_text((left + width - right) / 2, height - 4, x_label, anchor="middle", size=FONT - 1))
    body.append(f'<text x="10" y="{(top + height - bottom) / 2:.1f}" font-size="{FONT - 1}" text-anchor="middle" transform="rotate(-90 10 {(top + height - bottom) / 2:.1f})">{escape(y_label)}</text>')
    for name, v, dash in references:
        if v is None:
            continue
        body.append(f'<line class="reference" x1="{left}" x2="{width - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#333" stroke-dasharray="{dash}">{_title(f"{name}: {fmt(v)}")}</line>')
    legend_y = top + 4
    for c in series:
        band = [(px(k), py(e["ci95"][1]), py(e["ci95"][0])) for k, e in c.points if None not in (e.get("ci95") or [None])]
        if len(band) > 1:
            outline = " ".join(f"{a:.1f},{hi:.1f}" for a, hi, _ in band) + " " + " ".join(f"{a:.1f},{lo:.1f}" for a, _, lo in reversed(band))
            body.append(f'<polygon class="band" points="{outline}" fill="{c.color}" fill-opacity="0.12"/>')
        defined = [(k, e) for k, e in c.points if e.get("value") is not None]
        if defined:
            path = " ".join(f"{'M' if i == 0 else 'L'}{px(k):.1f} {py(e['value']):.1f}" for i, (k, e) in enumerate(defined))
            body.append(f'<path class="line" d="{path}" fill="none" stroke="{c.color}" stroke-width="2"/>')
        for k, e in c.points:
            v = e.get("value")
            marker = f'cx="{px(k):.1f}" cy="{py(v if v is not None else 0):.1f}" r="3"'
            fill = c.color if v is not None else "none"
            body.append(f'<circle class="point" {marker} fill="{fill}" stroke="{c.color}">{_title(f"{c.name}, k={k:g}: {describe(e)}")}</circle>')
        body.append(f'<line x1="{width - right + 8}" x2="{width - right + 22}" y1="{legend_y}" y2="{legend_y}" stroke="{c.color}" stroke-width="2"/>')
        body.append(_text(width - right + 26, legend_y + 4, c.name[:14], size=FONT - 1))
        legend_y += 15
    for name, v, dash in references:
        body.append(f'<line x1="{width - right + 8}" x2="{width - right + 22}" y1="{legend_y}" y2="{legend_y}" stroke="#333" stroke-dasharray="{dash}"/>')
        body.append(_text(width - right + 26, legend_y + 4, f"{name[:12]} {fmt(v)}", size=FONT - 1))
        legend_y += 15
    return _svg(width, height, body, label)
