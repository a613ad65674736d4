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

A transcoder (sae_lens `Transcoder`, `SkipTranscoder` and their JumpReLU variants) reads one
location and reconstructs another: its config's `hook_name` is its input, `hook_name_out` its
output. sagec evaluates MLP transcoders (METHOD.md section 10): input `mlp_in L`, the MLP's
normalised input, output `mlp_out L`, which it reconstructs `direct`ly. Its description's
`location` is the output (the cross-section it serves), `input_location` the input.

`describe_sae` says all of that from configs alone, without weights (a release's config through
sae_lens's own config getters, a folder's cfg.json, safetensors headers), together with the model
the SAE was trained on and the TransformerLens preprocessing it was trained under
(runtime/saes/preprocessing.py): `sagec plan`, `sagec check --deep` and `sagec run` refuse an SAE
that does not fit its model before any model pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import functools
import glob
import json
import os
import re
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.model.architectures import FAMILIES, GEMMA2, GEMMA3, GPT2, GPT_NEOX, LLAMA, Architecture, Family
from runtime.saes.preprocessing import NONE, Preprocessing, UnreproducibleOption, preprocessing_for
from runtime.store.digests import file_sha256
from sagec.diagnostics import SpecError
from sagec.locations import Location
from sagec.spec import Model, Origin, Sae

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"


@dataclass(frozen=True)
class SaeDescription:
    """What an SAE's configs say about it, without its weights (`describe_sae`).

    `location` is where it reads, or None for an SAE over every head's z of layer `layer` (then
    `all_heads_z`). `model_name`: the model its config says it was trained on (None if it does
    not say). `tl_options`: the TransformerLens `from_pretrained` options it was trained under, as
    recorded; `preprocessing`: what sagec does about them at this location of this model (None
    when described without the model's architecture)."""

    name: str
    source: str
    location: Location | None
    layer: int
    all_heads_z: bool
    hook: str  # what the location was read from: the spec's `hook` or the config's hook name
    d_in: int
    d_sae: int
    architecture: str  # sae_lens's name: "standard", "topk", "jumprelu", ...
    model_name: str | None
    tl_options: tuple[tuple[str, Any], ...]
    preprocessing: Preprocessing | None
    origin: Origin
    # A transcoder's: where it reads (mlp_in L; `location` is then what it reconstructs, mlp_out
    # L) and its output width. None for an SAE, which reconstructs its own input.
    input_location: Location | None = dataclasses.field(default=None, kw_only=True)
    d_out: int | None = dataclasses.field(default=None, kw_only=True)

    @property
    def transcoder(self) -> bool:
        return self.input_location is not None

    def sites(self, arch: Architecture) -> tuple[Location, ...]:
        """The locations the SAE's input is read from, concatenated."""
        if self.input_location is not None:
            return (self.input_location,)
        if self.location is not None:
            return (self.location,)
        return tuple(Location("head_z", self.layer, h) for h in range(arch.n_heads))


@dataclass(frozen=True)
class LoadedSae(SaeDescription):
    """A loaded SAE: its description (where it reads, `sites` gives the locations its input
    concatenates; `preprocessing`, what is done to activations before it reads them, always
    settled here) and the weights. `identity` keys caches: release, id and sae_lens version, or
    the folder and the sha256 of its weights."""

    sae: Any  # a sae_lens SAE (StandardSAE, TopKSAE, ...) in eval mode
    identity: Mapping[str, str]

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

