"""Reading and writing locations inside one nnsight trace.

Call `access` from inside `with model.trace(...)` (one invoke): it walks the touched layers and,
within each, the sites of runtime/model/architectures.py in forward order, because nnsight 0.8 only
lets a trace request modules in the order the model runs them. So every read and write of one
forward must be handed to `access` at once.

Writes replace a location's value at one token position per batch row. Every write is exact:
- resid_pre, attn_out, mlp_in, mlp_out, resid_post replace the site's tensor at those positions
  (an mlp_in write changes what the MLP reads, not the stream);
- resid_mid adds (value - resid_mid) to attn_out, the only thing between resid_pre and it;
- head and head_z add the change of the head's contribution to the o_proj output, which is
  linear in the head's slice, so nothing else in the layer moves. Where the attention output is
  normalised before the stream (Gemma), a head write instead adds the change of the head's share
  to the norm's output, the share taken under the norm's scale as this forward computes it
  (frozen: the write does not move it), so the heads still sum to attn_out after it; a head_z
  write changes the real o_proj input and the norm renormalises, as in the model
  (runtime/model/architectures.py).
A read returns the value as this forward computes it, after writes at earlier sites and before
writes at its own site; gradients are taken where the writes land, so `d metric / d location`
is exactly the sensitivity a write of that location would see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nnsight
import torch

from runtime.model.architectures import Architecture
from sagec.locations import Location


@dataclass(frozen=True)
class Write:
    """Set `location` to `values[i]` at padded position `positions[i]` of batch row `rows[i]`.

    rows None means rows 0..N-1 of the batch. At most one write per (location, row, position).
    """

    location: Location
    positions: torch.Tensor  # (N,) long, padded token indices
    values: torch.Tensor  # (N, width)
    rows: torch.Tensor | None = None  # (N,) long


@dataclass
class Capture:
    """What `access` read: `values[loc]` is (B, T, width), or (B, P, width) when gathered at `at`."""

    values: dict[Location, torch.Tensor]
    # (location, tensor in the graph, map from that tensor's gradient to the location's), in
    # forward order; `gradients` requests them in reverse, as nnsight's backward requires.
    _grad_sites: list[tuple[Location, Any, Callable[[torch.Tensor], torch.Tensor]]] = field(default_factory=list)

    def gradients(self) -> dict[Location, torch.Tensor]:
        """d metric / d location, shaped like `values`. Call inside `with metric.backward():`."""
        grads: dict[Location, torch.Tensor] = {}
        seen: dict[int, torch.Tensor] = {}
        for location, site, convert in reversed(self._grad_sites):
            # Several locations share a site (heads, attn_out and resid_mid): one request each.
            if id(site) not in seen:
                seen[id(site)] = site.grad
            grads[location] = convert(seen[id(site)])
        return grads


def envoy_at(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def o_proj_matrix(model: Any, arch: Architecture, layer: int) -> torch.Tensor:
    """The attention output projection as an (n_heads * d_head, d_model) matrix: out = z @ W + b."""
    family = arch.family
    module = model._module.get_submodule(f"{family.layers}.{layer}.{family.o_proj}")
    weight = module.weight
    return weight if family.o_proj_transposed else weight.T


def o_proj_bias(model: Any, arch: Architecture, layer: int) -> torch.Tensor | None:
    family = arch.family
    return model._module.get_submodule(f"{family.layers}.{layer}.{family.o_proj}").bias


def access(
    model: Any,
    arch: Architecture,
    reads: Iterable[Location] = (),
    writes: Sequence[Write] = (),
    at: torch.Tensor | None = None,
    grads: bool = False,
) -> Capture:
    """Read `reads` and apply `writes` in one forward; call inside a trace, before model.output.

    `at` (B, P) gathers reads (and gradients) at P padded positions per row, so a forward over
    many locations keeps only what it needs. `grads` records the sites `Capture.gradients` uses.
    """
    reads = tuple(dict.fromkeys(reads))
    for location in (*reads, *(w.location for w in writes)):
        arch.check(location)
    capture = Capture({})
    layers = envoy_at(model, arch.family.layers)
    touched = sorted({loc.layer for loc in reads} | {w.location.layer for w in writes})
    for layer in touched:
        _layer(model, arch, layers[layer], layer, [r for r in reads if r.layer == layer],
               [w for w in writes if w.location.layer == layer], at, grads, capture)
    # Saved, so the caller's name for it survives the trace block (nnsight 0.8 drops the rest).
    return nnsight.save(capture)


def _layer(model, arch, block, layer, reads, writes, at, grads, capture) -> None:
    family = arch.family
    comps_read = {r.component for r in reads}
    comps_write = {w.location.component for w in writes}
    comps = comps_read | comps_write
    take = _Taker(at, capture, grads)

    def writes_of(*components: str) -> list[Write]:
        return [w for w in writes if w.location.component in components]

    # 1. layer input: resid_pre (also needed for resid_mid)
    pre = None
    if comps & {"resid_pre", "resid_mid"}:
        args, kwargs = block.inputs
        pre = args[0]
        take.read(Location("resid_pre", layer), pre, reads, lambda g: g)
        if "resid_pre" in comps_write:
            pre = _replace(pre, writes_of("resid_pre"))
            block.inputs = ((pre, *args[1:]), kwargs)

    # 2. o_proj input: head_z and head reads; 3. o_proj output: head_z writes land here, and head
    # writes too unless the attention site is a norm (Gemma), where they land at its output (4.)
    headed = comps & {"head", "head_z"}
    normed = family.attn_site_is_norm
    shares_post = None  # what head writes add to a norm's output
    if headed:
        o_proj = envoy_at(block, family.o_proj)
        z = o_proj.input
        w_o = o_proj_matrix(model, arch, layer)
        dh = arch.d_head
        out = o_proj.output if (normed and "head" in comps) or comps_write & {"head", "head_z"} or grads else None
        norm = model._module.get_submodule(f"{family.layers}.{layer}.{family.attn_site}") if normed else None
        factor = _norm_factor(norm, out) if normed and "head" in comps else None
        factor_at = None if factor is None else _maybe_gather(factor, at)
        for r in (r for r in reads if r.component in ("head", "head_z")):
            z_h = _maybe_gather(z[..., r.head * dh : (r.head + 1) * dh], at)
            take.store(r, z_h if r.component == "head_z" else _share(z_h @ w_o[r.head * dh : (r.head + 1) * dh], factor_at))
        at_proj = writes_of("head_z") if normed else writes_of("head", "head_z")
        if at_proj:
            delta = torch.zeros_like(out)
            for w in at_proj:
                h = w.location.head
                block_w = w_o[h * dh : (h + 1) * dh]
                rows, pos = _index(w, out)
                now = z[rows, pos, h * dh : (h + 1) * dh]
                change = w.values.to(now) - (now if w.location.component == "head_z" else now @ block_w)
                if w.location.component == "head_z":
                    change = change @ block_w
                delta[rows, pos] += change
            out = out + delta
            o_proj.output = out
        at_norm = writes_of("head") if normed else []
        if at_norm:
            # The shares' frozen scale is the norm's factor on its input as it now is (after any
            # head_z write above), so the heads still sum to attn_out after the write.
            factor_now = _norm_factor(norm, out) if at_proj else factor
            delta = torch.zeros_like(out, dtype=factor_now.dtype)
            for w in at_norm:
                h = w.location.head
                rows, pos = _index(w, out)
                now = _share(z[rows, pos, h * dh : (h + 1) * dh] @ w_o[h * dh : (h + 1) * dh], factor_now[rows, pos])
                delta[rows, pos] += w.values.to(now) - now
            shares_post = delta
        if grads:
            for r in reads:
                if r.component == "head" and not normed:
                    take.site(r, out, lambda g: g)
                elif r.component == "head_z":
                    block_w = w_o[r.head * dh : (r.head + 1) * dh]
                    take.site(r, out, lambda g, b=block_w: g @ b.T)

    # 4. attention site: attn_out, and resid_mid = resid_pre + attn_out
    norm_heads = normed and (shares_post is not None or (grads and "head" in comps_read))
    if comps & {"attn_out", "resid_mid"} or norm_heads:
        site = envoy_at(block, family.attn_site)
        raw = site.output
        attn = raw[0] if family.attn_site_tuple else raw
        if shares_post is not None:
            attn = attn + shares_post.to(attn)
        if normed and grads:
            for r in reads:
                if r.component == "head":
                    take.site(r, attn, lambda g: g)
        take.read(Location("attn_out", layer), attn, reads, lambda g: g)
        mid_loc = Location("resid_mid", layer)
        if mid_loc in reads:
            take.store(mid_loc, _maybe_gather(pre + attn, at))
            take.site(mid_loc, attn, lambda g: g)
        if comps_write & {"attn_out", "resid_mid"}:
            attn = _replace(attn, writes_of("attn_out"))
            mids = writes_of("resid_mid")
            if mids:
                attn = attn.clone()
                for w in mids:
                    rows, pos = _index(w, attn)
                    now = pre[rows, pos] + attn[rows, pos]
                    attn[rows, pos] += w.values.to(now) - now
        if comps_write & {"attn_out", "resid_mid"} or shares_post is not None:
            site.output = (attn, *raw[1:]) if family.attn_site_tuple else attn

    # 5. MLP input: mlp_in, the normalised stream the MLP reads (a transcoder's input); a write
    # replaces what the MLP reads and nothing else (the stream itself is untouched)
    if "mlp_in" in comps:
        mlp_module = envoy_at(block, family.mlp)
        args, kwargs = mlp_module.inputs
        take.read(Location("mlp_in", layer), args[0], reads, lambda g: g)
        if "mlp_in" in comps_write:
            mlp_module.inputs = ((_replace(args[0], writes_of("mlp_in")), *args[1:]), kwargs)

    # 6. MLP site
    if "mlp_out" in comps:
        site = envoy_at(block, family.mlp_site)
        mlp = site.output
        take.read(Location("mlp_out", layer), mlp, reads, lambda g: g)
        if "mlp_out" in comps_write:
            site.output = _replace(mlp, writes_of("mlp_out"))

    # 7. layer output
    if "resid_post" in comps:
        post = block.output
        take.read(Location("resid_post", layer), post, reads, lambda g: g)
        if "resid_post" in comps_write:
            block.output = _replace(post, writes_of("resid_post"))


class _Taker:
    """Stores reads (gathered at `at` when given) and, with grads on, the sites to differentiate."""

    def __init__(self, at, capture: Capture, grads: bool):
        self.at, self.capture, self.grads = at, capture, grads

    def store(self, location: Location, value: torch.Tensor) -> None:
        # Clone: a later write or in-place op on the model's tensor must not change a read.
        self.capture.values[location] = value.detach().clone()

    def site(self, location: Location, tensor: Any, convert: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if self.grads:
            at = self.at
            self.capture._grad_sites.append((location, tensor, lambda g: _maybe_gather(convert(g), at)))

    def read(self, location: Location, tensor, reads, convert) -> None:
        if location in reads:
            self.store(location, _maybe_gather(tensor, self.at))
            self.site(location, tensor, convert)


def _norm_factor(norm: Any, x: Any) -> Any:
    """What Gemma's RMSNorm multiplies its input by, per element: rsqrt(mean x^2 + eps) * (1 + weight),
    in float32 as the norm computes it. A head's share of the norm's output is its share of the
    input times this factor, held fixed: the shares then sum to the norm's output exactly."""
    x = x.float()
    return torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * (1.0 + norm.weight.float())


def _share(head_out: torch.Tensor, factor: torch.Tensor | None) -> torch.Tensor:
    """A head's share of the attention output: its o_proj share, scaled by the norm's frozen factor when there is one."""
    return head_out if factor is None else (head_out.float() * factor).to(head_out.dtype)


def _index(write: Write, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, positions) of a write, on `t`'s device (mixed-device indices fail on GPUs)."""
    rows = write.rows if write.rows is not None else torch.arange(len(write.positions))
    return rows.to(t.device), write.positions.to(t.device)


def _replace(t: torch.Tensor, writes: Sequence[Write]) -> torch.Tensor:
    if not writes:
        return t
    t = t.clone()
    for w in writes:
        rows, pos = _index(w, t)
        t[rows, pos] = w.values.to(t)
    return t


def _gather(t: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """(B, T, W) at (B, P) -> (B, P, W)."""
    rows = torch.arange(t.shape[0], device=t.device)[:, None]
    return t[rows, at]


def _maybe_gather(t: torch.Tensor, at: torch.Tensor | None) -> torch.Tensor:
    return t if at is None else _gather(t, at)
