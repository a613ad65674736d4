"""Loading SAEs through sae_lens, and where in the model each one reads.

Three sources: a sae_lens release (`SAE.from_pretrained`, names checked offline against sae_lens's
bundled directory before anything is downloaded), a folder in sae_lens's on-disk format
(`SAE.load_from_disk`), and a zoo SAE (a folder the zoo builds, loaded the same way).

The hook an SAE reads comes from its own config and is mapped to the location vocabulary:
TransformerLens hook names (`blocks.3.hook_resid_pre`) are the same for every architecture; HF
module names (`model.layers.3.mlp`) go through the family tables of runtime/model/architectures.py.
A spec's `hook` overrides both. An SAE trained on every head's z of a layer at once (TL
`blocks.L.attn.hook_z`) has no single location: its input is head_z L.0 .. L.(n-1)
concatenated, which `LoadedSae.sites` spells out once the model's head count is known.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.model.architectures import FAMILIES, GEMMA2, GEMMA3, GPT2, GPT_NEOX, LLAMA, Architecture, Family
from runtime.store.cache import sha256_file
from sagec.diagnostics import SpecError
from sagec.locations import Location
from sagec.spec import Origin, Sae

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"


@dataclass(frozen=True)
class LoadedSae:
    """A loaded SAE and the facts the passes need about it.

    `location` is where it reads, or None for an SAE over every head's z of layer `layer` (then
    `all_heads_z`); `sites` gives the locations its input concatenates in either case.
    `identity` keys caches: release, id and sae_lens version, or the folder and the sha256 of its
    weights."""

    name: str
    sae: Any  # a sae_lens SAE (StandardSAE, TopKSAE, ...) in eval mode; None from `describe_folder`
    location: Location | None
    layer: int
    all_heads_z: bool
    hook: str  # what the location was read from: the spec's `hook` or the config's hook name
    d_in: int
    d_sae: int
    architecture: str  # sae_lens's name: "standard", "topk", "jumprelu", ...
    identity: Mapping[str, str]
    origin: Origin

    def sites(self, arch: Architecture) -> tuple[Location, ...]:
        if self.location is not None:
            return (self.location,)
        return tuple(Location("head_z", self.layer, h) for h in range(arch.n_heads))

    def input_from(self, acts: Sequence[Any]) -> Any:
        """The SAE's input from the activations at `sites`, in order, each (..., width). An
        SAE over every head's z takes (..., n_heads, d_head) when sae_lens reshapes for it
        (`reshape_activations == "hook_z"`), else the heads concatenated."""
        if len(acts) == 1:
            return acts[0]
        import torch

        stacked = torch.stack(list(acts), dim=-2)
        return stacked if self._reshapes() else stacked.flatten(-2)

    def per_site(self, out: Any, arch: Architecture) -> list[Any]:
        """An SAE output (a reconstruction) split back into one tensor per site."""
        if self.location is not None:
            return [out]
        heads = out if self._reshapes() else out.unflatten(-1, (arch.n_heads, arch.d_head))
        return list(heads.unbind(-2))

    def _reshapes(self) -> bool:
        return getattr(self.sae.cfg, "reshape_activations", "none") == "hook_z"


# --- the hook ---------------------------------------------------------------------------------

_TL = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_out|attn\.hook_z|hook_z|attn\.hook_result)$")
_TL_COMPONENT = {
    "hook_resid_pre": "resid_pre",
    "hook_resid_mid": "resid_mid",
    "hook_resid_post": "resid_post",
    "hook_attn_out": "attn_out",
    "hook_mlp_out": "mlp_out",
}

# Modules whose output equals one of the family's own sites in eval mode (dropouts are
# identities), so SAEs trained on them read the same tensor. Gemma-2 and -3 have none: their
# attention and MLP outputs are normalised before they reach the residual stream.
_HF_ALIASES: dict[str, dict[str, str]] = {
    GPT2.name: {"attn.c_proj": "attn_out", "mlp.c_proj": "mlp_out"},
    GPT_NEOX.name: {"attention": "attn_out", "attention.dense": "attn_out", "mlp": "mlp_out"},
    LLAMA.name: {"self_attn.o_proj": "attn_out", "mlp.down_proj": "mlp_out"},
    GEMMA2.name: {},
    GEMMA3.name: {},
}


class UnknownHook(ValueError):
    pass


def tl_location(hook: str, head: int | None = None) -> tuple[Location | None, int] | None:
    """A TransformerLens hook name as (location, layer); location None means every head's z.
    None if the name is not a TL name sagec knows."""
    m = _TL.match(hook)
    if not m:
        return None
    layer, site = int(m.group(1)), m.group(2)
    if site in _TL_COMPONENT:
        return Location(_TL_COMPONENT[site], layer), layer
    if site.endswith("hook_z"):
        return (Location("head_z", layer, head) if head is not None else None), layer
    if head is None:  # hook_result stacks every head's d_model-wide output: no single location
        raise UnknownHook(f"{hook!r} without a head index holds every head's output at once; sagec reads one head's (`head L.H`)")
    return Location("head", layer, head), layer


def hf_location(module: str, family: Family | None = None) -> Location | None:
    """An HF module name (whose output the SAE read) as a location, through the family tables.
    `model.layers.L.mlp` means mlp_out in Llama but not in Gemma-2, so without the family a name
    maps only if every family that could own it agrees."""
    answers: dict[str, Location | None] = {}
    for fam in FAMILIES if family is None else (family,):
        prefix = fam.layers + "."
        layer_text, _, rest = module[len(prefix) :].partition(".") if module.startswith(prefix) else ("", "", "")
        if layer_text.isdigit():
            sites = {"": "resid_post", fam.attn_site: "attn_out", fam.mlp_site: "mlp_out", **_HF_ALIASES[fam.name]}
            answers[fam.name] = Location(sites[rest], int(layer_text)) if rest in sites else None
    if len(set(answers.values())) > 1:
        raise UnknownHook(f"{module!r} means different things in {' and '.join(answers)}; load the SAE with the model's architecture, or give `hook`")
    return next(iter(answers.values()), None)


def config_location(metadata: Any, family: Family | None = None) -> tuple[Location | None, int, str]:
    """(location, layer, hook name) from an SAE config's metadata: the TL hook name first (it
    means the same in every architecture), then `hf_hook_name`, then `hook_name` as an HF name
    (sae_lens stores the HF module name there when it trained through an HF model)."""
    hook = getattr(metadata, "hook_name", None)
    hf_hook = getattr(metadata, "hf_hook_name", None)
    head = getattr(metadata, "hook_head_index", None)
    if hook:
        tl = tl_location(hook, head)
        if tl is not None:
            return tl[0], tl[1], hook
    for name in (hf_hook, hook):
        if name:
            loc = hf_location(name, family)
            if loc is not None:
                return loc, loc.layer, name
    names = " or ".join(repr(n) for n in (hook, hf_hook) if n) or "no hook name"
    raise UnknownHook(f"its config gives {names}, which is not a location sagec knows")


# --- sources ----------------------------------------------------------------------------------


def check_source(sae: Sae) -> None:
    """Everything about an SAE's source that can be checked offline without loading weights:
    a sae_lens release and id against the bundled directory, a folder's files, a zoo name."""
    if sae.source == "sae_lens":
        _check_pretrained(sae)
    elif sae.source == "path":
        _check_folder(sae, Path(sae.ref or ""))
    elif sae.source == "zoo":
        _zoo_folder(sae, build=False)
    else:
        raise SpecError.at(sae.origin, f"SAE {sae.name}: unknown source {sae.source!r}")
    if sae.hook is not None:
        _override(sae)