_TL = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post|hook_attn_out|hook_mlp_in|mlp\.hook_in|hook_mlp_out|attn\.hook_z|hook_z|attn\.hook_result)$")
# `hook_mlp_in` is the MLP's input as sae_lens's own transcoder loaders use the name (Gemma Scope
# 2's transcoders: `blocks.L.hook_mlp_in`, HF `pre_feedforward_layernorm.output`, the norm's
# output), i.e. sagec's mlp_in; so is TransformerLens's TransformerBridge `mlp.hook_in`, the MLP
# module's input (sae_lens's mwhanna transcoder loader uses it).
_TL_COMPONENT = {
    "hook_resid_pre": "resid_pre",
    "hook_resid_mid": "resid_mid",
    "hook_resid_post": "resid_post",
    "hook_attn_out": "attn_out",
    "hook_mlp_in": "mlp_in",
    "mlp.hook_in": "mlp_in",
    "hook_mlp_out": "mlp_out",
}
# TransformerLens's `ln2.hook_normalized` is the MLP norm's output before its scale (and bias):
# not a tensor of the HF model, and not mlp_in unless the scale is one.
_TL_NORMALIZED = re.compile(r"^blocks\.(\d+)\.ln2\.hook_normalized$")

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
        if _TL_NORMALIZED.match(hook):
            raise UnknownHook(f"{hook!r} is TransformerLens's MLP-norm output before the norm's scale, which the HF model never computes; "
                              f"if the SAE reads the MLP's input after its norm, give `hook \"mlp_in {_TL_NORMALIZED.match(hook).group(1)}\"`")
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
    maps only if every family that could own it agrees. A trailing `.output` names the module's
    output, as the name alone does; `<mlp>.input` and the MLP norm's output are mlp_in."""
    answers: dict[str, Location | None] = {}
    module = module.removesuffix(".output")
    for fam in FAMILIES if family is None else (family,):
        prefix = fam.layers + "."
        layer_text, _, rest = module[len(prefix) :].partition(".") if module.startswith(prefix) else ("", "", "")
        if layer_text.isdigit():
            sites = {"": "resid_post", fam.attn_site: "attn_out", fam.mlp_site: "mlp_out", fam.mlp_norm: "mlp_in",
                     f"{fam.mlp}.input": "mlp_in", **_HF_ALIASES[fam.name]}
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
# provider when it is imported (names(), folder(name), and built(name): the folder if it exists
# already, else None), so this layer never imports the zoo; `register_zoo_sae` adds single ones
# (a plug-in, a test), whose folder function must be cheap.
_ZOO: dict[str, Callable[[], Path]] = {}
_PROVIDERS: list[tuple[Callable[[], Iterable[str]], Callable[[str], Path], Callable[[str], Path | None] | None]] = []


def register_zoo_sae(name: str, folder: Callable[[], Path]) -> None:
    """Make `source zoo "name"` resolve to the folder `folder()` returns."""
    _ZOO[name] = folder


def register_zoo_saes(names: Callable[[], Iterable[str]], folder: Callable[[str], Path], built: Callable[[str], Path | None] | None = None) -> None:
    """Make every name `names()` lists resolve through `folder(name)`; asked on each lookup, so
    a provider's catalogue may change (and costs nothing until a spec names a zoo SAE).
    `built(name)`, when given, returns the folder only if it needs no building, so an SAE can be
    described before it is built."""
    _PROVIDERS.append((names, folder, built))


def _zoo_table() -> dict[str, Callable[[], Path]]:
    table = dict(_ZOO)
    for names, folder, _ in _PROVIDERS:
        for name in names():
            table.setdefault(name, functools.partial(folder, name))
    return table


def _zoo_built(name: str) -> Path | None:
    """The zoo SAE's folder if it exists without building, else None."""
    if name in _ZOO:
        return Path(_ZOO[name]())
    for names, _, built in _PROVIDERS:
        if name in names():
            return None if built is None else built(name)
    return None


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


# --- describing from configs alone -----------------------------------------------------------


class SaeUnavailable(SpecError):
    """An SAE whose configs are not at hand: a release not in the local Hugging Face cache with no
    hub to reach, or a zoo SAE built on first use. `sagec plan` notes it; `sagec run` refuses."""


class NotBuiltYet(SaeUnavailable):
    """A zoo SAE built on first use: the zoo trains it for its own model and location, so there
    is nothing to note before it exists (`sagec run` builds it, then checks it)."""


# Metadata keys that pre-6.0 sae_lens configs keep at the top level, under their old names.
_OLD_NAMES = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index"}
_METADATA_KEYS = ("hook_name", "hf_hook_name", "hook_head_index", "model_name", "model_from_pretrained_kwargs", "hook_name_out", "hf_hook_name_out")


