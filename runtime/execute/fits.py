"""Every SAE an eval scores, checked against its model from configs alone, before any model pass.

For each (SAE, model) pair: the SAE's description (runtime/saes/loading.py `describe_sae`: its
release config, cfg.json or safetensors header) against the model's architecture (its config):
a hook the model lacks, a d_in that is not the width at the hook, a TransformerLens preprocessing
option sagec cannot reproduce are errors naming the spec line; an SAE whose config names another
model, while its shapes fit, is a warning. `sagec plan` runs it (an SAE whose config is not at
hand is then only a note), `sagec check --deep` too, and `sagec run` runs it before the first node
(where a config not at hand is an error: the run could not load the SAE either).
"""

from __future__ import annotations

from collections.abc import Iterable

from sagec.diagnostics import Diagnostic, SpecError
from sagec.spec import Model, Sae, Spec


def check_saes(spec: Spec, pairs: Iterable[tuple[Sae, Model]] | None = None, *, require: bool, sources: tuple[str, ...] = ("sae_lens", "path", "zoo")) -> list[str]:
    """Check `pairs` (default: every SAE of every eval with the eval's model) whose SAE source is
    in `sources`. Returns the warnings; raises one SpecError with every problem found. With
    `require`, an SAE or model whose config is not at hand is a problem, else a warning."""
    from runtime.saes.loading import NotBuiltYet, SaeUnavailable, check_fits, describe_sae, trained_on_warning

    if pairs is None:
        pairs = [(spec.sae(use.sae), spec.model(ev.model)) for ev in spec.evals for use in ev.saes]
    todo = list(dict.fromkeys((sae, model) for sae, model in pairs if sae.source in sources))
    if any(s.source == "zoo" or m.source == "zoo" for s, m in todo):
        import runtime.zoo  # noqa: F401  - registers the zoo's models and SAEs, which specs may name
    problems: list[Diagnostic] = []
    warnings: list[str] = []

    def attempt(run):
        try:
            return run()
        except SaeUnavailable as e:
            if require:
                problems.extend(e.diagnostics)
            elif not isinstance(e, NotBuiltYet):
                warnings.extend(f"{d.location()}: {d.message}; not checked against the model" for d in e.diagnostics)
        except SpecError as e:
            problems.extend(e.diagnostics)
        return None

    architectures: dict[str, object] = {}
    for sae, model in todo:
        if model.name not in architectures:
            architectures[model.name] = attempt(lambda: _architecture(model, require))
        arch = architectures[model.name]
        if arch is None:
            continue
        described = attempt(lambda: describe_sae(sae, arch))
        if described is not None and attempt(lambda: check_fits(described, arch, model=model) or True):
            warning = trained_on_warning(described, model)
            if warning:
                warnings.append(warning)
    unique = list({(d.file, d.line, d.column, d.message): d for d in problems}.values())
    if unique:
        raise SpecError(unique)
    return list(dict.fromkeys(warnings))


def _architecture(model: Model, require: bool):
    """The model's architecture from its config. A hub model whose config is not in the local
    cache and cannot be fetched is, without `require`, not at hand (its SAEs are then checked
    before the run's first model pass); any other problem with it is an error."""
    from huggingface_hub import try_to_load_from_cache

    from runtime.model.sources import model_architecture
    from runtime.saes.loading import SaeUnavailable

    cached = model.source != "hub" or isinstance(try_to_load_from_cache(model.ref, "config.json"), str)
    try:
        return model_architecture(model)
    except SpecError as e:
        if require or cached:
            raise
        raise SaeUnavailable(e.diagnostics) from None
