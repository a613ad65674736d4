"""Where each location of the vocabulary lives in each architecture family, and the model's shape.

One `Family` per architecture: module paths for the layer list, the attention output projection
and the two tensors a layer adds to its residual stream. `runtime/model/locations.py` reads and writes
the vocabulary through these paths, so supporting a new family is one table entry here plus its
identity test (tests/test_architectures.py).

Inside layer L, in forward order, the runtime touches these sites:

    layer input                resid_pre L
    o_proj input               head_z L.H (its slice), head L.H (slice @ its block of W_O)
    o_proj output              where head / head_z writes land (as a delta)
    attn site output           attn_out L; resid_mid L = resid_pre L + attn_out L
    mlp site output            mlp_out L
    layer output               resid_post L

Family notes, the places where "what is added to the residual stream" needs care:
- GPT-2 and Llama: attn_out is the attention module's output, mlp_out the MLP's.
- GPT-NeoX (Pythia): attn_out and mlp_out are read after the post-attention and post-MLP dropouts
  (identities in eval). With `use_parallel_residual` (all Pythia models) the MLP reads resid_pre,
  not resid_pre + attn_out, so there is no resid_mid tensor in the model. We define
  resid_mid L := resid_pre L + attn_out L all the same, so the identity
  resid_pre + attn_out + mlp_out == resid_post still holds, and a resid_mid write is a delta on
  attn_out: it reaches resid_post but not the MLP of the same layer.
- Gemma-2 and Gemma-3 normalise both sublayer outputs before adding them (post_attention_layernorm,
  post_feedforward_layernorm), so attn_out and mlp_out are those norms' outputs. RMSNorm is not
  linear, so attn_out has no exact per-head split of its own. We take `head L.H` at the norm's
  input (the head's share z_h @ W_O[h] of the o_proj output) and push it through the norm with
  the norm's scale frozen at its value in the forward being run (the clean run when reading):
  head L.H = (z_h @ W_O[h]) * rsqrt(mean(o^2) + eps) * (1 + weight), o the o_proj output. The
  shares then sum to attn_out exactly, and live in the residual stream's space, where a residual
  SAE reconstructs them. A `head` write is a change of that share, added to attn_out, so after it
  the heads still sum to attn_out; the o_proj output and the norm's scale are left as they were.
  `head_z L.H` is the real slice of the o_proj input: a head_z write changes it, and the norm
  then renormalises as the model does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sagec.locations import Location


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # HF `config.model_type` values this table serves
    embed: str  # token embedding, from the top-level model
    layers: str  # the ModuleList of decoder layers, from the top-level model
    o_proj: str  # attention output projection, relative to a layer
    o_proj_transposed: bool  # GPT-2's Conv1D stores (in, out); nn.Linear stores (out, in)
    attn_site: str  # module whose output is added to the residual stream as attn_out
    attn_site_tuple: bool  # that output is a tuple (value, attention weights)
    mlp_site: str  # module whose output is added to the residual stream as mlp_out
    mlp_norm: str  # the norm whose output the MLP reads, mlp_in (for HF module names)
    final_norm: str
    lm_head: str
    # attn_site is Gemma's RMSNorm of the o_proj output: head shares are taken at its input and
    # pushed through it with its scale frozen (see the module docstring)
    attn_site_is_norm: bool = False
    mlp: str = "mlp"  # the MLP module; its first positional input is mlp_in


GPT2 = Family(
    name="gpt2",
    model_types=("gpt2",),
    embed="transformer.wte",
    layers="transformer.h",
    o_proj="attn.c_proj",
    o_proj_transposed=True,
    attn_site="attn",
    attn_site_tuple=True,
    mlp_site="mlp",
    mlp_norm="ln_2",
    final_norm="transformer.ln_f",
    lm_head="lm_head",
)

GPT_NEOX = Family(
    name="gpt_neox",
    model_types=("gpt_neox",),
    embed="gpt_neox.embed_in",
    layers="gpt_neox.layers",
    o_proj="attention.dense",
    o_proj_transposed=False,
    attn_site="post_attention_dropout",
    attn_site_tuple=False,
    mlp_site="post_mlp_dropout",
    mlp_norm="post_attention_layernorm",
    final_norm="gpt_neox.final_layer_norm",
    lm_head="embed_out",
)

LLAMA = Family(
    name="llama",
    model_types=("llama",),
    embed="model.embed_tokens",
    layers="model.layers",
    o_proj="self_attn.o_proj",
    o_proj_transposed=False,
    attn_site="self_attn",
    attn_site_tuple=True,
    mlp_site="mlp",
    mlp_norm="post_attention_layernorm",
    final_norm="model.norm",
    lm_head="lm_head",
)

GEMMA2 = Family(
    name="gemma2",
    model_types=("gemma2",),
    embed="model.embed_tokens",
    layers="model.layers",
    o_proj="self_attn.o_proj",
    o_proj_transposed=False,
    attn_site="post_attention_layernorm",
    attn_site_tuple=False,
    mlp_site="post_feedforward_layernorm",
    mlp_norm="pre_feedforward_layernorm",
    final_norm="model.norm",
    lm_head="lm_head",
    attn_site_is_norm=True,
)

# Gemma-3 (text): Gemma-2's layout with q/k norms, one KV head in the small models, sliding-window
# layers on their own rotary base, and an embedding scaled by sqrt(d_model) inside embed_tokens
# (so resid_pre 0 is the scaled embedding). Its decoder layers return a tensor, not a tuple.
GEMMA3 = dataclasses.replace(GEMMA2, name="gemma3", model_types=("gemma3_text",))

FAMILIES: tuple[Family, ...] = (GPT2, GPT_NEOX, LLAMA, GEMMA2, GEMMA3)


def family_of(config: Any) -> Family:
    """The family table for an HF config, chosen by `config.model_type`."""
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in FAMILIES for t in f.model_types)
    raise ValueError(f"unsupported architecture {model_type!r}: sagec knows {known}")


@dataclass(frozen=True)
class Architecture:
    """A family plus the shape facts of one model, read from its config."""

    family: Family
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    vocab_size: int
    parallel_residual: bool  # GPT-NeoX's use_parallel_residual (see the module docstring)

    def width(self, location: Location) -> int:
        """The last dimension of the location's activation."""
        return self.d_head if location.component == "head_z" else self.d_model  # mlp_in too is d_model wide

    def check(self, location: Location) -> None:
        """Raise ValueError naming the location when it does not exist in this model."""
        if location.layer >= self.n_layers:
            raise ValueError(f"{location}: layer {location.layer} is out of range; the model has layers 0..{self.n_layers - 1}")
        if location.head is not None and location.head >= self.n_heads:
            raise ValueError(f"{location}: head {location.head} is out of range; the model has heads 0..{self.n_heads - 1}")

    def to_json(self) -> dict:
        return {
            "family": self.family.name,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "d_model": self.d_model,
            "d_head": self.d_head,
            "vocab_size": self.vocab_size,
            "parallel_residual": self.parallel_residual,
        }


def architecture(config: Any) -> Architecture:
    """Family and shape of a model from its HF config alone (no weights needed)."""
    family = family_of(config)
    # Every supported config maps these standard names (GPT2Config through its attribute_map).
    n_heads = int(config.num_attention_heads)
    d_model = int(config.hidden_size)
    d_head = getattr(config, "head_dim", None) or d_model // n_heads
    return Architecture(
        family=family,
        n_layers=int(config.num_hidden_layers),
        n_heads=n_heads,
        d_model=d_model,
        d_head=int(d_head),
        vocab_size=int(config.vocab_size),
        parallel_residual=bool(getattr(config, "use_parallel_residual", False)) and family is GPT_NEOX,
    )