def config_facts(cfg: Mapping[str, Any]) -> tuple[int, int, str, types.SimpleNamespace]:
    """(d_in, d_sae, architecture, metadata) from a sae_lens config dict in either format: 6.x
    nests the model-side keys under `metadata`, earlier versions keep them at the top level (and
    call the hook `hook_point`)."""
    top = {_OLD_NAMES.get(k, k): v for k, v in cfg.items()}
    metadata = {k: top.get(k) for k in _METADATA_KEYS} | {k: v for k, v in dict(cfg.get("metadata") or {}).items() if v is not None}
    architecture = str(cfg.get("architecture") or ("topk" if (cfg.get("activation_fn") or cfg.get("activation_fn_str")) == "topk" else "standard"))
    return int(cfg["d_in"]), int(cfg["d_sae"]), architecture, types.SimpleNamespace(**metadata)


def describe_sae(sae: Sae, architecture: Architecture | None = None) -> SaeDescription:
    """Where an SAE reads, its widths, the model it was trained on and its preprocessing, from its
    configs alone: a release's config through sae_lens's config getter for it (a cfg.json, or
    nothing for Gemma Scope, whose shape sae_lens derives from the path), a folder's cfg.json, a
    built zoo SAE's cfg.json. Raises SaeUnavailable when the config is not at hand offline, and
    SpecError for everything wrong with the SAE itself. With `architecture`, HF hook names are
    read in the model's family and the preprocessing is settled for it."""
    check_source(sae)
    if sae.source == "sae_lens":
        cfg, where = _release_config(sae), f"sae_lens release {sae.release!r} id {sae.sae_id!r}"
    else:
        folder = Path(sae.ref or "") if sae.source == "path" else _zoo_built(sae.ref or "")
        if folder is None:
            raise NotBuiltYet.at(sae.origin, f"SAE {sae.name}: zoo SAE {sae.ref!r} is built on first use, so its config is not there yet")
        _check_folder(sae, folder)
        where = str(folder / CONFIG_FILE)
        try:
            cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SpecError.at(sae.origin, f"SAE {sae.name}: {where!r} is not a sae_lens config: {e}") from None
    try:
        d_in, d_sae, kind, metadata = config_facts(cfg)
    except (KeyError, TypeError, ValueError) as e:
        raise SpecError.at(sae.origin, f"SAE {sae.name}: the config of {where} is not a sae_lens config: {type(e).__name__}: {e}") from None
    d_out = cfg.get("d_out")
    return _describe(sae, d_in, d_sae, kind, metadata, architecture, int(d_out) if d_out is not None else None)


# sae_lens architectures the score pass cannot evaluate, and why (every other one goes through
# sae_lens's own encode and decode).
UNSUPPORTED_ARCHITECTURES = {
    "abstopk": "its latents fire with either sign (AbsTopK keeps the k largest in magnitude), and sagec's metrics read a latent as active where it is positive",
    "temporal": "it encodes a token from the whole sequence before it (attention over the context), and sagec reads activations at named positions only",
}


def _describe(sae: Sae, d_in: int, d_sae: int, kind: str, metadata: Any, architecture: Architecture | None, d_out: int | None = None) -> SaeDescription:
    if kind in UNSUPPORTED_ARCHITECTURES:
        raise SpecError.at(sae.origin, f"SAE {sae.name} is a sae_lens {kind!r} SAE, which sagec cannot evaluate: {UNSUPPORTED_ARCHITECTURES[kind]}")
    if d_out is not None or "transcoder" in kind:
        return _describe_transcoder(sae, d_in, d_sae, kind, metadata, architecture, d_out)
    location, layer, hook, all_heads = _where(sae, metadata, architecture)
    options = tuple(sorted(_tl_options(sae, metadata).items()))
    prep = None if architecture is None else _preprocessing(sae, options, location, architecture)
    model_name = getattr(metadata, "model_name", None)
    return SaeDescription(sae.name, sae.source, location, layer, all_heads, hook, d_in, d_sae, kind, str(model_name) if model_name else None,
                          options, prep, sae.origin)


