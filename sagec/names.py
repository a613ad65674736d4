"""The one registry of names the language knows.

The checker suggests from these lists (did-you-mean), the formatter prints them, lowering and the
runtime dispatch on them. Add a method or metric here first; nothing else keeps a copy.
"""

MODEL_SOURCES = ("hub", "path", "gguf", "zoo")
SAE_SOURCES = ("sae_lens", "path", "zoo")
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda", "mps", "auto")
REMOTES = ("ndif", "simulate")

# Where activations live (METHOD.md notation). `head` is one head's contribution to the residual
# stream (d_model wide); `head_z` its attention-weighted values before the output projection.
COMPONENTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "head", "head_z", "mlp_out")
# Locations an SAE may read that `locate` does not rank: `mlp_in` is the MLP's input (the
# normalised stream its first projection reads), where a transcoder reads (METHOD.md section 10).
READ_ONLY_COMPONENTS = ("mlp_in",)
LOCATION_COMPONENTS = COMPONENTS + READ_ONLY_COMPONENTS
# Plural and short forms a spec may use in `locate { components ... }`.
COMPONENT_ALIASES = {"heads": "head", "attn": "attn_out", "mlp": "mlp_out", "resid": "resid_post"}

LOCATE_METHODS = ("attribution", "integrated", "patching")
INTEGRATED_STEPS = 8  # `method integrated` without `steps N`: points on the path (EAP-IG used 5 to 100)
DICTIONARY_METHODS = ("mean", "lstsq")
VALIDATIONS = ("sufficiency", "necessity", "control")
RECONSTRUCTIONS = ("direct", "residual", "residual_pair")
METRICS = (
    "sufficiency",
    "necessity",
    "control",
    "interpretability",
    "alignment",
    "explained_variance",
    "l0",
    "dead_fraction",
    "spliced_metric",
    "ce_loss_score",
    "kl_div_score",
)
# Metrics on text, not on the task's cross-sections (METHOD.md section 8): the SAE spliced in at
# its own hook over a corpus. They run in their own pass (runtime/passes/text.py), so listing them
# leaves every score node's key as it was.
TEXT_METRICS = ("ce_loss_score", "kl_div_score")
REPORT_FORMATS = ("html", "json")
# Trivial bases scored beside the SAEs (METHOD.md section 7); `pca K` keeps K components.
BASELINES = ("pca", "neurons", "random")
TRUNCATABLE_BASELINES = ("pca",)

# TransformerLens `from_pretrained` processing options an SAE may have been trained under
# (runtime/saes/preprocessing.py says what sagec does about each). An sae block may `accept
# preprocessing` the ones sagec cannot reproduce where the SAE reads; these two never need it:
# centring is reproduced exactly and centring the unembedding changes no logit difference.
TL_OPTIONS = ("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases", "refactor_factored_attn_matrices")
TL_NOTHING_TO_ACCEPT = ("center_writing_weights", "center_unembed")

COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
ARITH_OPS = ("+", "-", "*", "//", "%")

# The pseudo-variable naming the index of the template a prompt was rendered from.
TEMPLATE_VARIABLE = "template"
