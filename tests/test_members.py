"""Members resolved after locate (issue 13 item 1): a family's members are loaded only when the
located cross-sections show they serve one, and `sagec plan` says so before and after locate."""

import json
from pathlib import Path

import pytest

from runtime.execute.progress import Reporter
from runtime.execute.run import run_spec
from runtime.store import results
from sagec import load_spec
from tests.test_run import sagec
from tests.tiny_pipeline import make_project

# Only the MLP of layer 1 at the last position is searched, so exactly `mlp_out 1@end` is located
# and, with residual reconstruction, res[1] (on resid_post 1) is the only member serving it.
ONE_SITE = ("components heads, mlp  positions end  select top 2", "components mlp  positions end  layers 1  select top 1")


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("family")
    spec = make_project(folder, "res[*]")
    text = spec.read_text()
    assert ONE_SITE[0] in text
    # Text metrics too: they splice each SAE in at its own hook, which an unused member must not cost.
    assert "  score sufficiency, necessity, control, interpretability\n" in text
    text = text.replace("  score sufficiency, necessity, control, interpretability\n", "  score sufficiency, necessity, control, interpretability, ce_loss_score, kl_div_score\n")
    spec.write_text(text.replace(*ONE_SITE) + "\n")
    # The members nothing needs carry garbage weights: loading them would fail the run.
    for layer in (0, 2):
        (folder / f"sae{layer}" / "sae_weights.safetensors").write_bytes(b"not safetensors at all")
    return spec


