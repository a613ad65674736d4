"""`method integrated`: integrated gradients where first-order attribution fails, on the
hand-wired saturated softmax of tests/hand_wired.py (known answers: patching -90, attribution
about -2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runtime.execute.executor import execute
from runtime.execute.progress import Reporter
from runtime.model.forward import Patch, collect, collect_with_grads, patched_gradients, patched_logits
from runtime.model.sources import load_model
from runtime.passes import PASSES
from runtime.store.cache import ArtifactCache
from sagec.check import check_text
from sagec.locations import Location
from sagec.lower import lower
from sagec.spec import Model, Origin
from tests import hand_wired

V = hand_wired.VOCAB
FIRST = Location("resid_pre", 0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return hand_wired.build(tmp_path_factory.mktemp("hand_wired") / "model")


@pytest.fixture(scope="module")
def loaded(folder):
    return load_model(Model("wired", "path", str(folder), "float32", "cpu", None, 8, Origin("t.sage", 1, 1)))


def _metric(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return logits[:, V.index("Mary")] - logits[:, V.index("John")]


def test_integrated_gradients_recover_the_patching_effect_attribution_misses(loaded):
    clean = [[V.index("MaryX"), V.index("John"), V.index("to")]]
    twin = [[V.index("Mary"), V.index("JohnX"), V.index("to")]]
    c = collect_with_grads(loaded, clean, {"p": [0]}, [FIRST], _metric)
    a = c.activations[(FIRST, "p")]
    a_twin = collect(loaded, twin, {"p": [0]}, [FIRST]).activations[(FIRST, "p")]
    patched = float(_metric(patched_logits(loaded, clean, [Patch(FIRST, [0], a_twin)]), None)[0] - c.metric[0])
    attribution = float(((a_twin - a) * c.gradients[(FIRST, "p")]).sum())
    steps = 8
    path = torch.cat([a_twin + (k + 0.5) / steps * (a - a_twin) for k in range(steps)])
    metric, (grads,) = patched_gradients(loaded, clean * steps, [Patch(FIRST, [0] * steps, path)], _metric)
    integrated = float(((a_twin - a) * grads.mean(dim=0)).sum())
    assert patched == pytest.approx(-90.0, abs=0.5)  # uniform attention: the metric drops to 0
    assert attribution == pytest.approx(-2.0, abs=0.5)  # the saturated side of the softmax
    assert abs(integrated - patched) < 0.02 * abs(patched), (integrated, patched)  # -90.2 measured
    assert bool((metric.diff() > 0).all())  # the metric climbs along the path to the clean point


def test_gradients_at_patched_values_match_the_plain_gradient_at_the_clean_point(loaded):
    """Writing a site's own clean value changes nothing, so the gradient there is collect_with_grads'."""
    clean = [[V.index("MaryX"), V.index("John"), V.index("to")], [V.index("John"), V.index("MaryX"), V.index("to")]]
    for loc in (FIRST, Location("head", 0, 0), Location("head_z", 0, 0), Location("attn_out", 0), Location("resid_mid", 0), Location("resid_post", 0)):
        c = collect_with_grads(loaded, clean, {"p": [1, 1]}, [loc], _metric)
        metric, (g,) = patched_gradients(loaded, clean, [Patch(loc, [1, 1], c.activations[(loc, "p")])], _metric)
        assert torch.allclose(metric, c.metric, atol=1e-3)
        assert torch.allclose(g, c.gradients[(loc, "p")], atol=1e-4, rtol=1e-4), loc


SPEC = """\
model wired { source path "model" }
task flag {
  var a in ["Mary", "John"]
  var b in ["Mary", "John"] where b != a
  var flag in ["first", "second"]
  template when flag == "first": "{{a}}X {{b}} to"
  template when flag == "second": "{{a}} {{b}}X to"
  answer "{{a if flag == 'first' else b}}" against "{{b if flag == 'first' else a}}"
  counterfactual resample flag
  position one = first
  position end = last
  attributes flag
  split train 0.5, test 0.5
  samples 16 seed 0
}
eval e {
  model wired
  task flag
  locate { METHOD components resid_pre, heads positions one, end select top 2 verify patching }
}
"""


def _locate(folder: Path, tmp_path: Path, method: str, select: str = "select top 2 verify patching"):
    (tmp_path / "model").symlink_to(folder)
    spec = check_text(SPEC.replace("METHOD", method).replace("select top 2 verify patching", select), str(tmp_path / "spec.sage"))
    plan = lower(spec)
    artifacts, _ = execute(plan, ArtifactCache(tmp_path / "cache"), PASSES, reporter=Reporter("quiet"), only="locate[e]")
    return artifacts["locate[e]"].meta


def test_the_locate_pass_ranks_by_integrated_gradients_and_reports_both(folder, tmp_path):
    meta = _locate(folder, tmp_path, "method integrated steps 8")
    assert meta["method"] == "integrated" and meta["steps"] == 8
    row = next(c for c in meta["candidates"] if c["site"] == "resid_pre 0@one")
    fam = row["family"]
    # The twin moves the flag to the other name: patching the first token's embedding takes the
    # flag off the answer, attention turns uniform and the metric falls by 90 (tests/hand_wired.py);
    # real patching sees it, attribution does not, integrated gradients do.
    assert row["patching"] == pytest.approx(-90, abs=1)
    assert abs(row["integrated"][fam] - row["patching"]) < 0.02 * abs(row["patching"])
    assert abs(row["attribution"][fam]) < 0.05 * abs(row["patching"])
    assert "resid_pre 0@one" in meta["selected"]
    assert meta["integrated_patching_spearman"] is not None and meta["attribution_patching_spearman"] is not None
    assert meta["selection"]["counts"] == {"sublayer": 2, "residual": 2}  # residual streams ranked apart


def test_plain_attribution_has_no_integrated_scores(folder, tmp_path):
    meta = _locate(folder, tmp_path, "method attribution")
    assert meta["steps"] is None and meta["integrated_patching_spearman"] is None
    assert all("integrated" not in c for c in meta["candidates"])


def test_method_patching_ranks_every_candidate_by_its_real_effect_in_each_pool(folder, tmp_path):
    meta = _locate(folder, tmp_path, "method patching", "select top 1")
    assert all(c["patching"] is not None for c in meta["candidates"])  # every candidate patched
    # one per pool: the head at the end beside the first token's stream, each its pool's best
    assert meta["selected"] == ["head 0.0@end", "resid_pre 0@one"]
    assert meta["selection"]["counts"] == {"sublayer": 1, "residual": 1}
    assert "1 of 2 residual-stream cross-sections selected (ranked apart" in meta["selection"]["summary"]
    effects = {c["site"]: c["patching"] for c in meta["candidates"]}
    assert effects["resid_pre 0@one"] == pytest.approx(-90, abs=1) and effects["head 0.0@end"] == pytest.approx(-180, abs=2)
