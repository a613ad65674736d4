"""The task library in specs/: every spec checks, is in canonical form, and its default model
solves its task (metric > 0 on at least 80% of the clean prompts), or the task measures nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

import sagec
from sagec.cli import main

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.sage"))
# Enough prompts for a stable accuracy, and for every attribute value to occur in train; few
# enough that all specs run in about a minute and a half (a forward of 64 short prompts through
# SmolLM2 takes 5 to 13 s on two busy cores, most of it the 49152-wide unembedding).
SAMPLES = 40
MIN_ACCURACY = 0.8


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_library_holds_ioi_and_at_least_three_more_tasks():
    tasks = {t.name for path in SPECS for t in sagec.load_spec(str(path)).tasks}
    assert "ioi" in tasks and len(tasks) >= 4, tasks


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_checks(path: Path):
    result = run("check", str(path))
    assert result.exit_code == 0, result.output + result.stderr


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_is_canonically_formatted(path: Path):
    result = run("fmt", "--check", str(path))
    assert result.exit_code == 0, f"run `sagec fmt {path}`\n{result.output}{result.stderr}"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_has_a_header_comment_saying_what_it_measures(path: Path):
    head = path.read_text().splitlines()[:2]
    assert head and all(line.startswith("#") for line in head), f"{path.name} needs a header comment: the task, its source, what it measures"


def _prompts(task, tokenizer):
    """The clean prompts of `task` at SAMPLES, or a few more where train needs them to show every
    attribute value once (capitals' 28 countries need 56 prompts, half of them train)."""
    from runtime.task.prompts import build_prompt_set
    from sagec.diagnostics import SpecError

    samples = SAMPLES
    while True:
        try:
            return build_prompt_set(dataclasses.replace(task, samples=samples), tokenizer).prompts
        except SpecError as e:
            if "raise `samples`" not in str(e) or samples >= task.samples:
                raise
            samples = min(samples + 8, task.samples)


@pytest.fixture(scope="module")
def models():
    """Each default model loaded once for every spec: SmolLM2-135M (built into the user cache on
    first use) for the library's tasks, a tiny zoo model for a spec written for one."""
    import torch

    from runtime.model.sources import load_model

    torch.set_num_threads(2)
    loaded = {}

    def get(model):
        if model not in loaded:
            loaded[model] = load_model(model)
        return loaded[model]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_default_model_solves_the_task(path: Path, models):
    from runtime.model.forward import patched_logits
    from runtime.task.metric import task_metric

    spec = sagec.load_spec(str(path))
    for task in spec.tasks:
        model = next((spec.model(e.model) for e in spec.evals if e.task == task.name), spec.models[0])
        loaded = models(model)
        prompts = _prompts(task, loaded.tokenizer)
        logits = patched_logits(loaded, [p.ids for p in prompts], [])
        metric = task_metric(logits, [p.answer_ids for p in prompts], [p.distractor_ids for p in prompts])
        accuracy = float((metric > 0).float().mean())
        worst = sorted(zip(metric.tolist(), (p.text for p in prompts)))[:3]
        assert accuracy >= MIN_ACCURACY, f"{path.name} task {task.name}: accuracy {accuracy:.2f}, mean metric {float(metric.mean()):.2f}; worst {worst}"


@pytest.mark.slow
def test_greater_than_positions_sit_on_the_first_years_digits(models):
    """`tens = end - 7` counts tokens back from the end; every template must put the first
    year's tens and ones digits exactly there, or locate searches the wrong tokens."""
    path = Path(__file__).resolve().parent.parent / "specs" / "greater_than.sage"
    spec = sagec.load_spec(str(path))
    tokenizer = models(spec.models[0]).tokenizer
    prompts = _prompts(spec.tasks[0], tokenizer)
    assert {p.assignment["template"] for p in prompts} == set(range(len(spec.tasks[0].templates)))
    for p in prompts:
        for name in ("tens", "ones"):
            assert tokenizer.decode([p.ids[p.positions[name]]]) == str(p.assignment[name]), (name, p.text)