def test_members_that_serve_no_located_cross_section_are_never_loaded(family, tmp_path):
    summary = run_spec(load_spec(str(family)), cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", reporter=Reporter("quiet"))
    doc = json.loads(summary.results["tiny_gt"].read_text())
    assert results.errors(doc) == []
    assert doc["locate"]["selected"] == ["mlp_out 1@end"]
    assert doc["saes"]["res[1]"]["scores"] is not None and doc["saes"]["res[1]"]["sites"] == ["mlp_out 1@end"]
    for name, layer in (("res[0]", 0), ("res[2]", 2)):
        entry = doc["saes"][name]
        assert entry["scores"] is None and entry["used"] is False and entry["sae"]["loaded"] is False
        assert f"resid_post {layer} (layer {layer})" in entry["reason"] and "mlp_out 1@end" in entry["reason"] and entry["reason"].startswith("unused")
        assert entry["sae"]["d_sae"] == 64  # from its cfg.json, which is fine
    assert summary.saes_loaded == ("res[1]",)
    assert set(summary.unused) == {"score[tiny_gt/res[0]]", "score[tiny_gt/res[2]]"}
    text = doc["text"]["saes"]
    assert text["res[1]"]["scores"] is not None
    for name in ("res[0]", "res[2]"):
        assert text[name]["scores"] is None and text[name]["reason"].startswith("unused") and "text metrics were not computed" in text[name]["reason"]
    # The family as a suite: one located cross-section, served by res[1] alone, so the suite's
    # numbers are that member's (one site: the joint greedy edit is the member's own).
    suite = doc["suites"]["res"]
    assert suite["sites"] == {"mlp_out 1@end": "res[1]"} and suite["members"]["res[1]"]["used"] is True
    assert suite["members"]["res[0]"]["used"] is False and "layer 0" in suite["members"]["res[0]"]["reason"]
    assert suite["coverage"]["sites"] | {"description": ""} == {"fraction": 1.0, "served": 1, "located": 1, "description": ""}
    assert suite["coverage"]["patching_effect"]["fraction"] is None and "verify patching" in suite["coverage"]["patching_effect"]["reason"]
    assert suite["scores"] == doc["saes"]["res[1]"]["scores"]
    assert suite["supervised_on_same_sites"] == doc["saes"]["res[1]"]["supervised_on_same_sites"]

    # The report names unused members and describes only loaded ones: a zoo member never built
    # has no architecture or widths to show (its config does not exist yet).
    from runtime.report.html import render

    for name in ("res[0]", "res[2]"):
        for k in ("architecture", "d_in", "d_sae"):
            doc["saes"][name]["sae"].pop(k)
    page = render(doc)
    assert "2 unused (serving no located cross-section, never loaded): res[0], res[2]" in page


def test_plan_marks_score_nodes_after_locate_then_says_which_run(family, tmp_path):
    cache = tmp_path / "cache"
    before = sagec("plan", str(family), "--cache-dir", str(cache), cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    for name in ("res[0]", "res[1]", "res[2]"):
        line = next(x for x in before.stdout.splitlines() if f"score[tiny_gt/{name}]" in x)
        assert "to run after locate, at most" in line
    assert "to run: at most" in before.stdout and "'after locate'" in before.stdout
    as_json = json.loads(sagec("plan", str(family), "--json", "--cache-dir", str(cache), cwd=tmp_path).stdout)
    assert as_json["estimate"]["score[tiny_gt/res[0]]"]["after_locate"] == "unresolved"
    # Before locate, from configs: only mlp_out 1 is searched, and only res[1] (resid_post 1) can serve it.
    assert "score: 3 declared, at most 1 run after locate" in before.stdout
    (bound,) = as_json["after_locate_bound"]
    assert (bound["family"], bound["members"], bound["members_at_most"]) == ("res", 3, 1)
    assert as_json["total"]["upper_bound"] is True

    run_spec(load_spec(str(family)), cache_dir=cache, out_dir=tmp_path / "out", only="locate[tiny_gt]", reporter=Reporter("quiet"))
    after = sagec("plan", str(family), "--cache-dir", str(cache), cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    lines = after.stdout.splitlines()
    runs = next(i for i, x in enumerate(lines) if "score[tiny_gt/res[1]]" in x)
    assert "[to run," in lines[runs] and "serves mlp_out 1@end" in lines[runs + 2]
    for name in ("res[0]", "res[2]"):
        line = next(x for x in lines if f"score[tiny_gt/{name}]" in x)
        assert "unused: serves none of the located cross-sections, loads nothing" in line and "prompt-passes" not in line
    assert "to run: at most" not in after.stdout and "after locate, at most" not in after.stdout
    for name in ("res[0]", "res[2]"):  # nor do their text metrics
        line = next(x for x in lines if f"text[tiny_gt/{name}]" in x)
        assert "unused" in line and "prompt-passes" not in line
    as_json = json.loads(sagec("plan", str(family), "--json", "--cache-dir", str(cache), cwd=tmp_path).stdout)
    est = as_json["estimate"]
    assert est["score[tiny_gt/res[1]]"] | {"seconds": None} == {**est["score[tiny_gt/res[1]]"], "after_locate": "runs", "serves": ["mlp_out 1@end"], "seconds": None}
    assert est["score[tiny_gt/res[0]]"]["forwards"] == 0 and est["score[tiny_gt/res[0]]"]["after_locate"] == "unused"
    assert as_json["after_locate_bound"] == [] and as_json["total"]["upper_bound"] is False


def test_baselines_beside_an_unused_member_cost_nothing(family, tmp_path):
    spec = tmp_path / "spec.sage"
    text = family.read_text().replace('"model"', f'"{family.parent / "model"}"').replace('"sae{{l}}"', f'"{family.parent}/sae{{{{l}}}}"')
    spec.write_text(text.replace("  score ", "  baselines pca\n  score "))
    summary = run_spec(load_spec(str(spec)), cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", reporter=Reporter("quiet"))
    doc = json.loads(summary.results["tiny_gt"].read_text())
    beside = doc["baselines"]["pca"]["beside"]
    assert beside["res[0]"]["scores"] is None and beside["res[2]"]["scores"] is None and beside["res[1]"]["scores"] is not None
    assert summary.saes_loaded == ("res[1]",)


def test_unused_members_are_named_in_numeric_order():
    from runtime.execute.run import _numbers_as_numbers

    assert sorted(["l1[10]", "l1[2]", "topk[1]", "l1[1]", "res_a[3]"], key=_numbers_as_numbers) == ["l1[1]", "l1[2]", "l1[10]", "res_a[3]", "topk[1]"]
