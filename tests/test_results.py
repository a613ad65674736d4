"""The results.json contract: a real run follows the shipped schema, and the schema catches what
it promises to (an undefined number without a reason, NaN, a missing field, another version)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from importlib import resources

import pytest

from runtime.store import results
from tests.tiny_runs import finished


@pytest.fixture(scope="module")
def run():
    return finished(0)


@pytest.fixture(scope="module")
def doc(run):
    return results.load(run.folder)


def test_a_real_run_follows_the_schema(run, doc):
    assert results.errors(doc) == []
    assert f"wrote {run.folder / 'results.json'}" in run.output
    assert doc["schema"] == results.SCHEMA_VERSION


def test_the_document_says_what_was_run(doc):
    # Identities: the model by its weights, every SAE by sae_lens id or folder and weight hash.
    assert len(doc["model"]["weights_sha256"]) == 64
    for entry in doc["saes"].values():
        assert entry["sae"]["source"] == "path" and len(entry["sae"]["sha256"]) == 64
    # The resolved spec, seeds and versions.
    assert doc["spec"]["resolved"]["task"]["name"] == "ioi"
    assert doc["spec"]["resolved"]["task"]["seed"] == doc["seeds"]["prompts"] == doc["prompts"]["seed"] == 0
    assert [s["name"] for s in doc["spec"]["resolved"]["saes"]] == list(doc["saes"])
    assert {"sagec", "torch", "sae-lens"} <= set(doc["versions"])
    # Plan keys and timings name the same nodes.
    assert {n["id"] for n in doc["run"]["nodes"]} == set(doc["plan"])
    assert doc["run"]["finished"].endswith("+00:00")


def test_baselines_are_scored_on_every_cross_section_and_beside_each_sae(doc):
    from runtime.sage.baselines import COMPLETE

    assert list(doc["baselines"]) == ["pca", "neurons", "random", "pca 4"]
    scored = {n: e for n, e in doc["saes"].items() if e["scores"]}
    for name, entry in doc["baselines"].items():
        assert entry["sites"] == doc["ground_truth"]["sites"] and list(entry["scores"]["per_site"]) == entry["sites"]
        assert entry["supervised_on_same_sites"]["sufficiency"] == doc["ground_truth"]["sufficiency"]
        complete = name != "pca 4"
        assert entry["baseline"]["complete"] is complete
        for metric in ("sufficiency", "logit_diff_recovered", "necessity"):
            e = entry["scores"][metric]
            assert (e["value"] is None and e["reason"] == COMPLETE) if complete else e["value"] is not None, (name, metric)
        width = {s: d["width"] for s, d in entry["baseline"]["directions_per_site"].items()}
        assert all(d["directions"] == (width[s] if complete else 4) for s, d in entry["baseline"]["directions_per_site"].items())
        # Beside each scored SAE, on exactly the cross-sections that SAE serves.
        assert set(entry["beside"]) == set(doc["saes"])
        for sae, beside in entry["beside"].items():
            assert beside["sites"] == doc["saes"][sae]["sites"]
            if sae in scored:
                assert list(beside["scores"]["per_site"]) == scored[sae]["scores"]["sites"]
                assert set(beside["scores"]["control"]) == set(scored[sae]["scores"]["control"])
    assert doc["baselines"]["random"]["baseline"]["seed"] == 0
    broken = copy.deepcopy(doc)
    del broken["baselines"]["pca"]["beside"]
    assert results.errors(broken) == ["baselines/pca: missing 'beside'"]


def test_every_metric_says_which_way_is_better_and_what_it_means(doc):
    judged = [(p, e) for p, e in results.estimates(doc) if p[0] in ("ground_truth", "saes", "baselines")]
    assert len(judged) > 50
    for path, e in judged:
        assert e["direction"] in ("higher", "lower", "one", None), path
        assert e["description"], path
        assert len(e["ci95"]) == 2, path


def test_undefined_numbers_in_a_real_run_carry_reasons(doc):
    undefined = [(p, e) for p, e in results.estimates(doc) if e["value"] is None or None in e["ci95"]]
    for path, e in undefined:
        assert e.get("reason"), path


def _first_metric(doc) -> dict:
    name = next(iter(doc["saes"]))
    return doc["saes"][name]["scores"]["sufficiency"]


def test_null_without_a_reason_is_refused(doc):
    broken = copy.deepcopy(doc)
    metric = _first_metric(broken)
    metric["value"] = None
    metric.pop("reason", None)
    problems = results.errors(broken)
    assert len(problems) == 1 and "sufficiency" in problems[0] and "reason" in problems[0], problems
    metric["reason"] = "zero baseline"
    assert results.errors(broken) == []


def test_an_undefined_bound_also_needs_a_reason(doc):
    broken = copy.deepcopy(doc)
    _first_metric(broken)["ci95"][1] = None
    assert any("reason" in p for p in results.errors(broken))


def test_nan_is_not_a_number_here(run, tmp_path):
    text = (run.folder / "results.json").read_text()
    value = json.dumps(_first_metric(json.loads(text))["value"])
    (tmp_path / "results.json").write_text(text.replace(f'"value": {value}', '"value": NaN', 1))
    with pytest.raises(results.ResultsError, match="NaN"):
        results.load(tmp_path)


def test_missing_fields_and_wrong_types_are_named_by_path(doc):
    broken = copy.deepcopy(doc)
    del broken["versions"]
    broken["ground_truth"]["necessity"]["n"] = "32"
    broken["plan"][next(iter(broken["plan"]))] = "not a key"
    problems = results.errors(broken)
    assert "(document): missing 'versions'" in problems
    assert "ground_truth/necessity/n: expected integer, found string" in problems
    assert any(p.startswith("plan/") and "does not match" in p for p in problems)


def test_another_schema_version_is_refused_plainly(doc):
    other = {**doc, "schema": "sagec.results/2"}
    with pytest.raises(results.ResultsError, match="sagec.results/1"):
        results.validate(other)


def test_a_folder_without_results_says_so(tmp_path):
    with pytest.raises(results.ResultsError, match="has no results.json"):
        results.load(tmp_path)


def test_the_validator_refuses_keywords_it_does_not_implement():
    with pytest.raises(ValueError, match="oneOf"):
        list(results._check(1, {"oneOf": [{"type": "integer"}]}, {}, ()))


def test_the_schema_ships_with_the_package():
    shipped = json.loads(resources.files("runtime.store").joinpath("results_schema.json").read_text())
    assert shipped["properties"]["schema"]["const"] == results.SCHEMA_VERSION


def test_reading_results_never_imports_the_heavy_stack(run, tmp_path):
    """report, export and diff read JSON: they must work where torch is not even installed."""
    code = (
        "import sys;"
        "from runtime.store import results; from runtime.report import diff, saebench; from runtime.report.html import render;"
        "doc = results.load(sys.argv[1]); render(doc); saebench.envelopes(doc, 0); diff.diff(doc, doc);"
        "print([m for m in ('torch', 'nnsight', 'sae_lens', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(run.folder)], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
