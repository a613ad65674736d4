"""Which located cross-sections an SAE serves, known without its weights (METHOD.md sections 4
and 6; DESIGN.md "The plan": members resolved after locate).

Where an SAE reads comes from its configs (runtime/saes/loading.py `describe_sae`: a release's
directory entry, a folder's cfg.json) or, for a zoo SAE not built yet, from the zoo's own
catalogue, which the zoo registers here (`register_zoo_locations`) so this layer never imports
the zoo. With that and the located cross-sections, `served` says how each would be
reconstructed, so a run loads (or builds) only the SAEs that serve one, and `sagec plan` can say
which score nodes run. Torch-free: `sagec plan` imports it.

Which cross-sections each variant serves:
- `direct`: the cross-sections at the SAE's own location (resid_post L and resid_pre L+1 are one
  tensor, so either serves both);
- `residual`: an SAE on the residual stream at point R serves every sublayer whose output is
  added into the stream just before R: attention, its heads and the MLP of layer L for
  resid_post L (= resid_pre L+1), attention and its heads for resid_mid L; and R itself directly;
- `residual_pair`: the same sublayers, each with a second SAE of the eval on the stream before
  it (`before_points`, nearest first).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from sagec.locations import CrossSection, Location
from sagec.spec import Sae

SUBLAYERS_AT = {"resid_post": ("attn_out", "head", "mlp_out"), "resid_mid": ("attn_out", "head")}
RESIDUAL = ("resid_pre", "resid_mid", "resid_post")


def residual_point(location: Location) -> Location:
    """The canonical name of a residual-stream tensor: resid_pre L+1 is resid_post L."""
    if location.component == "resid_pre" and location.layer > 0:
        return Location("resid_post", location.layer - 1)
    return location


def before_points(site: Location, after: Location) -> tuple[Location, ...]:
    """Where residual_pair's second SAE may read for `site`'s sublayer, whose output reaches the
    stream at `after`: the streams of `site`'s layer before it, nearest first."""
    if site.component == "mlp_out" and after.component == "resid_post":
        return (Location("resid_mid", site.layer), Location("resid_pre", site.layer))
    return (Location("resid_pre", site.layer),)


def pair_before(site: Location, after: Location, partners: Collection[Location]) -> Location | None:
    """The nearest stream before `site`'s sublayer (as the trace names it) where a partner reads,
    or None; `partners` are residual points."""
    return next((b for b in before_points(site, after) if residual_point(b) in partners), None)


def served(sae_location: Location, variant: str, site: CrossSection, partners: Collection[Location] = ()) -> str | None:
    """How an SAE at `sae_location` reconstructs `site`: "direct", "residual", "residual_pair", or
    None. `partners`: the residual points where residual_pair's other SAEs read."""
    point = residual_point(sae_location)
    if residual_point(site.location) == point:
        return "direct"
    writes_here = point.component in SUBLAYERS_AT and site.location.layer == point.layer and site.location.component in SUBLAYERS_AT[point.component]
    if variant == "direct" or not writes_here:
        return None
    if variant == "residual":
        return "residual"
    return "residual_pair" if pair_before(site.location, point, {residual_point(p) for p in partners}) else None


# --- where an SAE reads, from configs alone ---------------------------------------------------

_ZOO_LOCATIONS: list[Callable[[str], Location | None]] = []


def register_zoo_locations(where: Callable[[str], Location | None]) -> None:
    """`where(zoo name)`: the location a zoo SAE reads, or None if the name is not the
    provider's; asked only for SAEs whose config does not exist yet (built on first use)."""
    _ZOO_LOCATIONS.append(where)


@dataclass(frozen=True)
class Where:
    """Where an SAE reads (None: every head's z of a layer at once), and what its configs say of
    it when they are at hand (None for a zoo SAE not built yet)."""

    location: Location | None
    description: object | None  # runtime.saes.loading.SaeDescription


def where(sae: Sae, architecture=None) -> Where:
    """Where `sae` reads, without its weights. Raises what describe_sae raises for a config that
    is wrong or not at hand, except for a zoo SAE built on first use, whose location the zoo's
    catalogue knows."""
    from runtime.saes.loading import NotBuiltYet, describe_sae

    try:
        described = describe_sae(sae, architecture)
    except NotBuiltYet:
        if sae.hook is not None:
            return Where(Location.parse(sae.hook), None)
        for provider in _ZOO_LOCATIONS:
            location = provider(sae.ref or "")
            if location is not None:
                return Where(location, None)
        raise
    return Where(described.location, described)


def partner_points(sae: Sae, partners: Sequence[Sae], locate: Callable[[Sae], Location | None]) -> dict[Location, Sae]:
    """residual_pair's partners by the residual point they read: the SAE's own family first
    (`res[2]` pairs with `res[1]`), then the others in the order the eval lists them."""
    family = sae.name.split("[")[0]
    ordered = sorted(partners, key=lambda p: p.name.split("[")[0] != family)
    out: dict[Location, Sae] = {}
    for p in ordered:
        location = locate(p)
        if location is not None and location.component in RESIDUAL:
            out.setdefault(residual_point(location), p)
    return out


@dataclass(frozen=True)
class Service:
    """What one SAE does for an eval's located cross-sections: how each served one is
    reconstructed, and for residual_pair the partner read before each."""

    how: Mapping[str, str]  # site name -> variant, served sites only, in located order
    pairs: Mapping[str, tuple[Location, Sae]]  # site -> (stream before it, partner SAE)

    @property
    def sites(self) -> list[str]:
        return list(self.how)


def service(location: Location, variant: str, sites: Sequence[str], partners: Mapping[Location, Sae], parse: Callable[[str], CrossSection]) -> Service:
    how: dict[str, str] = {}
    for s in sites:
        h = served(location, variant, parse(s), tuple(partners))
        if h is not None:
            how[s] = h
    point = residual_point(location)
    pairs = {}
    for s, h in how.items():
        if h == "residual_pair":
            b = pair_before(parse(s).location, point, partners)
            assert b is not None
            pairs[s] = (b, partners[residual_point(b)])
    return Service(how, pairs)


def serves_none(name: str, variant: str, location: Location, sites: Sequence[str], partners: Collection[Location] = ()) -> str:
    """The reason an SAE is not used: its layer and the located cross-sections."""
    located = ", ".join(sites) if sites else "none"
    why = (f"unused: {name} reads {location} (layer {location.layer}) and serves none of the located cross-sections "
           f"({located}) with {variant} reconstruction, so it was never loaded")
    if variant != "residual_pair":
        return why
    have = ", ".join(str(p) for p in partners) or "none"
    return (f"{why}: residual_pair needs a second SAE on the stream before each sublayer, among the eval's other "
            f"residual_pair SAEs (they read at {have})")