def _describe_transcoder(sae: Sae, d_in: int, d_sae: int, kind: str, metadata: Any, architecture: Architecture | None, d_out: int | None) -> SaeDescription:
    """A transcoder: input and output from `hook_name` and `hook_name_out` (or their HF names),
    or from the spec's `hook` (`mlp_in L` or `mlp_out L`, either naming the pair). Only the MLP
    pair of one layer is supported: METHOD.md section 10's `direct` reconstruction of mlp_out L
    from mlp_in L."""
    family = architecture.family if architecture else None
    try:
        if sae.hook is not None:
            given = _override(sae)
            source, target = Location("mlp_in", given.layer), Location("mlp_out", given.layer)
            hook = sae.hook
        else:
            source, _, hook = config_location(metadata, family)
            out_names = types.SimpleNamespace(hook_name=getattr(metadata, "hook_name_out", None), hf_hook_name=getattr(metadata, "hf_hook_name_out", None))
            if not (out_names.hook_name or out_names.hf_hook_name):
                raise UnknownHook("its config gives no output hook (`hook_name_out`)")
            target, _, hook_out = config_location(out_names, family)
            hook = f"{hook} -> {hook_out}"
    except UnknownHook as e:
        raise SpecError.at(sae.origin, f"SAE {sae.name} is a transcoder ({kind}); cannot tell where it reads and writes: {e}",
                           hint='give the layer in the spec, e.g. hook "mlp_out 3" (input mlp_in 3)') from None
    if source is None or target is None or (source.component, target.component) != ("mlp_in", "mlp_out") or source.layer != target.layer:
        raise SpecError.at(sae.origin, f"SAE {sae.name} is a transcoder ({kind}) from {source or 'every head z'} to {target or 'every head z'}; "
                           "sagec evaluates transcoders from a layer's MLP input to its MLP output (mlp_in L -> mlp_out L)",
                           hint='if it does read the MLP input and write the MLP output, give hook "mlp_out L" in the spec')
    options = tuple(sorted(_tl_options(sae, metadata).items()))
    prep = None
    if architecture is not None:
        # The input side refuses what cannot be reproduced at mlp_in; the output side says what
        # the reconstruction of mlp_out needs (centring). What the spec accepted is recorded.
        at_input, prep = _preprocessing(sae, options, source, architecture), _preprocessing(sae, options, target, architecture)
        accepted = tuple(sorted({*prep.accepted, *at_input.accepted}))
        prep = dataclasses.replace(prep, accepted=accepted, needs_nothing=tuple(o for o in prep.needs_nothing if o not in accepted))
    model_name = getattr(metadata, "model_name", None)
    return SaeDescription(sae.name, sae.source, target, target.layer, False, hook, d_in, d_sae, kind, str(model_name) if model_name else None,
                          options, prep, sae.origin, input_location=source, d_out=d_out if d_out is not None else d_in)


def _tl_options(sae: Sae, metadata: Any) -> dict[str, Any]:
    """The TransformerLens options the SAE was trained under: its config's, and for a release
    those sae_lens's directory records for it (which the loaders merge in, but only into
    pre-6.0 configs)."""
    options = dict(getattr(metadata, "model_from_pretrained_kwargs", None) or {})
    if sae.source == "sae_lens":
        from sae_lens.loading.pretrained_saes_directory import get_config_overrides

        options.update(get_config_overrides(sae.release or "", sae.sae_id or "").get("model_from_pretrained_kwargs") or {})
    return options


def _preprocessing(sae: Sae, options: tuple[tuple[str, Any], ...], location: Location | None, architecture: Architecture) -> Preprocessing:
    try:
        return preprocessing_for(dict(options), location, architecture.family.name, sae.accept_preprocessing)
    except UnreproducibleOption as e:
        where = str(location) if location is not None else "every head's z"
        raise SpecError.at(
            sae.origin,
            f"SAE {sae.name} was trained on TransformerLens activations processed with {e} (at {where} of a {architecture.family.name} model)",
            hint=f"to evaluate it on the model's own activations all the same, write `accept preprocessing {e.option}` in its sae block",
        ) from None


