"""report.html: one self-contained page (inline SVG, CSS and script; nothing fetched) that says
which SAE is best and why, rendered from a run's results.json with Jinja2 templates.

    from runtime.report.html import render, write_report
    write_report("runs/ioi")   # reads runs/ioi/results.json, writes runs/ioi/report.html
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from runtime.store import results
from runtime.store.atomic import write_text

REPORT_FILE = "report.html"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("runtime.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,  # a missing field is a bug to see, not a blank to ship
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render(doc: dict) -> str:
    """The page for a validated results document."""
    from runtime.report.view import build

    return _environment().get_template("report.html.j2").render(**build(doc))


def write_report(run_dir: str | Path) -> Path:
    """Read `run_dir`'s results.json and write report.html beside it; return its path."""
    source = results.find(run_dir)
    return write_text(source.parent / REPORT_FILE, render(results.load(source)))
