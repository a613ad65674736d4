"""Replacing one location's activation at every token of a full forward, with plain torch hooks.

The text metrics (METHOD.md section 8, runtime/passes/text.py) run whole texts and need the
logits at every position, with an SAE's reconstruction (or zeros) in place of the activation at
its hook. The forward engine (runtime/model/forward.py) patches named positions and computes only
the final position's logits, so this is its own, small path on the HF module itself, like the
zoo corpus's reader (runtime/zoo/corpus.py): forward hooks on the module paths of the
architecture tables (runtime/model/architectures.py), so every location means what it means
everywhere else in sagec:

    resid_pre L    the input of decoder layer L (a forward pre-hook)
    resid_post L   the output of decoder layer L
    attn_out L     the output of the family's attention site (Gemma: the post-attention norm's)
    mlp_out L      the output of the family's MLP site
    resid_mid L    resid_pre L + attn_out L; replaced through attn_out, whose new value is the
                   replacement minus resid_pre (as locations.py writes it: with GPT-NeoX's
                   parallel residual the MLP then still reads resid_pre)

A transcoder replaces mlp_out L with what it makes of the MLP's input: with `source` mlp_in L,
`replace(a, x)` gets mlp_out L and the MLP's input x (a forward pre-hook on the MLP module
remembers it; the MLP runs before its output site in every family).

A head's output or z is no tensor of the forward of its own (it is a slice of the attention
output projection's input), so heads are not spliced here (`SPLICEABLE`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from sagec.locations import Location

SPLICEABLE = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")

# (activation (B, T, d)) -> its replacement, same shape; with a `source`, (activation, source)
Replace = Callable[..., torch.Tensor]


@contextmanager
def spliced(hf_model: Any, arch: Any, location: Location, replace: Replace, source: Location | None = None) -> Iterator[None]:
    """While open, every forward of `hf_model` has `replace(a)` in place of the activation `a`
    at `location` (every token of every row); with `source` (a transcoder's mlp_in L, location
    mlp_out L), `replace(a, x)` with x the MLP's input."""
    if location.component not in SPLICEABLE:
        raise ValueError(f"{location}: only {', '.join(SPLICEABLE)} can be replaced at every token")
    if source is not None and (source != Location("mlp_in", location.layer) or location.component != "mlp_out"):
        raise ValueError(f"{source} -> {location}: only a layer's MLP input -> its MLP output can be spliced as a transcoder")
    arch.check(location)
    family = arch.family
    layer = hf_model.get_submodule(family.layers)[location.layer]
    handles = []
    pre: dict[str, torch.Tensor] = {}

    def layer_input(args, kwargs) -> torch.Tensor:
        return args[0] if args else kwargs["hidden_states"]

    def with_input(args, kwargs, value):
        if args:
            return (value, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": value}

    def output_of(out) -> torch.Tensor:
        return out[0] if isinstance(out, tuple) else out

    def with_output(out, value):
        return (value, *out[1:]) if isinstance(out, tuple) else value

    if source is not None:
        def remember_mlp_in(module, args, kwargs):
            pre["mlp_in"] = layer_input(args, kwargs)

        handles.append(layer.get_submodule(family.mlp).register_forward_pre_hook(remember_mlp_in, with_kwargs=True))
        site = layer.get_submodule(family.mlp_site)
        handles.append(site.register_forward_hook(lambda module, args, out: with_output(out, replace(output_of(out), pre["mlp_in"]))))
    elif location.component == "resid_pre":
        def hook_pre(module, args, kwargs):
            return with_input(args, kwargs, replace(layer_input(args, kwargs)))

        handles.append(layer.register_forward_pre_hook(hook_pre, with_kwargs=True))
    elif location.component == "resid_post":
        handles.append(layer.register_forward_hook(lambda module, args, out: with_output(out, replace(output_of(out)))))
    else:
        site = layer.get_submodule(family.mlp_site if location.component == "mlp_out" else family.attn_site)
        if location.component == "resid_mid":
            def remember(module, args, kwargs):
                pre["resid_pre"] = layer_input(args, kwargs)

            handles.append(layer.register_forward_pre_hook(remember, with_kwargs=True))

            def hook_mid(module, args, out):
                r = pre["resid_pre"]
                return with_output(out, replace(r + output_of(out)) - r)

            handles.append(site.register_forward_hook(hook_mid))
        else:
            handles.append(site.register_forward_hook(lambda module, args, out: with_output(out, replace(output_of(out)))))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        pre.clear()


class Recorded:
    """What `recorded_below` saw: the output of the decoder layer before the hook's (or None)."""

    value: Any = None


@contextmanager
def recorded_below(hf_model: Any, arch: Any, layer: int) -> Iterator[Recorded]:
    """While open, records the output of decoder layer `layer - 1` (all that layer `layer` reads
    of the layers before it), for `skipped_below` to replay in the next forwards of the batch."""
    rec = Recorded()
    if layer == 0:
        yield rec
        return
    below = hf_model.get_submodule(arch.family.layers)[layer - 1]

    def keep(module, args, out):
        rec.value = out

    handle = below.register_forward_hook(keep)
    try:
        yield rec
    finally:
        handle.remove()


@contextmanager
def skipped_below(hf_model: Any, arch: Any, layer: int, output: Any) -> Iterator[None]:
    """While open, decoder layers 0 .. `layer - 1` are not run: each returns a copy of `output`,
    layer `layer - 1`'s output recorded on the same batch (`recorded_below`). A splice at layer
    `layer` changes nothing before it, so the spliced and ablated forwards of the text metrics
    need not recompute what the clean one did: on a deep hook most of the model."""
    if layer == 0 or output is None:
        yield
        return
    skipped = list(hf_model.get_submodule(arch.family.layers)[:layer])

    def replay(*args: Any, **kwargs: Any) -> Any:
        return tuple(o.clone() if torch.is_tensor(o) else o for o in output) if isinstance(output, tuple) else output.clone()

    # An instance attribute, which nn.Module.__call__ finds first. nnsight keeps its own wrapper
    # there on the models it loads: put back whatever was there.
    saved = [module.__dict__.get("forward") for module in skipped]
    for module in skipped:
        module.forward = replay
    try:
        yield
    finally:
        for module, old in zip(skipped, saved, strict=True):
            if old is None:
                del module.forward
            else:
                module.forward = old
