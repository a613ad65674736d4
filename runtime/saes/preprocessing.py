"""The TransformerLens preprocessing an SAE was trained under, reproduced on the HF model's
activations (METHOD.md section 9).

sae_lens records, per SAE, the keyword arguments of the TransformerLens `from_pretrained` call
whose activations it was trained on (`metadata.model_from_pretrained_kwargs`; for a release,
sae_lens's directory adds them, e.g. `center_writing_weights: true` for gpt2-small-res-jb). sagec
runs the model as its HF weights define it, so each option is reproduced, shown to change nothing
sagec reads, or refused:

- `center_writing_weights`: TransformerLens removes the mean over d_model from every weight that
  writes into the residual stream (embeddings, W_O and b_O, W_out and b_out), but only in
  LayerNorm models (GPT-2, GPT-NeoX): there the stream, and every write into it (attn_out,
  mlp_out, a head's output), is the HF one minus its per-token mean over d_model. The SAE gets
  exactly that, and the mean is added back to its reconstruction. (LayerNorm subtracts the mean
  itself, so the model computes the same thing either way.) In RMSNorm models TransformerLens
  leaves the weights alone, and so does sagec. A head's z is not a write and is never centred.
- `fold_ln`: folds each LayerNorm's scale and bias into the weights that read it. The stream and
  everything written into it are unchanged; only the normalised tensors inside a layer differ.
  The one such location is `mlp_in` (a transcoder's input): there TransformerLens's MLP reads
  the norm's output before its scale, which sagec does not reproduce, so it is refused.
- `center_unembed`: removes W_U's mean over the vocabulary, which moves every logit of a token by
  the same amount; logit differences and log-probabilities, the only things sagec's metrics read,
  are unchanged.
- `fold_value_biases`, `refactor_factored_attn_matrices`: move terms between heads and biases
  (b_V into b_O; W_V and W_O rebalanced), leaving the stream, attn_out and mlp_out unchanged but
  not a head's z or output: refused at `head` and `head_z` locations.
- how TransformerLens ran (dtype, device, n_devices, ...): nothing to reproduce.
- anything else: refused, naming the option, unless the spec accepts it (`accept preprocessing
  OPTION` in the sae block), in which case the results record that it was accepted, not reproduced.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sagec.locations import Location

# Families whose TransformerLens config uses LayerNorm (normalization_type LN): the only ones whose
# writing weights TransformerLens centres. Every other family sagec knows normalises with RMSNorm.
LAYERNORM_FAMILIES = frozenset({"gpt2", "gpt_neox"})
# Components that are the residual stream or a write into it (d_model wide).
STREAM_COMPONENTS = frozenset({"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head"})
PER_HEAD_COMPONENTS = frozenset({"head", "head_z"})
# Normalised tensors inside a layer: the MLP's input (after its norm), where transcoders read.
NORMALISED_COMPONENTS = frozenset({"mlp_in"})
# How TransformerLens runs, not what it computes.
HOW_TO_RUN = frozenset({"dtype", "torch_dtype", "device", "n_devices", "move_to_device", "trust_remote_code", "default_padding_side"})


class UnreproducibleOption(ValueError):
    """A recorded TransformerLens option sagec cannot reproduce where the SAE reads."""

    def __init__(self, option: str, value: Any, why: str):
        self.option = option
        super().__init__(f"{option}={value!r} {why}")


@dataclass(frozen=True)
class Preprocessing:
    """What is done to activations before an SAE reads them, and why.

    `centre`: the SAE reads its input minus the input's mean over the last dimension, and the
    mean is added back to what it reconstructs. `options`: the TransformerLens options as
    recorded. `needs_nothing`: recorded options that change nothing sagec reads there.
    `accepted`: options sagec cannot reproduce, accepted by the spec."""

    centre: bool = False
    options: tuple[tuple[str, Any], ...] = ()
    needs_nothing: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()

    @property
    def transform(self) -> str:
        return "centre" if self.centre else "none"

    def to_sae(self, x: Any) -> Any:
        """The SAE's input from the model's activation (..., width)."""
        return x - x.mean(dim=-1, keepdim=True) if self.centre else x

    def removed(self, x: Any) -> Any:
        """What `to_sae` took away from `x`, to be added back to a reconstruction of `x`."""
        return x.mean(dim=-1, keepdim=True).expand_as(x) if self.centre else x.new_zeros(())

    def to_json(self) -> dict:
        return {
            "transform": self.transform,
            "description": DESCRIPTIONS[self.transform],
            "options": {k: _plain(v) for k, v in self.options},
            "needs_nothing": list(self.needs_nothing),
            "accepted": list(self.accepted),
        }


NONE = Preprocessing()

DESCRIPTIONS = {
    "none": "the SAE reads the model's activations as they are",
    "centre": "the SAE reads the activation minus its per-token mean over d_model (TransformerLens's center_writing_weights); the mean is added back to its reconstruction",
}


def preprocessing_for(options: Mapping[str, Any] | None, location: Location | None, family: str, accepted: Collection[str] = ()) -> Preprocessing:
    """The preprocessing for an SAE trained under TransformerLens `options`, reading at
    `location` (None: every head's z of a layer) of a model of `family`. Raises
    UnreproducibleOption for the first option sagec cannot reproduce that `accepted` omits."""
    component = location.component if location is not None else "head_z"
    centre = False
    needs_nothing: list[str] = []
    taken: list[str] = []
    for option, value in sorted((options or {}).items()):
        if option in HOW_TO_RUN or value in (False, None):
            needs_nothing.append(option)
        elif option == "center_writing_weights" and value is True:
            centre = family in LAYERNORM_FAMILIES and component in STREAM_COMPONENTS
            if not centre:
                needs_nothing.append(option)
        elif option == "fold_ln" and value is True and component in NORMALISED_COMPONENTS and option not in accepted:
            raise UnreproducibleOption(option, value, "moves the MLP norm's scale and bias into the MLP's weights, so the MLP's input in TransformerLens is not the HF model's")
        elif option in ("fold_ln", "center_unembed") and value is True and component not in NORMALISED_COMPONENTS:
            needs_nothing.append(option)
        elif option in ("fold_value_biases", "refactor_factored_attn_matrices") and value is True and component not in PER_HEAD_COMPONENTS:
            needs_nothing.append(option)
        elif option in accepted:
            taken.append(option)
        elif option in ("fold_value_biases", "refactor_factored_attn_matrices"):
            raise UnreproducibleOption(option, value, f"changes each head's {'z' if component == 'head_z' else 'output'} (moving terms between heads and biases), which sagec cannot reproduce on the model's own weights")
        else:
            raise UnreproducibleOption(option, value, "is a TransformerLens option sagec cannot reproduce on the model's own weights")
    return Preprocessing(centre, tuple(sorted((options or {}).items())), tuple(needs_nothing), tuple(taken))


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


# --- reconstructions through the preprocessing ------------------------------------------------
# Thin wrappers around runtime/sage/reconstruct.py: each SAE reads its own preprocessed input.
# Centring is linear, so for `direct` and `residual` the transformed SAE's reconstruction of c is
# the plain one on centred inputs plus c's mean; `residual_pair` takes c from the model and only
# each SAE's error, which is the same in either frame.


def direct(sae: Any, prep: Preprocessing, c: Any) -> tuple[Any, Any]:
    from runtime.sage import reconstruct

    c_hat, f = reconstruct.direct(sae, prep.to_sae(c))
    return c_hat + prep.removed(c), f


def transcode(transcoder: Any, prep: Preprocessing, x: Any, c: Any) -> tuple[Any, Any]:
    """A transcoder from the sublayer's input x (mlp_in, never centred: the norm removed the
    mean) to its output c; `prep` is the output side's, whose removed mean is added back."""
    from runtime.sage import reconstruct

    c_hat, f = reconstruct.transcode(transcoder, x)
    return c_hat + prep.removed(c), f


def residual(sae: Any, prep: Preprocessing, r_after: Any, c: Any, *, after: Any = None) -> tuple[Any, Any]:
    """`after`: `encoded(sae, prep, r_after)`, shared by the sublayers written at one point."""
    from runtime.sage import reconstruct

    c_hat, f = reconstruct.residual(sae, prep.to_sae(r_after), prep.to_sae(c), after=after)
    return c_hat + prep.removed(c), f


def encoded(sae: Any, prep: Preprocessing, r_after: Any) -> Any:
    """What `residual` computes from the stream alone, in the SAE's frame."""
    from runtime.sage import reconstruct

    return reconstruct.encoded(sae, prep.to_sae(r_after))


def residual_pair(before: Any, prep_before: Preprocessing, after: Any, prep_after: Preprocessing, r_before: Any, r_after: Any, c: Any) -> tuple[Any, Any]:
    from runtime.sage import reconstruct

    return reconstruct.residual_pair(before, after, prep_before.to_sae(r_before), prep_after.to_sae(r_after), c)