def _release_config(sae: Sae) -> dict[str, Any]:
    from sae_lens.loading.pretrained_sae_loaders import load_sae_config_from_huggingface

    with _hub_errors(sae), cached_safetensors_headers():
        return load_sae_config_from_huggingface(sae.release or "", sae.sae_id or "")


@contextlib.contextmanager
def _hub_errors(sae: Sae) -> Iterator[None]:
    """A release not in the local cache with no hub to reach, said in the spec's terms."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        yield
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub could not be reached"
        raise SaeUnavailable.at(
            sae.origin,
            f"SAE {sae.name}: sae_lens release {sae.release!r} id {sae.sae_id!r} is valid but not in the local Hugging Face cache, and no hub is reachable ({why}; {type(e).__name__})",
            hint="run `sagec fetch SPEC` once where the hub is reachable, or use a local SAE (`source path`) or a zoo SAE (`source zoo`)",
        ) from None


# safetensors' dtype names for the floating dtypes sae_lens stores weights in.
_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def weights_dtype(path: str | os.PathLike[str]) -> str | None:
    """The dtype an SAE's weights are stored in (its decoder's), from the safetensors header;
    None when the file holds no `W_dec`."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    info = header.get("W_dec")
    return _SAFETENSORS_DTYPES.get(info["dtype"], info["dtype"].lower()) if info else None


