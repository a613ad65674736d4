"""The artifact cache and the executor, on toy passes: atomic writes, corruption detected and
recomputed, resume, and recomputation limited to the nodes whose keys changed."""

import json

import pytest
import torch

from runtime.execute.executor import NodeFailed, execute
from runtime.execute.progress import Reporter
from runtime.store.cache import Artifact, ArtifactCache, CorruptArtifact
from sagec.lower import lower
from tests.test_plan import VERSIONS, make_spec


def test_artifacts_round_trip_exactly(tmp_path):
    cache = ArtifactCache(tmp_path)
    art = Artifact({"n": 3, "names": ["a", "b"]}, {"x": torch.arange(6.0).reshape(2, 3), "ids": torch.tensor([1, 2])})
    cache.save("ab" * 32, art)
    back = cache.load("ab" * 32)
    assert back.meta == art.meta
    assert set(back.tensors) == {"x", "ids"} and torch.equal(back.tensors["x"], art.tensors["x"])
    assert back.tensors["ids"].dtype == torch.int64


def test_an_artifact_reads_back_with_its_keys_in_the_order_they_were_made(tmp_path):
    """A dict of sites in located order must not come back sorted: a resumed run read a suite's
    sites in another order than a fresh one and wrote different results."""
    cache = ArtifactCache(tmp_path)
    meta = {"sites": {"mlp_out 1@end": "res[1]", "head 2.0@end": "res[2]"}, "b": 1, "a": 2}
    cache.save("cd" * 32, Artifact(meta, {}))
    back = cache.load("cd" * 32).meta
    assert list(back) == ["sites", "b", "a"] and list(back["sites"]) == ["mlp_out 1@end", "head 2.0@end"]


def test_a_truncated_or_altered_artifact_is_detected(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.save("cd" * 32, Artifact({"n": 1}, {"x": torch.ones(100)}))
    tensors = cache.path("cd" * 32) / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-7])
    with pytest.raises(CorruptArtifact, match="do not match"):
        cache.load("cd" * 32)
    cache.save("ef" * 32, Artifact({"n": 1}))
    (cache.path("ef" * 32) / "meta.json").write_text(json.dumps({"n": 2}))
    with pytest.raises(CorruptArtifact):
        cache.load("ef" * 32)


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    cache = ArtifactCache(tmp_path)
    with pytest.raises(TypeError):
        cache.save("01" * 32, Artifact({"bad": object()}))
    assert not cache.has("01" * 32)
    assert list((tmp_path / "artifacts" / "01").iterdir()) == []


def toy_passes(calls: list[str], fail: str | None = None):
    """Each pass records that it ran and sums its inputs' numbers: enough to see data flow."""

    def run(node, inputs, ctx):
        calls.append(node.id)
        if node.id == fail:
            raise RuntimeError("boom")
        total = sum(a.meta["value"] for a in inputs.values()) + 1
        return Artifact({"value": total}, {"t": torch.tensor([float(total)])})

    return {kind: run for kind in ("sample", "locate", "trace", "ground_truth", "score", "suite", "report")}


def test_second_run_is_all_cache_hits_with_identical_artifacts(tmp_path):
    plan = lower(make_spec(), VERSIONS)
    calls: list[str] = []
    first, _ = execute(plan, ArtifactCache(tmp_path), toy_passes(calls), reporter=Reporter("quiet"))
    assert calls == [n.id for n in plan.nodes]
    calls.clear()
    second, outcomes = execute(plan, ArtifactCache(tmp_path), toy_passes(calls), reporter=Reporter("quiet"))
    assert calls == [] and all(o.cached for o in outcomes)
    assert {k: v.meta for k, v in first.items()} == {k: v.meta for k, v in second.items()}


def test_adding_an_sae_runs_only_its_nodes(tmp_path):
    calls: list[str] = []
    execute(lower(make_spec(), VERSIONS), ArtifactCache(tmp_path), toy_passes(calls), reporter=Reporter("quiet"))
    calls.clear()
    bigger = lower(make_spec(saes=("res[0]", "res[1]", "res[2]")), VERSIONS)
    execute(bigger, ArtifactCache(tmp_path), toy_passes(calls), reporter=Reporter("quiet"))
    assert calls == ["score[gt/res[2]]", "suite[gt/res]", "report[gt]"]  # the family's suite gains a member


def test_a_failure_names_the_node_and_keeps_what_finished(tmp_path):
    plan = lower(make_spec(), VERSIONS)
    calls: list[str] = []
    with pytest.raises(NodeFailed, match=r"ground_truth\[gt\] failed: RuntimeError: boom"):
        execute(plan, ArtifactCache(tmp_path), toy_passes(calls, fail="ground_truth[gt]"), reporter=Reporter("quiet"))
    calls.clear()
    execute(plan, ArtifactCache(tmp_path), toy_passes(calls), reporter=Reporter("quiet"))
    assert calls[0] == "ground_truth[gt]"  # sample, locate and trace were resumed from the cache


