"""The sample pass: the task's prompt set, tokenized with the model's tokenizer (no weights)."""

from __future__ import annotations

import gc
from contextlib import contextmanager

from runtime.store.cache import Artifact
from runtime.task.prompts import PromptSet, build_prompt_set
from sagec.plan import Node, SampleParams


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: SampleParams = node.params
    from runtime.model.sources import load_tokenizer

    tokenizer = ctx.resource("tokenizer", params.model.name, lambda: load_tokenizer(params.model))
    with collector_paused():
        prompts = build_prompt_set(params.task, tokenizer)
        tensors, meta = prompts.to_artifact()
    ctx.reporter.detail(f"{node.id}: {len(prompts.prompts)} prompts, twins {', '.join(prompts.groups())}")
    ctx.resource("prompt set", node.id, lambda: prompts)  # equal to its artifact's, so later passes need not parse it
    return Artifact({"prompt_set": meta, "summary": prompts.summary(examples=2)}, tensors)


@contextmanager
def collector_paused():
    """Python's cycle collector, at its default of a collection every 700 new objects, spends a
    third of this pass scanning the prompts it has already built. The pass makes no reference
    cycles (runtime/task/assignments.search breaks the one it had), so reference counting frees all
    its garbage and the collector can rest until it ends. The prompts then live for the whole
    run: frozen (`gc.freeze`), the collector never scans them again; runtime/run.run_spec
    unfreezes everything when the run ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def prompt_set(ctx, inputs: dict[str, Artifact], sample_id: str) -> PromptSet:
    """The prompt set of the sample node `sample_id`, rebuilt from its artifact once per run:
    every later pass of the run reads it."""
    artifact = inputs[sample_id]
    return ctx.resource("prompt set", sample_id, lambda: PromptSet.from_artifact(artifact.tensors, artifact.meta["prompt_set"]))
