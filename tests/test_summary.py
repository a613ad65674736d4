"""The table `sagec run` ends with (runtime/execute/summary.py): suites and SAEs ranked with their
headline numbers and intervals, the supervised dictionary beside them, the paths; --quiet keeps
only the paths."""

import copy
import io
import re

from click.testing import CliRunner
from rich.console import Console

from runtime.execute.summary import eval_table, estimate, ranked
from runtime.store import results
from sagec.cli import main
from tests.tiny_runs import finished


def rendered(doc) -> str:
    out = io.StringIO()
    Console(file=out, width=200, highlight=False).print(eval_table(doc))
    return out.getvalue()


def test_the_table_shows_suites_first_then_ranked_saes_and_the_supervised_dictionary():
    doc = results.load(finished(0).folder)
    text = rendered(doc)
    lines = text.splitlines()
    suite_line = next(i for i, x in enumerate(lines) if "suite res" in x)
    sae_lines = [i for i, x in enumerate(lines) if re.search(r"│\s+\d+\s+│ res\[\d\]", x)]
    supervised_line = next(i for i, x in enumerate(lines) if "supervised dictionary" in x)
    assert suite_line < min(sae_lines) and max(sae_lines) < supervised_line
    # Each row's numbers are the document's, with their intervals.
    suite = doc["suites"]["res"]
    assert estimate(suite["scores"]["sufficiency"]) in lines[suite_line]
    assert f"{suite['coverage']['sites']['served']}/{suite['coverage']['sites']['located']} sites" in lines[suite_line]
    order = ranked(doc["saes"], list(doc["ground_truth"]["control"]))
    assert [re.search(r"res\[\d\]", lines[i]).group(0) for i in sae_lines] == order
    for i, name in zip(sae_lines, order):
        assert estimate(doc["saes"][name]["scores"]["logit_diff_recovered"]) in lines[i]
        assert estimate(doc["saes"][name]["supervised_on_same_sites"]["logit_diff_recovered"]) in lines[i]
    assert estimate(doc["ground_truth"]["necessity"]) in lines[supervised_line]


def test_ranking_follows_the_numbers():
    doc = copy.deepcopy(results.load(finished(0).folder))
    first, second = list(doc["saes"])
    for name, value in ((first, 0.1), (second, 0.95)):
        for metric in ("sufficiency", "logit_diff_recovered", "necessity"):
            doc["saes"][name]["scores"][metric] |= {"value": value, "ci95": [value - 0.01, value + 0.01]}
    assert ranked(doc["saes"], list(doc["ground_truth"]["control"]))[0] == second
    assert estimate({"value": None, "ci95": [None, None], "reason": "x"}) == "n/a"


def test_sagec_run_prints_the_table_and_quiet_only_the_paths(tmp_path):
    run = finished(0)
    spec = run.folder.parent / "spec.sage"
    cache = run.folder.parent.parent / "cache"
    loud = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "a"), "--cache-dir", str(cache)])
    assert loud.exit_code == 0, loud.output
    assert "suite res" in loud.stdout and "supervised dictionary" in loud.stdout and "LD recovered" in loud.stdout
    assert f"wrote {tmp_path / 'a' / 'results.json'}" in loud.stdout
    quiet = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "b"), "--cache-dir", str(cache), "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout.splitlines() == [f"tiny_gt: wrote {tmp_path / 'b' / 'results.json'}", f"tiny_gt: wrote {tmp_path / 'b' / 'report.html'}"]
