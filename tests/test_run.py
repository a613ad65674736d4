"""`sagec run` and `sagec plan` end to end on a tiny project: results, cache hits, resume after
kill -9, adding an SAE, exit codes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runtime.execute.progress import Reporter
from runtime.execute.run import run_spec
from sagec import load_spec
from tests.tiny_pipeline import make_project

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


def sagec(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sagec.cli", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def results_without_run(path: Path) -> str:
    data = json.loads(path.read_text())
    data.pop("run")
    return json.dumps(data, sort_keys=True)


def test_conditions_cut_into_calls_give_the_same_results(project, tmp_path, monkeypatch):
    """Ground truth and scoring run their units in calls of CALL_ROWS (the progress bar moves
    between them); one condition per call must change no number."""
    from runtime.model import forward
    from runtime.passes import ground_truth
    from runtime.passes.common import parse_site

    spec = load_spec(str(project))
    whole = run_spec(spec, cache_dir=tmp_path / "a", out_dir=tmp_path / "outa", reporter=Reporter("quiet"))
    monkeypatch.setattr(ground_truth, "CALL_ROWS", 1)
    cut = run_spec(spec, cache_dir=tmp_path / "b", out_dir=tmp_path / "outb", reporter=Reporter("quiet"))
    assert results_without_run(cut.results["tiny_gt"]) == results_without_run(whole.results["tiny_gt"])
    assert cut.counters == whole.counters  # the same prompt-passes, in more calls


def numbers(x, path=""):
    """Every number in a results tree, by its path."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in numbers(val, f"{path}/{key}").items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in numbers(val, f"{path}[{i}]").items()}
    return {path: x} if isinstance(x, (int, float)) and not isinstance(x, bool) else {}


def test_the_trace_collects_only_the_rows_later_passes_read_and_no_number_moves(project, tmp_path, monkeypatch):
    """Every clean prompt, and the test split of the twins and the counterfactual (their train
    prompts are locate's): against a trace of every row, the same numbers and fewer forwards,
    and a row it does not hold is refused by name."""
    from runtime.passes import trace
    from runtime.store.cache import ArtifactCache

    spec = load_spec(str(project))
    lean = run_spec(spec, cache_dir=tmp_path / "a", out_dir=tmp_path / "outa", reporter=Reporter("quiet"))
    monkeypatch.setattr(trace, "traced_rows", lambda ps, group: tuple(range(len(ps.prompts))))
    full = run_spec(spec, cache_dir=tmp_path / "b", out_dir=tmp_path / "outb", reporter=Reporter("quiet"))
    a, b = (json.loads(r.results["tiny_gt"].read_text()) for r in (lean, full))
    assert a["task_metric"]["clean"] == b["task_metric"]["clean"]
    for group, splits in a["task_metric"].items():
        assert set(splits) == ({"train", "test", "all"} if group == "clean" else {"test"}), group
        assert splits["test"] == b["task_metric"][group]["test"], group
    for x in (a, b):
        x.pop("run"), x.pop("task_metric"), x["plan"].pop("nodes", None)
    na, nb = numbers(a), numbers(b)
    assert na.keys() == nb.keys() and na == nb
    assert lean.counters["forward"] < full.counters["forward"]

    artifact = ArtifactCache(tmp_path / "a").load(lean.plan.node("trace[tiny/ioi]").key)
    rows = artifact.meta["rows"]
    assert len(rows) == len(b["locate"]["families"]) + 1  # clean and every family
    train = [i for i in rows["clean"] if i not in rows["twin:io"]]
    assert train and all(rows[g] == [i for i in rows["clean"] if i not in train] for g in rows if g != "clean")
    with pytest.raises(KeyError, match="twin:io"):
        trace.read(artifact, "twin:io", artifact.meta["sites"][0], train[:1])


def test_units_skip_clean_rows_and_run_identical_ones_once():
    from runtime.passes.ground_truth import _units

    clean = {"a": torch.arange(12.0).view(4, 3), "b": torch.zeros(4, 2)}
    edited = clean["a"].clone()
    edited[1] += 1
    edited[2] += 2
    once = {"a": edited, "b": clean["b"]}
    again = {"a": edited.clone(), "b": clean["b"].clone()}  # the same edit (a saturated k)
    other = {"a": clean["a"].clone(), "b": clean["b"].clone()}
    other["b"][1, 0] = -1.0  # prompt 1 again, patched differently
    units, uses = _units([once, again, other], ("a", "b"), clean)
    assert [p for p, _ in units] == [1, 2, 1]
    torch.testing.assert_close(units[2][1][1], torch.tensor([-1.0, 0.0]))
    assert [(r.tolist(), u.tolist()) for r, u in uses] == [([1, 2], [0, 1]), ([1, 2], [0, 1]), ([1], [2])]
    # a site the clean activations do not hold: every row runs
    units, uses = _units([{"c": torch.zeros(4, 1)}], ("c",), clean)
    assert len(units) == 4 and uses[0][0].tolist() == [0, 1, 2, 3]