def safetensors_shapes(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors file's header (its first 8 + N bytes), no weights read."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return {name: info["shape"] for name, info in header.items() if name != "__metadata__"}


@contextlib.contextmanager
def cached_safetensors_headers() -> Iterator[None]:
    """sae_lens 6.54 reads Gemma Scope 2's tensor shapes with an HTTP range request to the hub,
    which fails offline even when the file is in the local cache. While this is active, a cached
    file's header is read from disk (the loader downloads that very file next anyway); offline, an
    uncached one is a LocalEntryNotFoundError like every other missing file; online, sae_lens's own
    request runs."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError
    from sae_lens.loading import pretrained_sae_loaders as loaders

    original = loaders.get_safetensors_tensor_shapes

    def shapes(repo_id: str, filename: str) -> dict[str, list[int]]:
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str):
            return safetensors_shapes(path)
        if constants.HF_HUB_OFFLINE:
            raise LocalEntryNotFoundError(f"{repo_id}/{filename} is not in the local Hugging Face cache")
        return original(repo_id, filename)

    loaders.get_safetensors_tensor_shapes = shapes
    try:
        yield
    finally:
        loaders.get_safetensors_tensor_shapes = original


# --- the files of a release -------------------------------------------------------------------


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    required: bool  # False: the loader goes on without it (a sparsity file, Gemma Scope 2's config)


def release_files(release: str, sae_id: str) -> tuple[HubFile, ...] | None:
    """The files `SAE.from_pretrained(release, sae_id)` downloads, as sae_lens's loader for the
    release reads them; None for loaders whose file lists sagec does not know (then only running
    the loader tells)."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory, get_repo_id_and_folder_name

    entry = get_pretrained_saes_directory()[release]
    repo, folder = get_repo_id_and_folder_name(release, sae_id)
    loader = entry.conversion_func or "sae_lens"
    if loader == "sae_lens":
        return (HubFile(repo, f"{folder}/{CONFIG_FILE}", True), HubFile(repo, f"{folder}/{WEIGHTS_FILE}", True),
                HubFile(repo, f"{folder}/sparsity.safetensors", False))
    if loader == "gemma_2":
        return (HubFile(repo, f"{folder}/params.npz", True),)
    if loader == "gemma_3":
        weights = f"{folder}.safetensors" if "clt" in folder else f"{folder}/params.safetensors"
        return (HubFile(repo, f"{folder}/config.json", False), HubFile(repo, weights, True))
    return None


def cached_path(file: HubFile) -> str | None:
    """The local path of `file` in the Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(file.repo_id, file.filename)
    return path if isinstance(path, str) else None


def snapshot_folder(repo_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot of `repo_id` that `refs/main` points to, or None."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    try:
        commit = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = folder / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def release_cached(release: str, sae_id: str) -> bool:
    """Whether the files the release's SAE needs are in the local cache: every required one, or,
    for a loader whose files sagec does not know, anything at the SAE's path in the snapshot."""
    from sae_lens.loading.pretrained_saes_directory import get_repo_id_and_folder_name

    files = release_files(release, sae_id)
    if files is not None:
        return all(cached_path(f) for f in files if f.required)
    repo, folder = get_repo_id_and_folder_name(release, sae_id)
    snapshot = snapshot_folder(repo)
    return snapshot is not None and any(snapshot.glob(f"{glob.escape(folder)}*"))


# --- loading ----------------------------------------------------------------------------------


def load_sae(sae: Sae, architecture: Architecture | None = None, device: str = "cpu", dtype: str | None = None) -> LoadedSae:
    """Load an SAE and find where it reads. `architecture` (the model's) settles HF module names
    that differ between families and the preprocessing; TL names and a spec's `hook` need none."""
    check_source(sae)
    if sae.source == "sae_lens":
        model = _from_pretrained(sae, device, dtype)
        identity = {"source": "sae_lens", "release": sae.release or "", "id": sae.sae_id or "", "sae_lens": _sae_lens_version()}
    else:
        folder = Path(sae.ref or "") if sae.source == "path" else _zoo_folder(sae, build=True)
        assert folder is not None
        _check_folder(sae, folder)
        # Weights stored in float16 or bfloat16 are computed with in float32 (sae_lens casts them
        # on load): the scores sum many small products. The stored dtype is recorded.
        stored = weights_dtype(folder / WEIGHTS_FILE)
        model = _from_disk(sae, folder, device, dtype or "float32")
        identity = {"source": sae.source, "folder": str(folder.resolve()), "sha256": file_sha256(folder / WEIGHTS_FILE)}
        if stored is not None:
            identity["weights_dtype"] = stored
        if sae.source == "zoo":
            identity["name"] = sae.ref or ""
    model.eval()
    cfg = model.cfg
    d_out = getattr(cfg, "d_out", None)
    about = _describe(sae, int(cfg.d_in), int(cfg.d_sae), str(cfg.architecture()), cfg.metadata, architecture, int(d_out) if d_out is not None else None)
    fields = {f.name: getattr(about, f.name) for f in dataclasses.fields(SaeDescription)}
    if about.transcoder:
        identity |= {"input_location": str(about.input_location), "d_out": about.d_out}
    # sae_lens saves BatchTopK and Matryoshka BatchTopK SAEs as JumpReLU ones (the batch
    # threshold as every latent's), naming what they were trained as.
    trained_as = getattr(cfg.metadata, "training_architecture", None)
    if trained_as and trained_as != about.architecture:
        identity["training_architecture"] = str(trained_as)
    return LoadedSae(**fields | {"preprocessing": about.preprocessing or NONE}, sae=model, identity=identity)


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


# sae_lens warns about every non-empty model_from_pretrained_kwargs; sagec handles them
# (runtime/saes/preprocessing.py) and records what it did in the results.
_KWARGS_WARNING = r"\s*This SAE has non-empty model_from_pretrained_kwargs"


def _from_pretrained(sae: Sae, device: str, dtype: str | None) -> Any:
    from sae_lens import SAE

    with _hub_errors(sae), cached_safetensors_headers(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_KWARGS_WARNING)
        return SAE.from_pretrained(sae.release, sae.sae_id, device=device, dtype=dtype or "float32")


def _from_disk(sae: Sae, folder: Path, device: str, dtype: str | None) -> Any:
    from sae_lens import SAE

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_KWARGS_WARNING)
            return SAE.load_from_disk(str(folder), device=device, dtype=dtype)
    except (ValueError, KeyError, OSError) as e:
        raise SpecError.at(sae.origin, f"SAE {sae.name}: sae_lens cannot load {str(folder)!r}: {e}") from None


