"""Members resolved after locate (DESIGN.md "The plan"; METHOD.md section 6): which score nodes
of a plan have work to do once the located cross-sections are known.

A score node whose SAE (under the eval's reconstruction variant) serves none of its eval's
located cross-sections finishes without loading anything (runtime/passes/score.py decides that
itself, from configs). This module makes the same decision for a whole plan at once, so that
`sagec run` builds the zoo SAEs that are needed, and only those, together (one pass over the
corpus), and checks them against their model before their score nodes start; and so that
`sagec plan` can say exactly which score nodes will run once a locate artifact is cached.
Everything here reads configs and the locate artifact's metadata, never weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sagec.locations import CrossSection
from sagec.plan import Node, Plan, ScoreParams
from sagec.spec import Model, Sae


@dataclass(frozen=True)
class Resolution:
    """One score node after locate: the sites it serves (empty: it runs without loading) and the
    SAEs it needs loaded (its own and the residual_pair partners it reads beside it)."""

    node_id: str
    sites: tuple[str, ...]
    needs: tuple[Sae, ...]
    reason: str | None  # why it serves nothing

    @property
    def runs(self) -> bool:
        return bool(self.sites)


def parse_site(name: str) -> CrossSection:
    """A site name as artifacts write it ("mlp_out 1@end"); the same as runtime.passes.common's,
    which imports torch."""
    location, _, position = name.rpartition("@")
    from sagec.locations import Location

    return CrossSection(Location.parse(location), position)


def resolve(node: Node, located: Sequence[str], architecture_of: Callable[[Model], object]) -> Resolution:
    """Which of `located` (site names) the score node's SAE serves, from configs alone."""
    from runtime.saes.serving import partner_points, service, serves_none, where

    params: ScoreParams = node.params
    arch = architecture_of(params.model)
    reads: dict[str, object] = {}

    def locate(sae: Sae):
        if sae.name not in reads:
            reads[sae.name] = where(sae, arch).location
        return reads[sae.name]

    location = locate(params.sae)
    if location is None:  # every head's z at once: the score pass reports it unsupported
        return Resolution(node.id, (), (), f"SAE {params.sae.name} reads every head's z of a layer at once")
    partners = partner_points(params.sae, params.partners, locate) if params.reconstruct == "residual_pair" else {}
    plan = service(location, params.reconstruct, located, partners, parse_site)
    if not plan.sites:
        return Resolution(node.id, (), (), serves_none(params.sae.name, params.reconstruct, location, located, partners))
    needs = (params.sae, *dict.fromkeys(p for _, p in plan.pairs.values()))
    return Resolution(node.id, tuple(plan.sites), needs, None)


def located_sites(plan: Plan, score: Node, artifacts_meta: Callable[[str], Mapping | None]) -> list[str] | None:
    """The located cross-sections a score node's eval selected, from its locate node's metadata
    (`artifacts_meta(node id)`, None when not at hand)."""
    locate_id = score.inputs[1]
    meta = artifacts_meta(locate_id)
    return None if meta is None else list(meta["selected"])


def resolve_all(plan: Plan, scores: Iterable[Node], artifacts_meta: Callable[[str], Mapping | None],
                architecture_of: Callable[[Model], object]) -> dict[str, Resolution]:
    """Resolve every score node whose locate metadata is at hand; the others are left out."""
    out: dict[str, Resolution] = {}
    for node in scores:
        located = located_sites(plan, node, artifacts_meta)
        if located is not None:
            out[node.id] = resolve(node, located, architecture_of)
    return out


def architectures() -> Callable[[Model], object]:
    """A model's architecture from its config, read once per model."""
    from runtime.model.sources import model_architecture

    seen: dict[str, object] = {}

    def of(model: Model):
        if model.name not in seen:
            seen[model.name] = model_architecture(model)
        return seen[model.name]

    return of
