"""The zoo: each committed tiny model solves each of its tasks on held-out prompts, every
committed SAE loads through sae_lens as the kind it claims and reconstructs its model's
activations (the weak one clearly worst), builds are deterministic, unknown names get
suggestions, `sagec ls zoo` lists it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from runtime import zoo
from runtime.zoo import saes as zoo_saes
from runtime.zoo.models import GEMMA3, SMOLLM2, TINY
from runtime.zoo.sae_training import KINDS, Budget, measure, train_sae
from runtime.zoo.tasks import IOI
from runtime.zoo.tasks import task as zoo_task
from runtime.zoo.tiny import MIN_ACCURACY, examples, score


@pytest.fixture(scope="module")
def tiny_models():
    """Each tiny zoo model and its tokenizer, loaded once."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    loaded = {}

    def get(name: str):
        if name not in loaded:
            folder = zoo.resolve_model(name)
            loaded[name] = GPT2LMHeadModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
        return loaded[name]

    return get


@pytest.fixture(scope="module")
def tiny_ioi(tiny_models):
    return tiny_models("tiny-ioi")


@pytest.mark.parametrize(("model", "task"), [(m, t) for m, r in TINY.items() for t in r.tasks],
                         ids=[f"{m}/{t}" for m, r in TINY.items() for t in r.tasks])
def test_tiny_model_solves_its_task_on_held_out_prompts(tiny_models, model: str, task: str):
    result = score(*tiny_models(model), zoo_task(task), n=256)
    assert result.prompts == 256
    assert result.accuracy >= MIN_ACCURACY, result
    assert result.mean_metric > 0


def test_every_task_of_the_library_has_a_zoo_model_trained_on_it():
    from runtime.zoo.tasks import library

    trained = {t for recipe in TINY.values() for t in recipe.tasks}
    assert set(library()) <= trained, f"no tiny zoo model for {sorted(set(library()) - trained)}"
    assert "ioi" in trained


def test_held_out_prompts_share_no_place_or_frame_with_training():
    train = examples(IOI, "train", 512)
    test = examples(IOI, "test", 128)
    words = lambda exs: {w for ex in exs for w in ex.prompt.replace(",", " ").replace(".", " ").split()}  # noqa: E731
    held_places = {p for p in IOI.variable("place").domain if p in words(test)} - words(train)
    assert held_places, "test prompts should mention places training never saw"
    assert not {ex.prompt for ex in train} & {ex.prompt for ex in test}


def test_tiny_ioi_runs_through_the_prompt_set_and_nnsight(tiny_ioi):
    """The word-level tokenizer serves the runtime's own sampler (offsets resolve the named
    positions) and the folder loads as `TransformersModel(path, task="text-generation")`."""
    from nnsight import TransformersModel

    from runtime.task.prompts import build_prompt_set

    _, tokenizer = tiny_ioi
    prompts = build_prompt_set(IOI, tokenizer)
    first = prompts.prompts[0]
    assert tokenizer.convert_ids_to_tokens(first.ids[first.positions["io"]]) == first.assignment["io"]
    assert first.positions["end"] == len(first.ids) - 1
    lm = TransformersModel(str(zoo.resolve_model("tiny-ioi")), task="text-generation", dispatch=True)
    with torch.no_grad(), lm.trace(first.text):
        logits = lm.output.logits.save()
    assert logits[0, -1, first.answer_ids[0]] > logits[0, -1, first.distractor_ids[0]]