@dataclass(frozen=True)
class Listed:
    """One SAE a spec can name: `source zoo "name"` or `source sae_lens "release" "id"`."""

    source: str  # "zoo" | "sae_lens"
    name: str  # the zoo name, or "release/id"
    model: str  # the model it was trained on, as its source names it ("" if unknown)


def catalogue(pattern: str | None = None) -> list[Listed]:
    """Every zoo SAE and every SAE in sae_lens's bundled directory whose name matches the
    shell-style `pattern` (for `sagec ls saes`); zoo first, each part sorted."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    found = [Listed("zoo", n, n.split("/", 1)[0]) for n in zoo_sae_names()]
    for release, entry in sorted(get_pretrained_saes_directory().items()):
        found += [Listed("sae_lens", f"{release}/{i}", entry.model) for i in entry.saes_map]
    return [x for x in found if pattern is None or fnmatch.fnmatchcase(x.name, pattern)]


def _check_pretrained(sae: Sae) -> None:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    release, sae_id = sae.release or "", sae.sae_id or ""
    if release not in directory:
        repo_releases = [r for r, entry in directory.items() if entry.repo_id == release]
        if repo_releases:
            raise SpecError.at(sae.origin, f"SAE {sae.name}: {release!r} is a Hugging Face repo; sae_lens names it as release {repo_releases[0]!r}", hint=f"use release {repo_releases[0]!r}")
        raise SpecError.at(sae.origin, f"SAE {sae.name}: sae_lens has no release {release!r}", hint=_closest(release, list(directory), "release"))
    ids = list(directory[release].saes_map)
    if sae_id not in ids:
        raise SpecError.at(sae.origin, f"SAE {sae.name}: sae_lens release {release!r} has no SAE id {sae_id!r} ({len(ids)} ids)", hint=_closest(sae_id, ids, "id"))


def _closest(name: str, valid: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    shown = ", ".join(repr(v) for v in sorted(valid)[:8])
    return f"valid {what}s include {shown}" + (", ..." if len(valid) > 8 else "") + " (`sagec ls saes` lists them)"


def _check_folder(sae: Sae, folder: Path) -> None:
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        what = "does not exist" if not folder.exists() else f"has no {CONFIG_FILE} and {WEIGHTS_FILE} (sae_lens's on-disk format)"
        raise SpecError.at(sae.origin, f"SAE {sae.name}: the folder {str(folder)!r} {what}")


# Zoo SAEs by name, each with a function returning its sae_lens folder (building it on first use:
# SmolLM2 SAEs are trained lazily per layer). runtime/zoo registers its whole catalogue as a
# provider when it is imported (names(), folder(name)), so this layer never imports the zoo;
# `register_zoo_sae` adds single ones (a plug-in, a test).
_ZOO: dict[str, Callable[[], Path]] = {}
_PROVIDERS: list[tuple[Callable[[], Iterable[str]], Callable[[str], Path]]] = []


def register_zoo_sae(name: str, folder: Callable[[], Path]) -> None:
    """Make `source zoo "name"` resolve to the folder `folder()` returns."""
    _ZOO[name] = folder


def register_zoo_saes(names: Callable[[], Iterable[str]], folder: Callable[[str], Path]) -> None:
    """Make every name `names()` lists resolve through `folder(name)`; asked on each lookup, so
    a provider's catalogue may change (and costs nothing until a spec names a zoo SAE)."""
    _PROVIDERS.append((names, folder))