def test_repeated_interventions_run_once_and_no_number_moves(tmp_path, monkeypatch):
    """Identical (prompt, patch) units of a pass run once (greedy edits saturate: once k reaches
    the latents that differ, every larger k is the same edit), and a prompt patched with its
    clean activations takes the clean outcome. Against a run that patches every row of every
    condition, on the suffix path and the long batch alike, no number may move beyond float
    noise."""
    from sae_lens import TopKSAE, TopKSAEConfig

    from runtime.passes import common, ground_truth

    spec_file = make_project(tmp_path / "p")
    torch.manual_seed(0)
    for layer in range(3):  # k = 2: at most 4 latents differ per pair, so edits saturate by k = 4
        cfg = TopKSAEConfig(d_in=32, d_sae=64, k=2)
        cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
        TopKSAE(cfg).save_model(str(tmp_path / "p" / f"topk{layer}"))
    text = spec_file.read_text().replace('"sae{{l}}"', '"topk{{l}}"')
    spec_file.write_text(text.replace("positions end  select top 2 per family", "positions s2  select top 4"))
    spec = load_spec(str(spec_file))

    def every_row(conditions, sites, clean):  # the reference: each condition's every row, alone
        units, uses = [], []
        for condition in conditions:
            n = len(condition[sites[0]])
            uses.append((torch.arange(n), torch.arange(len(units), len(units) + n)))
            units += [(p, [condition[s][p] for s in sites]) for p in range(n)]
        return units, uses

    for suffix in (False, True):
        with monkeypatch.context() as m:
            if suffix:
                m.setattr(common, "SUFFIX_PATH_MIN_PARAMETERS", 0)
            fast = run_spec(spec, cache_dir=tmp_path / f"a{suffix}", out_dir=tmp_path / f"outa{suffix}", reporter=Reporter("quiet"))
            m.setattr(ground_truth, "_units", every_row)
            slow = run_spec(spec, cache_dir=tmp_path / f"b{suffix}", out_dir=tmp_path / f"outb{suffix}", reporter=Reporter("quiet"))
        assert slow.counters["intervention_rows_run"] == slow.counters["intervention_rows"] == fast.counters["intervention_rows"]
        assert fast.counters["intervention_rows_run"] < 0.9 * fast.counters["intervention_rows"], fast.counters
        a, b = (json.loads(r.results["tiny_gt"].read_text()) for r in (slow, fast))
        a.pop("run"), b.pop("run")
        na, nb = numbers(a), numbers(b)
        assert na.keys() == nb.keys()
        for k in na:
            assert nb[k] == pytest.approx(na[k], rel=2e-3 if "ci95" in k else 1e-4, abs=1e-5), k


def test_the_suffix_path_at_a_late_position_gives_the_numbers_of_full_forwards(tmp_path, monkeypatch):
    """Interventions at s2 (four tokens before the end) recompute only those tokens on the clean
    prefix's key/value cache once the model is heavy enough to pay; forced on for the tiny model,
    every number of the run (locate's verified patching effects too) must be what full forwards
    give."""
    from runtime.model import forward
    from runtime.passes import common
    from runtime.passes.common import parse_site

    spec_file = make_project(tmp_path / "p")
    spec_file.write_text(spec_file.read_text().replace("positions end  select top 2 per family", "positions s2  select top 4  verify patching"))
    spec = load_spec(str(spec_file))
    full = run_spec(spec, cache_dir=tmp_path / "a", out_dir=tmp_path / "outa", reporter=Reporter("quiet"))
    assert full.counters.get("suffix_tokens", 0) == 0  # a tiny model takes the long batch
    monkeypatch.setattr(common, "SUFFIX_PATH_MIN_PARAMETERS", 0)
    built = []
    real = forward.prefix_cache
    monkeypatch.setattr(forward, "prefix_cache", lambda *a, **k: built.append((tuple(map(tuple, a[1])), k["suffix"])) or real(*a, **k))
    fast = run_spec(spec, cache_dir=tmp_path / "b", out_dir=tmp_path / "outb", reporter=Reporter("quiet"))
    # locate verifies on its train prompts, and every later node patches s2 of the test split:
    # one prefix each, shared by every node that patches those prompts
    assert len(built) == len(set(built)) == 2 and len({ids for ids, _ in built}) == 2
    a, b = (json.loads(r.results["tiny_gt"].read_text()) for r in (full, fast))
    assert any(s.endswith("@s2") for s in a["ground_truth"]["sites"]), a["ground_truth"]["sites"]
    assert fast.counters["suffix_tokens"] > 0 and fast.counters["forward"] < full.counters["forward"]
    # conditions patching only layers 1 and 2 skip layer 0 (and 1) on the clean stream
    assert any(parse_site(s).location.layer > 0 for s in a["ground_truth"]["sites"]), a["ground_truth"]["sites"]
    assert fast.counters["suffix_layer_tokens"] < fast.counters["suffix_tokens"] * 3
    a.pop("run"), b.pop("run")
    na, nb = numbers(a), numbers(b)
    assert na.keys() == nb.keys()
    for k in na:
        # A per-prompt ratio whose denominator nears zero on a random model (logit difference
        # recovered of -6, a bootstrap bound of -127), and a share of verified patching effects
        # (differences of two forwards), move float noise up to 1e-3 of themselves.
        ratio = "ci95" in k or "logit_diff_recovered" in k or "patching_effect" in k
        assert nb[k] == pytest.approx(na[k], rel=2e-3 if ratio else 1e-4, abs=1e-5), k


