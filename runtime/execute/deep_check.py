"""`sagec check --deep`: the checks that need a tokenizer or a model's config, never its weights.

For every eval: build its task's prompt set with its model's tokenizer (so a multi-token answer, a
position missing from some template or an unsatisfiable constraint shows up before any run), and
check each SAE it scores: sae_lens names against the bundled directory, folders on disk, zoo
names, and, where its config is at hand, that its hook, width and TransformerLens preprocessing fit
the model (runtime/execute/fits.py). Every problem of every eval is collected into one SpecError;
warnings (an SAE trained on a model of another name, a config not at hand) are returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import runtime.zoo  # noqa: F401  - registers the zoo's models and SAEs, which specs may name
from runtime.execute.fits import check_saes
from runtime.saes.loading import check_source
from runtime.task.prompts import build_prompt_set
from sagec.diagnostics import Diagnostic, SpecError
from sagec.spec import Spec

T = TypeVar("T")


def deep_check(spec: Spec) -> list[str]:
    from runtime.model.sources import load_tokenizer

    problems: list[Diagnostic] = []

    def attempt(run: Callable[[], T]) -> T | None:
        try:
            return run()
        except SpecError as e:
            problems.extend(e.diagnostics)
            return None

    tokenizers: dict[str, Any] = {}
    done: set[tuple[str, str]] = set()
    fitting = []
    for ev in spec.evals:
        model, task = spec.model(ev.model), spec.task(ev.task)
        if model.name not in tokenizers:
            tokenizers[model.name] = attempt(lambda: load_tokenizer(model))
        if tokenizers[model.name] is not None and (task.name, model.name) not in done:
            done.add((task.name, model.name))
            attempt(lambda: build_prompt_set(task, tokenizers[model.name]))
        for use in ev.saes:
            sae = spec.sae(use.sae)
            if (sae.name, model.name) in done:
                continue
            done.add((sae.name, model.name))
            if attempt(lambda: check_source(sae) or True) and tokenizers[model.name] is not None:
                fitting.append((sae, model))
    warnings = attempt(lambda: check_saes(spec, fitting, require=False)) or []
    unique = list({(d.file, d.line, d.column, d.message): d for d in problems}.values())
    if unique:
        raise SpecError(unique)
    return warnings