def _zoo_table() -> dict[str, Callable[[], Path]]:
    table = dict(_ZOO)
    for names, folder in _PROVIDERS:
        for name in names():
            table.setdefault(name, functools.partial(folder, name))
    return table


def zoo_sae_names() -> list[str]:
    return list(_zoo_table())


def _zoo_folder(sae: Sae, build: bool) -> Path | None:
    """The zoo's folder for this SAE, built on first use when `build`."""
    table = _zoo_table()
    if sae.ref not in table:
        names = list(table)
        close = difflib.get_close_matches(sae.ref or "", names, n=3, cutoff=0.5)
        hint = ("did you mean " + " or ".join(repr(c) for c in close) + "?") if close else "`sagec ls saes` lists them"
        raise SpecError.at(sae.origin, f"SAE {sae.name}: the zoo has no SAE {sae.ref!r}; it has {_compact(names)}", hint=hint)
    if not build:
        return None
    try:
        return Path(table[sae.ref or ""]())
    except FileNotFoundError as e:  # a committed SAE whose files are missing
        raise SpecError.at(sae.origin, f"SAE {sae.name}: {e}") from None


def _compact(names: list[str]) -> str:
    """The names, or when there are many, their shapes with the trailing layer number as N
    (`tiny-ioi/topk-k8/resid_post.N`), so the message lists every kind without every layer."""
    if not names:
        return "none"
    if len(names) <= 12:
        return ", ".join(repr(n) for n in names)
    shapes = list(dict.fromkeys(re.sub(r"\d+$", "N", n) for n in names))
    return f"{len(names)}: " + ", ".join(repr(n) for n in shapes) + " (N a layer)"


def _override(sae: Sae) -> Location:
    try:
        return Location.parse(sae.hook or "")
    except ValueError as e:
        raise SpecError.at(sae.origin, f"SAE {sae.name}: hook {sae.hook!r}: {e}") from None


# --- loading ----------------------------------------------------------------------------------


def load_sae(sae: Sae, architecture: Architecture | None = None, device: str = "cpu", dtype: str | None = None) -> LoadedSae:
    """Load an SAE and find where it reads. `architecture` (the model's) settles HF module names
    that differ between families; TL names and a spec's `hook` need none."""
    check_source(sae)
    if sae.source == "sae_lens":
        model = _from_pretrained(sae, device, dtype)
        identity = {"source": "sae_lens", "release": sae.release or "", "id": sae.sae_id or "", "sae_lens": _sae_lens_version()}
    else:
        folder = Path(sae.ref or "") if sae.source == "path" else _zoo_folder(sae, build=True)
        assert folder is not None
        _check_folder(sae, folder)
        model = _from_disk(sae, folder, device, dtype)
        identity = {"source": sae.source, "folder": str(folder.resolve()), "sha256": sha256_file(folder / WEIGHTS_FILE)}
        if sae.source == "zoo":
            identity["name"] = sae.ref or ""
    model.eval()
    cfg = model.cfg
    location, layer, hook, all_heads = _where(sae, cfg.metadata, architecture)
    return LoadedSae(
        name=sae.name,
        sae=model,
        location=location,
        layer=layer,
        all_heads_z=all_heads,
        hook=hook,
        d_in=int(cfg.d_in),
        d_sae=int(cfg.d_sae),
        architecture=str(cfg.architecture()),
        identity=identity,
        origin=sae.origin,
    )