def test_run_writes_every_section_and_a_second_run_is_all_cache_hits(project, tmp_path):
    spec = load_spec(str(project))
    first = run_spec(spec, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", reporter=Reporter("quiet"))
    path = first.results["tiny_gt"]
    results = json.loads(path.read_text())
    assert {"schema", "model", "prompts", "task_metric", "locate", "activations", "ground_truth", "saes", "versions", "plan"} <= set(results)
    assert results["prompts"]["splits"] == {"train": 16, "test": 16}
    assert len(results["locate"]["selected"]) >= 2
    assert set(results["saes"]) == {"res[1]", "res[2]"}
    assert first.counters["backward"] == 16  # one backward over the train prompts, in locate
    second = run_spec(spec, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out2", reporter=Reporter("quiet"))
    assert all(o.cached for o in second.outcomes) and second.counters == {}
    assert results_without_run(second.results["tiny_gt"]) == results_without_run(path)


def test_adding_an_sae_runs_only_its_score_node(project, tmp_path):
    folder = project.parent
    run_spec(load_spec(str(make_project(folder, "res[1]"))), cache_dir=tmp_path, out_dir=tmp_path / "a", reporter=Reporter("quiet"))
    more = run_spec(load_spec(str(make_project(folder, "res[1], res[2]"))), cache_dir=tmp_path, out_dir=tmp_path / "b", reporter=Reporter("quiet"))
    make_project(folder)  # restore the shared spec
    # ... and the family's suite, which now has two members (METHOD.md section 6).
    assert [o.node_id for o in more.outcomes if not o.cached] == ["score[tiny_gt/res[2]]", "suite[tiny_gt/res]", "report[tiny_gt]"]
    assert "backward" not in more.counters  # no locate, no trace: only the new SAE's interventions


def test_resume_after_kill_9_gives_identical_results(project, tmp_path):
    reference = run_spec(load_spec(str(project)), cache_dir=tmp_path / "ref", out_dir=tmp_path / "ref-out", reporter=Reporter("quiet"))
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-m", "sagec.cli", "run", str(project), "--cache-dir", str(cache), "--out", str(tmp_path / "out")],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cache.glob("artifacts/*/*/manifest.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = len(list(cache.glob("artifacts/*/*/manifest.json")))
    assert 3 <= finished_before < len(reference.plan.nodes), "the kill should land mid-run"
    done = sagec("run", str(project), "--cache-dir", str(cache), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cached" in done.stderr  # resumed
    assert results_without_run(tmp_path / "out" / "results.json") == results_without_run(reference.results["tiny_gt"])


def test_plan_shows_nodes_cache_state_and_cost_without_running(project, tmp_path):
    out = sagec("plan", str(project), "--cache-dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "score[tiny_gt/res[2]]" in out.stdout and "to run" in out.stdout and "prompt-passes" in out.stdout
    as_json = json.loads(sagec("plan", str(project), "--json", cwd=tmp_path).stdout)
    assert [n["id"] for n in as_json["nodes"]][0] == "sample[ioi@tiny]"
    assert as_json["estimate"]["locate[tiny_gt]"]["backwards"] == 16
    assert sagec("plan", str(project), "--dot", cwd=tmp_path).stdout.startswith("digraph plan {")


def test_exit_status_2_for_a_bad_spec_and_1_for_a_failing_node(project, tmp_path):
    bad = tmp_path / "bad.sage"
    bad.write_text(project.read_text().replace("model tiny\n", "model tinny\n"))
    out = sagec("run", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and "tinny" in out.stderr and "Traceback" not in out.stderr
    broken = tmp_path / "broken"
    shutil.copytree(project.parent, broken, ignore=shutil.ignore_patterns("runs"))
    (broken / "model" / "model.safetensors").write_bytes(b"not safetensors")
    out = sagec("run", str(broken / "spec.sage"), "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "locate[tiny_gt] failed" in out.stderr and "Traceback" not in out.stderr


def test_a_run_bounds_the_allocator_where_the_c_library_is_glibc():
    """glibc's per-thread arenas and sliding mmap threshold kept a SmolLM2 run 0.36 GB above
    its bounded peak (runtime/execute/malloc.py): glibc must take both settings, and another C
    library (no mallopt, or one that ignores them) is left as it is, without an error."""
    import platform

    from runtime.execute.malloc import bound_allocator

    assert bound_allocator() is (platform.libc_ver()[0] == "glibc")