def _activations(tiny_models, name: str):
    """Residual activations of a tiny model on held-out test prompts of its tasks, per location."""
    from runtime.zoo.corpus import residual_activations

    model, tokenizer = tiny_models(name)
    tasks = TINY[name].task_objects()
    rows = [tokenizer(ex.prompt + ex.answer, add_special_tokens=False).input_ids
            for t in tasks for ex in examples(t, "test", 256 // len(tasks))]
    locations = sorted({s.location for s in zoo.zoo_saes() if s.model == name})
    return residual_activations(model, rows, locations, tokenizer.pad_token_id)


@pytest.mark.parametrize("model", sorted(TINY))
def test_every_committed_sae_loads_as_its_kind_and_reconstructs(tiny_models, model: str):
    from sae_lens import SAE, StandardSAE, TopKSAE

    assert {s.model for s in zoo.zoo_saes() if s.committed} == set(TINY)
    committed = [s for s in zoo.zoo_saes() if s.committed and s.model == model]
    assert {s.kind for s in committed} == {"relu-l1", "topk-k8", "topk-k32", "weak"}
    tiny_activations = _activations(tiny_models, model)
    by_location: dict = {}
    for s in committed:
        assert s.status == "committed", f"{s.name} is {s.status}"
        sae = SAE.load_from_disk(str(zoo.resolve_sae(s.name)), device="cpu")
        kind = KINDS[s.kind]
        assert isinstance(sae, TopKSAE if kind.architecture == "topk" else StandardSAE), s.name
        if kind.k is not None:
            assert sae.cfg.k == kind.k
        assert sae.cfg.d_sae == zoo_saes.PLANS[s.model].budget.d_sae(kind, sae.cfg.d_in)
        assert sae.cfg.metadata.hook_name == s.hook_name
        stats = measure(sae, tiny_activations[s.location])
        if kind.k is not None:
            assert stats.l0 <= kind.k + 1e-6
        by_location.setdefault(s.location, {})[s.kind] = stats.explained_variance
    for location, ev in by_location.items():
        strong = {k: v for k, v in ev.items() if k != "weak"}
        assert min(strong.values()) > 0.6, (location, ev)
        assert ev["weak"] < min(strong.values()) - 0.2, (location, ev)


def test_sae_training_is_deterministic(tmp_path: Path):
    """The same activations and seed give the same weights, bit for bit."""
    from safetensors.torch import load_file

    g = torch.Generator().manual_seed(1)
    acts = torch.randn(2048, 8, generator=g) @ torch.randn(8, 16, generator=g)
    kind = KINDS["topk-k8"]
    for run in ("a", "b"):
        train_sae(acts, kind, Budget(steps=10, batch_size=128), tmp_path / run, "blocks.0.hook_resid_post", "test", seed=3,
                  log=lambda *_: None)
    a = load_file(tmp_path / "a" / "sae_weights.safetensors")
    b = load_file(tmp_path / "b" / "sae_weights.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = tmp_path / "c"
    train_sae(acts, kind, Budget(steps=10, batch_size=128), other, "blocks.0.hook_resid_post", "test", seed=4, log=lambda *_: None)
    assert not torch.equal(a["W_dec"], load_file(other / "sae_weights.safetensors")["W_dec"])


def test_unknown_names_raise_key_error_with_the_closest_names():
    with pytest.raises(KeyError) as e:
        zoo.resolve_sae("tiny-ioi/topk-k8/resid_post.9")
    assert "did you mean" in str(e.value) and "tiny-ioi/topk-k8/resid_post.2" in str(e.value)
    with pytest.raises(KeyError) as e:
        zoo.resolve_model("tiny-iio")
    assert "'tiny-ioi'" in str(e.value)


def test_zoo_names_follow_the_convention():
    for s in zoo.zoo_saes():
        model, kind, where = s.name.split("/")
        component, layer = where.split(".")
        assert (model, kind, component, int(layer)) == (s.model, s.kind, s.location.component, s.location.layer)
        assert s.hook_name == f"blocks.{layer}.hook_{component}"
    assert {s.status for s in zoo.zoo_saes() if s.model == SMOLLM2} <= {"lazy", "built"}


def test_ls_zoo_lists_models_and_saes():
    from sagec.cli import main

    result = CliRunner().invoke(main, ["ls", "zoo"])
    assert result.exit_code == 0, result.output
    assert "tiny-ioi" in result.output and "smollm2-135m" in result.output and "gemma-3-270m" in result.output
    assert "relu-l1, topk-k8, topk-k32, weak" in result.output
    data = json.loads(CliRunner().invoke(main, ["ls", "zoo", "--json"]).output)
    assert {m["name"] for m in data["models"]} == {*TINY, SMOLLM2, GEMMA3}
    assert all(m["status"] == "committed" for m in data["models"] if m["name"] in TINY)
    assert any(s["name"] == "tiny-ioi/topk-k8/resid_post.1" and s["status"] == "committed" for s in data["saes"])


def test_ls_saes_filters_the_zoo_and_sae_lens():
    from sagec.cli import main

    rows = json.loads(CliRunner().invoke(main, ["ls", "saes", "tiny-ioi/weak", "--json"]).output)
    assert rows and all(r["source"] == "zoo" and r["kind"] == "weak" for r in rows)
    rows = json.loads(CliRunner().invoke(main, ["ls", "saes", "gpt2-small-res-jb", "--json"]).output)
    assert any(r["source"] == "sae_lens" and r["id"] == "blocks.8.hook_resid_pre" for r in rows)


@pytest.mark.slow
def test_smollm2_sae_builds_lazily_into_the_cache(tmp_path: Path, monkeypatch):
    """One SmolLM2 SAE built on first use, with a shrunken corpus and budget so the test is quick."""
    import dataclasses

    from runtime.zoo import smollm2
    from runtime.zoo.corpus import CorpusRecipe

    smollm2.ensure()  # the first use fetches and dequantises it (about a minute), as a run would
    plan = dataclasses.replace(zoo_saes.PLANS[SMOLLM2], budget=Budget(steps=20, batch_size=128, width_scale=0.25),
                               corpus=CorpusRecipe(prompts=32, generated=4, new_tokens=8))
    monkeypatch.setitem(zoo_saes.PLANS, SMOLLM2, plan)
    monkeypatch.setattr(zoo_saes, "cache_dir", lambda: tmp_path)
    name = f"{SMOLLM2}/topk-k8/resid_post.3"
    assert zoo_saes.entry(name).status == "lazy"
    folder = zoo.resolve_sae(name)
    assert folder.is_relative_to(tmp_path) and zoo_saes.entry(name).status == "built"
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(folder))
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k, sae.cfg.metadata.hook_name) == (576, 576, 8, "blocks.3.hook_resid_post")
    stats = json.loads((folder / "zoo.json").read_text())["stats"]
    assert stats["l0"] <= 8 and stats["eval_tokens"] > 0  # 20 steps: built, not yet good


def test_zoo_build_rejects_unknown_names_with_suggestions():
    from sagec.cli import main

    result = CliRunner().invoke(main, ["zoo", "build", "tiny-iio"])
    assert result.exit_code == 2
    assert "did you mean 'tiny-ioi'" in result.stderr


def test_zoo_tokenizer_splits_numbers_into_digits_as_smollm2_does():
    """Greater-than's positions are counted in tokens from the end, so " 1732" must be " " and
    four digits on the zoo tokenizer, as on SmolLM2's (tests/test_specs.py checks that one)."""
    from runtime.zoo.tiny import make_tokenizer, vocabulary

    text = "The war lasted from the year 1732 to the year 17"
    tokenizer = make_tokenizer(vocabulary([], [text]))
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False).input_ids)
    assert tokens == ["The", "war", "lasted", "from", "the", "year", " ", "1", "7", "3", "2", "to", "the", "year", " ", "1", "7"]


def test_copy_rows_repeat_a_prefix_and_score_only_the_repeat():
    import random

    from runtime.zoo.tiny import copy_rows

    rows = copy_rows(range(10, 20), 200, random.Random(0))
    assert len(rows) == 200
    for row in rows:
        first = row.scored_from - 1  # the length of the random sequence
        repeat = row.ids[first:]
        assert 2 <= len(repeat) <= first and repeat == row.ids[: len(repeat)]
        assert set(row.ids) <= set(range(10, 20))
