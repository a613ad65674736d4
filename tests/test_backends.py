"""The same program on interchangeable backends: nnsight's simulated NDIF (`remote simulate`)
serialises every trace as NDIF would receive it and must give what the local backend gives;
`remote ndif` fails fast and clearly where it cannot run."""

import dataclasses
import json
import time

import pytest
import torch

from runtime.execute.progress import Reporter
from runtime.execute.run import run_spec
from runtime.model import forward
from runtime.model.sources import load_model
from sagec import load_spec
from sagec.diagnostics import SpecError
from sagec.locations import Location
from sagec.spec import Model, Origin
from tests.tiny_families import build
from tests.tiny_pipeline import make_project

LOCATIONS = (Location("resid_pre", 0), Location("head", 1, 2), Location("head_z", 2, 0), Location("mlp_out", 1), Location("resid_post", 2))
PROMPTS = [[2, 5, 6, 7, 8, 9, 10, 11, 12, 13], [2, 16, 6, 17, 8, 9, 10, 21, 12], [2, 5, 6, 17, 8, 9, 10, 11, 12, 13, 14]]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    folder = build("gpt2", tmp_path_factory.mktemp("model"))
    local = Model("tiny", "path", str(folder), "float32", "cpu", None, None, Origin("spec.sage", 1, 1))
    return load_model(local), load_model(dataclasses.replace(local, remote="simulate"))


def test_simulated_remote_collects_what_local_collects(both):
    local, simulated = both
    positions = {"end": [len(p) - 1 for p in PROMPTS], "third": [2, 2, 2]}
    a = forward.collect(local, PROMPTS, positions, LOCATIONS)
    b = forward.collect(simulated, PROMPTS, positions, LOCATIONS)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    for key in a.activations:
        assert torch.allclose(a.activations[key], b.activations[key], atol=1e-6), key


def test_simulated_remote_patches_and_differentiates_like_local(both):
    local, simulated = both
    patch = forward.Patch(Location("head", 1, 2), [len(p) - 1 for p in PROMPTS], torch.ones(3, 32))
    assert torch.allclose(forward.patched_logits(local, PROMPTS, [patch]), forward.patched_logits(simulated, PROMPTS, [patch]), atol=1e-6)

    def metric(logits, rows):
        return logits[:, 5] - logits[:, 6]

    positions = {"end": [len(p) - 1 for p in PROMPTS]}
    a = forward.collect_with_grads(local, PROMPTS, positions, LOCATIONS, metric)
    b = forward.collect_with_grads(simulated, PROMPTS, positions, LOCATIONS, metric)
    for key in a.gradients:
        assert torch.allclose(a.gradients[key], b.gradients[key], atol=1e-6), key
    with pytest.raises(ValueError, match="remote model"):
        forward.prefix_cache(simulated, PROMPTS)


def test_a_whole_run_on_the_simulated_backend_matches_local(tmp_path):
    spec = load_spec(str(make_project(tmp_path, "res[1]")))
    remote = dataclasses.replace(spec, models=tuple(dataclasses.replace(m, remote="simulate") for m in spec.models))
    a = run_spec(spec, cache_dir=tmp_path / "a", out_dir=tmp_path / "a-out", reporter=Reporter("quiet"))
    b = run_spec(remote, cache_dir=tmp_path / "b", out_dir=tmp_path / "b-out", reporter=Reporter("quiet"))
    assert [n.key for n in a.plan.nodes] == [n.key for n in b.plan.nodes]  # the backend is how, not what
    ra, rb = (json.loads(r.results["tiny_gt"].read_text()) for r in (a, b))
    assert ra["locate"]["selected"] == rb["locate"]["selected"]
    assert ra["ground_truth"]["sufficiency"]["value"] == pytest.approx(rb["ground_truth"]["sufficiency"]["value"], abs=1e-5)


def test_ndif_without_a_key_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    spec = load_spec(str(make_project(tmp_path)))
    hub = dataclasses.replace(spec.models[0], source="hub", ref="openai-community/gpt2", remote="ndif")
    started = time.perf_counter()
    with pytest.raises(SpecError, match="NDIF_API_KEY is not set"):
        run_spec(dataclasses.replace(spec, models=(hub,)), cache_dir=tmp_path / "c", reporter=Reporter("quiet"))
    assert time.perf_counter() - started < 5 and not (tmp_path / "c" / "artifacts").exists()
    local_folder = dataclasses.replace(spec.models[0], remote="ndif")
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    with pytest.raises(SpecError, match="runs models NDIF hosts"):
        run_spec(dataclasses.replace(spec, models=(local_folder,)), cache_dir=tmp_path / "c", reporter=Reporter("quiet"))


def test_ndif_unreachable_is_a_clear_error(tmp_path, monkeypatch):
    from nnsight import ndif

    def unreachable():
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(ndif, "compare", unreachable)
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    spec = load_spec(str(make_project(tmp_path)))
    hub = dataclasses.replace(spec.models[0], source="hub", ref="openai-community/gpt2", remote="ndif")
    with pytest.raises(SpecError, match="NDIF, which cannot be reached"):
        run_spec(dataclasses.replace(spec, models=(hub,)), cache_dir=tmp_path / "c", reporter=Reporter("quiet"))