def _sae_lens_version() -> str:
    import sae_lens

    return str(sae_lens.__version__)


# --- fitting the model ------------------------------------------------------------------------


def check_fits(loaded: SaeDescription, architecture: Architecture, model_name: str | None = None, model: Model | None = None) -> None:
    """Reject an SAE whose hook or width does not fit the model, before any forward pass.
    `model_name` is the spec's name for the model, for the message; `model`, when given, also
    lets the message say where the model is declared and, if the SAE's config names another
    model, which one it was trained on."""
    model_name = model.name if model is not None else model_name
    source = f"{model.source} {model.ref!r} at {model.origin}" if model is not None else None

    def label(detail: str | None = None) -> str:
        parts = [p for p in (source, detail) if p]
        return (f"model {model_name}" if model_name else "the model") + (f" ({'; '.join(parts)})" if parts else "")

    trained = f"; the SAE was trained on {loaded.model_name}" if model is not None and loaded.model_name and not same_model(loaded.model_name, model) else ""
    where = str(loaded.location) if loaded.location is not None else f"every head's z of layer {loaded.layer}"
    if loaded.transcoder:
        where = f"{loaded.input_location} (to {loaded.location})"
    if loaded.layer >= architecture.n_layers:
        raise SpecError.at(
            loaded.origin,
            f"SAE {loaded.name} reads {where} (hook {loaded.hook!r}), but {label()} has {architecture.n_layers} layers (0..{architecture.n_layers - 1}){trained}",
        )
    if loaded.location is not None and loaded.location.head is not None and loaded.location.head >= architecture.n_heads:
        raise SpecError.at(loaded.origin, f"SAE {loaded.name} reads {where}, but {label()} has {architecture.n_heads} heads per layer{trained}")
    width = sum(architecture.width(site) for site in loaded.sites(architecture))
    if loaded.transcoder and loaded.location is not None and loaded.d_out != architecture.width(loaded.location):
        raise SpecError.at(
            loaded.origin,
            f"SAE {loaded.name} is a transcoder with d_out {loaded.d_out} at {loaded.location} (hook {loaded.hook!r}), but {label(f'{architecture.family.name}, d_model {architecture.d_model}')} has width {architecture.width(loaded.location)} there{trained}",
        )
    if loaded.d_in != width:
        what = f"{architecture.n_heads} heads x d_head {architecture.d_head} = {width}" if loaded.all_heads_z else str(width)
        raise SpecError.at(
            loaded.origin,
            f"SAE {loaded.name} has d_in {loaded.d_in} at {where} (hook {loaded.hook!r}), but {label(f'{architecture.family.name}, d_model {architecture.d_model}')} has width {what} there{trained}",
        )


def trained_on_warning(described: SaeDescription, model: Model) -> str | None:
    """A warning when the SAE's config names another model than the spec's (the shapes fit, or
    check_fits would have refused it). Only hub and zoo models have names to compare."""
    if not described.model_name or model.source not in ("hub", "zoo") or same_model(described.model_name, model):
        return None
    return (f"{described.origin}: SAE {described.name} was trained on {described.model_name}, but model {model.name} is "
            f"{model.source} {model.ref!r}; its shapes fit, so it is evaluated all the same")


def same_model(name: str, model: Model) -> bool:
    """Whether an SAE config's model name and a spec's model are the same model: equal names,
    or names TransformerLens resolves to one official model (`gpt2-small` and
    `openai-community/gpt2`, `pythia-70m-deduped` and `EleutherAI/pythia-70m-deduped`)."""
    return _canonical(name) == _canonical(model.ref)


@functools.cache
def _canonical(name: str) -> str:
    short = name.split("/")[-1].lower()
    try:  # sae_lens imports TransformerLens anyway; its alias table is the naming authority here
        from transformer_lens.loading_from_pretrained import get_official_model_name
    except ImportError:
        return short
    for candidate in (name, name.split("/")[-1]):
        try:
            return get_official_model_name(candidate).split("/")[-1].lower()
        except ValueError:
            continue
    return short
