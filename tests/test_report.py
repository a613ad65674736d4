"""report.html: written by `sagec run` and `sagec report`, self-contained, every section present
with its plots, a verdict that follows the numbers, and a real browser that renders it without a
console error."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.report.html import render
from runtime.report.view import build
from runtime.store import results
from sagec.cli import main
from tests.tiny_runs import finished

# Section id -> the plots (data-plot values) it must hold.
SECTIONS = {
    "suites": set(),
    "verdict": set(),
    "saes": set(),
    "validation": {"sufficiency", "logit_diff_recovered", "necessity"},
    "control": {"control"},
    "interpretability": {"f1"},
    "locate": {"attribution", "patching"},
    "ground-truth": {"gt-validation", "gt-control", "gt-variance"},
    "spec": set(),
    "provenance": set(),
}
MARKS = {"rect", "path", "circle", "polygon", "line"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page(HTMLParser):
    """Sections, the plots in each, the marks drawn in each plot, and table rows."""

    def __init__(self, html: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.svgs: list[dict] = []
        self.tables: dict[str, int] = {}
        self.body: dict[str, str] = {}
        self._section = self._svg = self._table = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "section":
            self._section = self.sections.setdefault(a["id"], {"plots": set(), "svgs": 0})
        if self._section is not None and "data-plot" in a:
            self._section["plots"].add(a["data-plot"])
        if tag == "svg":
            self._svg = {"attrs": a, "marks": 0}
            self.svgs.append(self._svg)
            if self._section is not None:
                self._section["svgs"] += 1
        elif self._svg is not None and tag in MARKS:
            self._svg["marks"] += 1
        if tag == "table" and "id" in a:
            self._table = a["id"]
            self.tables[self._table] = 0
        if tag == "tr" and self._table is not None:
            self.tables[self._table] += 1

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        if tag == "svg":
            self._svg = None
        if tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def run():
    return finished(0)


@pytest.fixture(scope="module")
def html(run) -> str:
    return (run.folder / "report.html").read_text()


@pytest.fixture(scope="module")
def doc(run) -> dict:
    return results.load(run.folder)


def test_sagec_run_names_results_and_report(run):
    assert f"wrote {run.folder / 'results.json'}" in run.output
    assert f"wrote {run.folder / 'report.html'}" in run.output


def test_every_section_and_plot_is_there(html, doc):
    page = Page(html)
    assert list(page.sections) == list(SECTIONS)
    for section, plots in SECTIONS.items():
        assert plots <= page.sections[section]["plots"], section
        assert (page.sections[section]["svgs"] > 0) == bool(plots), section
    assert page.svgs and all(s["marks"] > 0 for s in page.svgs)
    # The SAE table has a header row and one row per scored SAE; the site table one per site.
    scored = {n: e for n, e in doc["saes"].items() if e["scores"]}
    assert page.tables["sae-table"] == 1 + len(scored)
    assert page.tables["site-table"] == 1 + sum(len(e["scores"]["per_site"]) for e in scored.values())
    # One control panel per SAE and attribute; one attribution map per twin family.
    assert html.count('data-plot="control"') == sum(len(e["scores"]["control"]) for e in scored.values())
    # The baselines: a table of them, a line against them per scored SAE, a row each in F1's table.
    assert page.tables["baseline-table"] == 1 + len(doc["baselines"])
    assert html.count('<li><span class="swatch"', html.index('id="against-baselines"')) >= len(scored)
    assert page.tables["f1-table"] == 1 + len(scored) + len(doc["baselines"])
    assert html.count('data-plot="attribution"') == len(doc["locate"]["families"])


def test_the_page_opens_with_the_suites_then_the_members(html, doc):
    page = Page(html)
    assert list(page.sections)[:2] == ["suites", "verdict"]
    assert set(doc["suites"]) == {"res"}  # the tiny project lists res[1], res[2]: one family
    suite = doc["suites"]["res"]
    assert page.tables["suite-table"] == 2 and "res</td>" in html[html.index('id="suite-table"'):]
    line = html[html.index('id="suite-lines"'):html.index("</ul>", html.index('id="suite-lines"'))]
    used = [m for m, e in suite["members"].items() if e["used"]]
    assert f"{len(used)} of 2 members reconstruct a located cross-section" in line
    assert f"{suite['coverage']['sites']['served']} of {suite['coverage']['sites']['located']}" in html


def test_the_page_shows_the_run(html, doc):
    for example in doc["prompts"]["examples"]:
        assert example["text"] in html
    for site in doc["locate"]["selected"]:
        assert site in html
    assert doc["spec"]["hash"] in html
    assert re.search(r'class="best">.*?</strong>\s*ranks best: mean rank [\d.]+ among \d+ SAEs', html, re.S)


def test_the_page_is_self_contained(html):
    # Nothing to fetch: no external scripts, styles, images or links, and a policy forbidding them.
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)=', html)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "default-src 'none'" in html


def test_the_verdict_follows_the_numbers(doc):
    """Give one SAE a clearly better sufficiency and the other a clearly better necessity: each
    leads its metric, with intervals apart, and the verdict says so."""
    doc = copy.deepcopy(doc)
    a, b = list(doc["saes"])[:2]

    def put(sae, metric, value, low, high):
        doc["saes"][sae]["scores"][metric].update(value=value, ci95=[low, high])
        doc["saes"][sae]["scores"][metric].pop("reason", None)

    put(a, "sufficiency", 0.95, 0.9, 1.0)
    put(b, "sufficiency", 0.2, 0.1, 0.3)
    put(a, "necessity", 0.3, 0.2, 0.5)
    put(b, "necessity", 0.4, 0.1, 0.9)
    put(a, "logit_diff_recovered", 0.9, 0.8, 1.0)
    put(b, "logit_diff_recovered", 0.5, 0.45, 0.55)
    for sae in (a, b):  # the same min k everywhere: ties, nobody's lead, a shared rank
        for control in doc["saes"][sae]["scores"]["control"].values():
            control["min_k"].update(value=2.0, ci95=[1.0, 4.0])
            control["min_k"].pop("reason", None)
    verdict = build(doc)["verdict"]
    findings = {f.column.key: f for f in verdict["findings"]}
    assert (findings["sufficiency"].leader, findings["sufficiency"].separated) == (a, True)
    assert (findings["necessity"].leader, findings["necessity"].separated) == (b, False)
    assert all(f.tied for f in verdict["findings"] if f.column.key.startswith("min_k"))
    assert verdict["best"] == a
    assert (verdict["wins"][a], verdict["clear_leads"][a], verdict["wins"][b]) == (2, 2, 1)
    assert verdict["ranks"][a] < verdict["ranks"][b]


def test_each_sae_is_judged_against_the_best_baseline_on_its_cross_sections(doc):
    """Make one SAE's min k clearly lower than every baseline's beside it, then clearly higher
    than one baseline's: better, then worse than the best baseline; overlapping intervals say
    neither. Interpretability counts cross-sections whose intervals are apart."""
    doc = copy.deepcopy(doc)
    sae = next(n for n, e in doc["saes"].items() if e["scores"])
    attributes = list(doc["saes"][sae]["scores"]["control"])

    def min_k(entry, value, low, high):
        for control in entry["control"].values():
            control["min_k"].update(value=value, ci95=[low, high])
            control["min_k"].pop("reason", None)

    def interpretability(entry, value, low, high):
        for site in entry["per_site"].values():
            for view in ("feature_centric", "value_centric"):
                site["interpretability"][view].update(value=value, ci95=[low, high])
                site["interpretability"][view].pop("reason", None)

    def line():
        return next(x for x in build(doc)["against_baselines"] if x["sae"] == sae)

    min_k(doc["saes"][sae]["scores"], 1.0, 1.0, 2.0)
    interpretability(doc["saes"][sae]["scores"], 0.5, 0.4, 0.6)
    for b in doc["baselines"].values():
        min_k(b["beside"][sae]["scores"], 8.0, 4.0, None)  # an undefined upper bound is "beyond 32"
        interpretability(b["beside"][sae]["scores"], 0.5, 0.3, 0.7)
    got = line()
    assert got["overall"] == "better" and [c.outcome for c in got["comparisons"]] == ["better"] * len(attributes) + ["overlap", "overlap"]
    pca = doc["baselines"]["pca"]["beside"][sae]["scores"]
    min_k(pca, 1.0, 1.0, 1.0)  # overlaps the SAE's [1, 2]: the best baseline now, and no one's lead
    assert line()["overall"] == "indistinguishable" and {c.baseline for c in line()["comparisons"][: len(attributes)]} == {"pca"}
    interpretability(pca, 0.9, 0.8, 1.0)
    got = line()
    view = got["comparisons"][-1]
    assert got["overall"] == "worse" and view.baseline == "pca" and (view.better_at, view.worse_at) == (0, view.sites)
    assert "worse than the best baseline" in render(doc)


def test_an_sae_that_could_not_be_scored_is_named_with_its_reason(doc):
    doc = copy.deepcopy(doc)
    first, *rest = doc["saes"]
    reason = "it serves none of the located cross-sections"
    doc["saes"][first] = {"sae": doc["saes"][first]["sae"], "sites": [], "scores": None, "reason": reason}
    assert results.errors(doc) == []
    page = render(doc)
    assert f"{first} not scored: {reason}" in page
    assert Page(page).tables["sae-table"] == 1 + len(rest)
    for name in rest:
        doc["saes"][name] = {"sae": doc["saes"][name]["sae"], "sites": [], "scores": None, "reason": reason}
    page = render(doc)
    assert "No SAE was scored" in page and list(Page(page).sections) == list(SECTIONS)


def test_element_ids_are_unique(html):
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_sagec_report_rewrites_the_page(run, tmp_path):
    shutil.copy(run.folder / "results.json", tmp_path / "results.json")
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {tmp_path / 'report.html'}"
    assert (tmp_path / "report.html").read_text() == render(results.load(tmp_path))


def test_sagec_report_on_a_folder_without_results_is_a_user_error(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "has no results.json" in result.output


# --- a real browser ---------------------------------------------------------------------------


def chromium(page: Path, profile: Path, *args: str) -> tuple[str, list[str]]:
    """Run headless Chromium on `page`; return stdout and every console message it logged.
    Name resolution is mapped to nothing, so a page that reached for the network would fail."""
    assert CHROMIUM is not None, "chromium is not installed, though .ci/run installs it"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0", *args, page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


# .ci/run installs chromium, so under CI a missing browser is a failure, not a skip.
needs_chromium = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed; .ci/run installs it (apt-get install chromium)")


@needs_chromium
def test_the_report_renders_in_headless_chromium(run, tmp_path):
    page = run.folder / "report.html"
    dom, console = chromium(page, tmp_path / "profile", "--dump-dom")
    assert console == []
    rendered = Page(dom)
    assert rendered.body.get("data-ready") == "yes", "the page's script did not run to the end"
    assert list(rendered.sections) == list(SECTIONS)
    assert rendered.svgs and all(s["attrs"].get("data-drawn") == "yes" for s in rendered.svgs), "a plot was laid out empty"
    shot = tmp_path / "report.png"
    _, console = chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,6000", "--hide-scrollbars")
    assert console == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


@needs_chromium
def test_the_browser_check_catches_a_console_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><script>throw new Error("boom");</script></body></html>')
    _, console = chromium(page, tmp_path / "profile", "--dump-dom")
    assert any("boom" in line for line in console)


@needs_chromium
def test_clicking_a_header_sorts_the_sae_table_in_chromium(run, tmp_path):
    """A copy of the page with a script that clicks the sufficiency header twice and writes the
    row order after each click into the DOM, which Chromium dumps."""
    click = """<script>
    var th = document.querySelector("#sae-table thead th:nth-child(2)");
    function order() { return Array.prototype.map.call(document.querySelectorAll("#sae-table tbody tr"), function (r) { return r.cells[1].dataset.v || "none"; }).join(","); }
    th.click(); document.body.dataset.first = order() + ";" + th.getAttribute("aria-sort");
    th.click(); document.body.dataset.second = order() + ";" + th.getAttribute("aria-sort");
    </script></body>"""
    page = tmp_path / "report.html"
    page.write_text((run.folder / "report.html").read_text().replace("</body>", click))
    dom, console = chromium(page, tmp_path / "profile", "--dump-dom")
    assert console == []
    body = Page(dom).body
    (first, first_sort), (second, second_sort) = (body[k].rsplit(";", 1) for k in ("data-first", "data-second"))
    values = [float(v) for v in first.split(",") if v != "none"]
    assert (first_sort, second_sort) == ("ascending", "descending")
    assert values == sorted(values) and len(values) >= 2
    assert [float(v) for v in second.split(",") if v != "none"] == sorted(values, reverse=True)
    assert first.endswith("none") == second.endswith("none")  # undefined values sort last both ways


def test_template_guards_are_written_as_in_a_spec():
    from runtime.report.view import expression

    order = {"type": "Compare", "op": "==", "left": {"type": "Var", "name": "order"}, "right": {"type": "Const", "value": "ABB"}}
    member = {"type": "Compare", "op": "in", "left": {"type": "Var", "name": "s"}, "right": {"type": "ValueList", "items": ["Mary", 2]}}
    assert expression(order) == 'order == "ABB"'
    assert expression({"type": "BoolOp", "op": "or", "operands": [order, {"type": "Not", "operand": member}]}) == '(order == "ABB") or not (s in ["Mary", 2])'


def test_a_ratio_whose_ideal_is_one_ranks_by_its_distance_from_one():
    from runtime.report.view import _sort_key

    overshoot, short = {"value": 1.24}, {"value": 0.95}
    assert _sort_key(short, "one") < _sort_key(overshoot, "one")
    assert _sort_key(overshoot, "higher") < _sort_key(short, "higher")