def test_a_corrupt_artifact_is_recomputed(tmp_path):
    plan = lower(make_spec(), VERSIONS)
    cache = ArtifactCache(tmp_path)
    execute(plan, cache, toy_passes([]), reporter=Reporter("quiet"))
    (cache.path(plan.node("trace[tiny/ioi]").key) / "meta.json").write_text("{}")
    calls: list[str] = []
    execute(plan, cache, toy_passes(calls), reporter=Reporter("quiet"))
    assert calls == ["trace[tiny/ioi]"]


def test_only_runs_a_node_and_its_upstream_and_force_recomputes(tmp_path):
    plan = lower(make_spec(), VERSIONS)
    calls: list[str] = []
    execute(plan, ArtifactCache(tmp_path), toy_passes(calls), reporter=Reporter("quiet"), only="trace[tiny/ioi]")
    assert calls == ["sample[ioi@tiny]", "locate[gt]", "trace[tiny/ioi]"]
    calls.clear()
    execute(plan, ArtifactCache(tmp_path), toy_passes(calls), reporter=Reporter("quiet"), only="trace[tiny/ioi]", force=["locate[gt]"])
    assert calls == ["locate[gt]"]


def test_a_batch_that_does_not_fit_is_halved_and_retried(monkeypatch):
    from types import SimpleNamespace

    from runtime.execute.executor import Context
    from runtime.passes import common

    ctx = Context(None, Reporter("quiet"))
    loaded = SimpleNamespace(spec=SimpleNamespace(name="m", batch_size=64), arch=None)
    tried = []

    def call(size):
        tried.append(size)
        if size > 16:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")
        return size

    assert common._fitting(ctx, loaded, call) == 16 and tried == [64, 32, 16]
    tried.clear()
    assert common._fitting(ctx, loaded, call) == 16 and tried == [16]  # the run remembers what fits
    with pytest.raises(ValueError):
        common._fitting(ctx, loaded, lambda size: (_ for _ in ()).throw(ValueError("not memory")))


def test_automatic_batch_sizes_shrink_with_the_model():
    from types import SimpleNamespace

    from runtime.passes.common import auto_batch_size

    tiny, smol = SimpleNamespace(d_model=32, n_layers=3), SimpleNamespace(d_model=576, n_layers=30)
    assert auto_batch_size(tiny) == 512 and 8 <= auto_batch_size(smol) <= 128


def sae_loading_passes(held: dict[str, set[str]]):
    """Toy passes that load every SAE their node reads (a 1,000-float module each) and record
    which SAEs were held when each node started."""
    from runtime.execute.executor import saes_read

    class Loaded:
        def __init__(self):
            self.sae = torch.nn.Linear(10, 100, bias=False)

    def run(node, inputs, ctx):
        held[node.id] = {name for kind, name in ctx.resources if kind == "sae"}
        for name in saes_read(node):
            ctx.resource("sae", name, Loaded)
        return Artifact({"value": 1}, {})

    return {kind: run for kind in ("sample", "locate", "trace", "ground_truth", "score", "suite", "report")}


def test_an_sae_is_let_go_after_its_last_reader_and_wide_ones_as_soon_as_the_next_node_needs_others(tmp_path, monkeypatch):
    """A family of wide SAEs over every layer must not be held all at once: under the memory
    budget an SAE stays loaded until its last reader (the suite) is done; over it, only those
    the next node reads stay."""
    from runtime.execute import executor
    from runtime.execute.executor import Context

    plan = lower(make_spec(saes=("res[0]", "res[1]", "res[2]")), VERSIONS)
    assert [n.id for n in plan.by_kind("score")] == ["score[gt/res[0]]", "score[gt/res[1]]", "score[gt/res[2]]"]
    held: dict[str, set[str]] = {}
    ctx = Context(ArtifactCache(tmp_path / "a"), Reporter("quiet"))
    execute(plan, ctx.cache, sae_loading_passes(held), reporter=Reporter("quiet"), context=ctx)
    assert held["score[gt/res[2]]"] == {"res[0]", "res[1]"} and held["suite[gt/res]"] == {"res[0]", "res[1]", "res[2]"}
    assert held["report[gt]"] == set() and [name for _, name in ctx.loaded] == ["res[0]", "res[1]", "res[2]"]

    monkeypatch.setattr(executor, "SAE_MEMORY", 6_000)  # bytes: one SAE of 4,000 fits, two do not
    held.clear()
    ctx = Context(ArtifactCache(tmp_path / "b"), Reporter("quiet"))
    execute(plan, ctx.cache, sae_loading_passes(held), reporter=Reporter("quiet"), context=ctx)
    assert held["score[gt/res[1]]"] == {"res[0]"}  # within the budget
    assert held["score[gt/res[2]]"] == set()  # two over it, and the next node reads neither
    assert held["suite[gt/res]"] == {"res[2]"}  # the suite reloads the others
    assert held["report[gt]"] == set()