def describe_folder(sae: Sae, folder: Path, architecture: Architecture | None = None) -> LoadedSae:
    """What `load_sae` would report for a folder, from its cfg.json alone (`sae` is None): lets
    `sagec check --deep` test the fit without loading weights."""
    _check_folder(sae, folder)
    try:
        cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpecError.at(sae.origin, f"SAE {sae.name}: {str(folder / CONFIG_FILE)!r} is not a sae_lens config: {e}") from None
    metadata = types.SimpleNamespace(**{k: None for k in ("hook_name", "hf_hook_name", "hook_head_index")} | dict(cfg.get("metadata") or {}))
    location, layer, hook, all_heads = _where(sae, metadata, architecture)
    return LoadedSae(sae.name, None, location, layer, all_heads, hook, d_in, d_sae, str(cfg.get("architecture", "standard")), {}, sae.origin)


def _where(sae: Sae, metadata: Any, architecture: Architecture | None) -> tuple[Location | None, int, str, bool]:
    """(location, layer, hook, all heads' z) from the spec's `hook`, else the config."""
    if sae.hook is not None:
        location = _override(sae)
        return location, location.layer, sae.hook, False
    try:
        location, layer, hook = config_location(metadata, architecture.family if architecture else None)
    except UnknownHook as e:
        raise SpecError.at(sae.origin, f"SAE {sae.name}: cannot tell where it reads: {e}", hint='give the location in the spec, e.g. hook "resid_pre 3"') from None
    return location, layer, hook, location is None


def _from_pretrained(sae: Sae, device: str, dtype: str | None) -> Any:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
    from sae_lens import SAE

    try:
        return SAE.from_pretrained(sae.release, sae.sae_id, device=device, dtype=dtype or "float32")
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        offline = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") else "the hub could not be reached"
        raise SpecError.at(
            sae.origin,
            f"SAE {sae.name}: sae_lens release {sae.release!r} id {sae.sae_id!r} is valid but not in the local Hugging Face cache, and no hub is reachable ({offline}; {type(e).__name__})",
            hint="download it once where the hub is reachable, or use a local SAE (`source path`) or a zoo SAE (`source zoo`)",
        ) from None


def _from_disk(sae: Sae, folder: Path, device: str, dtype: str | None) -> Any:
    from sae_lens import SAE

    try:
        return SAE.load_from_disk(str(folder), device=device, dtype=dtype)
    except (ValueError, KeyError, OSError) as e:
        raise SpecError.at(sae.origin, f"SAE {sae.name}: sae_lens cannot load {str(folder)!r}: {e}") from None


def _sae_lens_version() -> str:
    import sae_lens

    return str(sae_lens.__version__)


# --- fitting the model ------------------------------------------------------------------------


def check_fits(loaded: LoadedSae, architecture: Architecture, model_name: str | None = None) -> None:
    """Reject an SAE whose hook or width does not fit the model, before any forward pass.
    `model_name` is the spec's name for the model, for the message."""
    model = f"model {model_name}" if model_name else "the model"
    where = str(loaded.location) if loaded.location is not None else f"every head's z of layer {loaded.layer}"
    if loaded.layer >= architecture.n_layers:
        raise SpecError.at(
            loaded.origin,
            f"SAE {loaded.name} reads {where} (hook {loaded.hook!r}), but {model} has {architecture.n_layers} layers (0..{architecture.n_layers - 1})",
        )
    if loaded.location is not None and loaded.location.head is not None and loaded.location.head >= architecture.n_heads:
        raise SpecError.at(loaded.origin, f"SAE {loaded.name} reads {where}, but {model} has {architecture.n_heads} heads per layer")
    width = sum(architecture.width(site) for site in loaded.sites(architecture))
    if loaded.d_in != width:
        what = f"{architecture.n_heads} heads x d_head {architecture.d_head} = {width}" if loaded.all_heads_z else str(width)
        raise SpecError.at(
            loaded.origin,
            f"SAE {loaded.name} has d_in {loaded.d_in} at {where} (hook {loaded.hook!r}), but {model} ({architecture.family.name}, d_model {architecture.d_model}) has width {what} there",
        )
