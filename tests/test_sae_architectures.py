"""Every sae_lens architecture through sagec's loader, on tiny fixtures of each class.

Each fixture is built with sae_lens's own config classes, saved in sae_lens's on-disk format
(`save_model`, or `save_inference_model` for the training-only BatchTopK kinds, which sae_lens
saves as JumpReLU SAEs) and loaded through runtime/saes/loading.py; its encode and decode must be
sae_lens's own. JumpReLU's threshold is checked by hand, transcoders' hooks map to (mlp_in L,
mlp_out L), and float16 / bfloat16 weights load and compute in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sae_lens import (
    AbsTopKSAE,
    AbsTopKSAEConfig,
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    GatedSAE,
    GatedSAEConfig,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    JumpReLUSkipTranscoder,
    JumpReLUSkipTranscoderConfig,
    JumpReLUTranscoder,
    JumpReLUTranscoderConfig,
    MatchingPursuitSAE,
    MatchingPursuitSAEConfig,
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
    SkipTranscoder,
    SkipTranscoderConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
    Transcoder,
    TranscoderConfig,
)
from sae_lens.saes.sae import SAEMetadata

from runtime.model.architectures import GPT2, Architecture
from runtime.sage import reconstruct, sparse
from runtime.saes import preprocessing
from runtime.saes.loading import check_fits, describe_sae, load_sae
from sagec.diagnostics import SpecError
from sagec.locations import Location
from sagec.spec import Origin, Sae

AT = Origin("arch.sage", 3, 1)
D, D_SAE = 16, 48
ARCH = Architecture(family=GPT2, n_layers=2, n_heads=4, d_model=D, d_head=4, vocab_size=100, parallel_residual=False)
RESID = dict(hook_name="blocks.1.hook_resid_post", model_name="tiny")
# sae_lens initialises decoder rows to norm 0.1, and BatchTopK thresholds scaled activations by it
BATCH_THRESHOLD = 0.05
MLP = dict(hook_name="blocks.1.hook_mlp_in", hook_name_out="blocks.1.hook_mlp_out", model_name="tiny")


def _randomise(sae) -> None:
    """Non-zero biases and thresholds, so a load that dropped one would show."""
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name.startswith("b_") or name in ("r_mag",):
                p.normal_(0, 0.3)
            elif name == "threshold":
                p.uniform_(0.1, 0.6)
            elif name == "W_skip":
                p.normal_(0, 0.1)


def _inference(sae, folder: Path):
    _randomise(sae)
    sae.save_model(str(folder))
    return sae


def _batch(sae, folder: Path):
    """A BatchTopK training SAE with a learned batch threshold, saved as sae_lens saves it."""
    _randomise(sae)
    sae.topk_threshold = torch.tensor(BATCH_THRESHOLD, dtype=torch.double)
    sae.save_inference_model(str(folder))
    return sae


# kind -> (builder(metadata, d_in), how it is saved, the architecture sae_lens saves it as, hooks)
def _tc(config_cls, cls):
    return lambda m, d=D: cls(config_cls(d_in=d, d_sae=3 * d, d_out=d, apply_b_dec_to_input=False, metadata=m))


BUILDERS = {
    "standard": (lambda m, d=D: StandardSAE(StandardSAEConfig(d_in=d, d_sae=3 * d, metadata=m)), _inference, "standard", RESID),
    "gated": (lambda m, d=D: GatedSAE(GatedSAEConfig(d_in=d, d_sae=3 * d, metadata=m)), _inference, "gated", RESID),
    "jumprelu": (lambda m, d=D: JumpReLUSAE(JumpReLUSAEConfig(d_in=d, d_sae=3 * d, metadata=m)), _inference, "jumprelu", RESID),
    "topk": (lambda m, d=D: TopKSAE(TopKSAEConfig(d_in=d, d_sae=3 * d, k=4, metadata=m)), _inference, "topk", RESID),
    "batchtopk": (lambda m, d=D: BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=d, d_sae=3 * d, k=4, metadata=m)), _batch, "jumprelu", RESID),
    "matryoshka_batchtopk": (lambda m, d=D: MatryoshkaBatchTopKTrainingSAE(MatryoshkaBatchTopKTrainingSAEConfig(
        d_in=d, d_sae=3 * d, k=4, matryoshka_widths=[d // 2, 3 * d // 2, 3 * d], metadata=m)), _batch, "jumprelu", RESID),
    "matching_pursuit": (lambda m, d=D: MatchingPursuitSAE(MatchingPursuitSAEConfig(d_in=d, d_sae=3 * d, metadata=m)), _inference, "matching_pursuit", RESID),
    "transcoder": (_tc(TranscoderConfig, Transcoder), _inference, "transcoder", MLP),
    "skip_transcoder": (_tc(SkipTranscoderConfig, SkipTranscoder), _inference, "skip_transcoder", MLP),
    "jumprelu_transcoder": (_tc(JumpReLUTranscoderConfig, JumpReLUTranscoder), _inference, "jumprelu_transcoder", MLP),
    "jumprelu_skip_transcoder": (_tc(JumpReLUSkipTranscoderConfig, JumpReLUSkipTranscoder), _inference, "jumprelu_skip_transcoder", MLP),
}


def path_sae(folder: Path, hook: str | None = None) -> Sae:
    return Sae("s", "path", str(folder), None, None, hook, AT)


def build(kind: str, folder: Path, seed: int = 0, d: int = D, dtype: torch.dtype = torch.float32):
    """The fixture of `kind` at layer 1, d_in `d`, its weights in `dtype`, saved into `folder`."""
    make, save, _, meta = BUILDERS[kind]
    torch.manual_seed(seed)
    sae = make(SAEMetadata(**meta), d)
    if dtype is not torch.float32:
        sae = sae.to(dtype)
        sae.cfg.dtype = str(dtype).removeprefix("torch.")
    return save(sae, folder)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_each_architecture_loads_as_sae_lens_saves_it_and_encodes_as_sae_lens(kind, tmp_path):
    original = build(kind, tmp_path / kind)
    loaded = load_sae(path_sae(tmp_path / kind), ARCH)
    assert loaded.architecture == BUILDERS[kind][2] and (loaded.d_in, loaded.d_sae) == (D, D_SAE)
    check_fits(loaded, ARCH)
    described = describe_sae(path_sae(tmp_path / kind), ARCH)  # the same from the config alone
    assert (described.architecture, described.location, described.input_location) == (loaded.architecture, loaded.location, loaded.input_location)
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f = loaded.sae.encode(x)
        if kind in ("batchtopk", "matryoshka_batchtopk"):
            # Saved as JumpReLU with every threshold the learned batch threshold, the decoder's
            # norms folded into the encoder (sae_lens's rescale_acts_by_decoder_norm, on by
            # default): a latent fires where its pre-activation times its decoder norm exceeds it.
            assert torch.equal(loaded.sae.threshold, torch.full((D_SAE,), BATCH_THRESHOLD))
            assert loaded.identity["training_architecture"] == kind
            pre = ((x - original.b_dec) @ original.W_enc + original.b_enc) * original.W_dec.norm(dim=1)
            torch.testing.assert_close(f, pre * (pre > BATCH_THRESHOLD))
            torch.testing.assert_close(loaded.sae.decode(f), (f / original.W_dec.norm(dim=1)) @ original.W_dec + original.b_dec)
        else:
            assert torch.equal(f, original.encode(x))
        if kind not in ("batchtopk", "matryoshka_batchtopk"):
            assert torch.equal(loaded.sae.decode(f), original.decode(f))
        assert (f > 0).any() and (f == 0).any()  # the fixture is neither dead nor dense
    if loaded.transcoder:
        assert (loaded.input_location, loaded.location, loaded.d_out) == (Location("mlp_in", 1), Location("mlp_out", 1), D)
        assert loaded.sites(ARCH) == (Location("mlp_in", 1),)
        assert loaded.identity["input_location"] == "mlp_in 1"
        with torch.no_grad():  # the transcoder's reconstruction is sae_lens's forward, skip connection included
            c_hat, f_t = reconstruct.transcode(loaded.sae, x)
            torch.testing.assert_close(c_hat, original(x))
            torch.testing.assert_close(f_t.to_dense(), f)  # latents come back sparse
    else:
        assert loaded.location == Location("resid_post", 1) and loaded.input_location is None


def test_jumprelu_fires_only_above_its_threshold_with_the_pre_activation(tmp_path):
    """By hand: W_enc = I, b_enc = b_dec = 0, so the pre-activation is the input itself. A
    latent is active exactly when its pre-activation exceeds its threshold (equality is off), and
    then its value is the pre-activation, not the excess over the threshold."""
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=4, d_sae=4, metadata=SAEMetadata(**RESID)))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(4))
        sae.W_dec.copy_(torch.eye(4))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.threshold.copy_(torch.tensor([0.5, 0.5, 1.0, 2.0]))
    sae.save_model(str(tmp_path / "j"))
    loaded = load_sae(path_sae(tmp_path / "j"))
    x = torch.tensor([[0.5, 0.51, 0.9, 2.5],
                      [0.7, -1.0, 1.0, 1.99]])
    expected = torch.tensor([[0.0, 0.51, 0.0, 2.5],
                             [0.7, 0.0, 0.0, 0.0]])
    with torch.no_grad():
        assert torch.equal(loaded.sae.encode(x), expected)
        c_hat, f = preprocessing.direct(loaded.sae, loaded.preprocessing, x)
    assert torch.equal(f.to_dense(), expected) and torch.equal(c_hat, expected)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_encoding_a_block_of_latents_at_a_time_is_encoding_whole(kind, tmp_path, monkeypatch):
    """A wide SAE whose encoder treats latents apart is encoded a block of latents at a time
    (runtime/sage/sparse.py); here every fixture is "wide" and the blocks (7 latents, the last
    one short) split TopK's winners across blocks. The same latents as sae_lens's whole encode,
    their values to float32 rounding (a narrow product may sum in another order), or the whole
    encode itself where the encoder is not separable (matching pursuit)."""
    build(kind, tmp_path / kind)
    loaded = load_sae(path_sae(tmp_path / kind), ARCH)
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(4))
    whole = sparse.encode(loaded.sae, x)
    parameters = dict(loaded.sae.named_parameters())
    monkeypatch.setattr(sparse, "BLOCKED_FROM", 1)
    monkeypatch.setattr(sparse, "LATENT_BLOCK", 7)
    assert (sparse.latent_blocks(loaded.sae) is None) == (kind == "matching_pursuit")
    blocked = sparse.encode(loaded.sae, x)
    assert torch.equal(blocked.crow, whole.crow) and torch.equal(blocked.index, whole.index)
    torch.testing.assert_close(blocked.value, whole.value, rtol=1e-6, atol=1e-6)
    assert all(p is parameters[name] for name, p in loaded.sae.named_parameters())  # the full parameters are back


@pytest.mark.parametrize("stored", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["standard", "jumprelu", "transcoder"])
def test_half_precision_weights_load_and_compute_in_float32(kind, stored, tmp_path):
    original = build(kind, tmp_path / "f32")
    make, _, _, meta = BUILDERS[kind]
    half = make(SAEMetadata(**meta))
    half.load_state_dict(original.state_dict())
    half = half.to(stored)
    half.cfg.dtype = str(stored).removeprefix("torch.")
    half.save_model(str(tmp_path / "half"))
    loaded = load_sae(path_sae(tmp_path / "half"), ARCH)
    name = str(stored).removeprefix("torch.")
    assert loaded.identity["weights_dtype"] == name and load_sae(path_sae(tmp_path / "f32")).identity["weights_dtype"] == "float32"
    assert loaded.sae.W_dec.dtype == torch.float32
    # The float32 weights are exactly the stored half ones, upcast.
    assert torch.equal(loaded.sae.W_enc, half.W_enc.float())
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        f = loaded.sae.encode(x)
        assert f.dtype == torch.float32
        # float32 arithmetic on the half weights: as the float32 SAE, up to the weights' rounding
        # (a JumpReLU latent within rounding of its threshold may flip, so only ReLU ones here)
        if kind != "jumprelu":
            assert (f - original.encode(x)).abs().max() < (0.05 if stored is torch.bfloat16 else 0.01)
        ref = {k: v.float() for k, v in half.state_dict().items()}
        pre = (x @ ref["W_enc"] + ref["b_enc"]) if kind == "transcoder" else ((x - ref["b_dec"]) @ ref["W_enc"] + ref["b_enc"])
        fired = pre * (pre > ref["threshold"]) if kind == "jumprelu" else pre.relu()
        torch.testing.assert_close(f, fired)


def test_transcoder_hook_from_hf_names_and_from_the_spec(tmp_path):
    """Gemma Scope 2's transcoders name their hooks in HF terms too: the MLP norm's output and the
    post-MLP norm's; a spec's `hook` (either end of the pair) gives the layer."""
    meta = SAEMetadata(hook_name="model.layers.1.ln_2.output", hook_name_out="transformer.h.1.mlp", model_name="tiny")
    torch.manual_seed(0)
    Transcoder(TranscoderConfig(d_in=D, d_sae=D_SAE, d_out=D, apply_b_dec_to_input=False, metadata=meta)).save_model(str(tmp_path / "hf"))
    with pytest.raises(SpecError, match="transcoder .* cannot tell where it reads and writes"):
        load_sae(path_sae(tmp_path / "hf"), ARCH)  # `model.layers.1.ln_2` is no GPT-2 module
    meta = SAEMetadata(hook_name="transformer.h.1.ln_2.output", hook_name_out="transformer.h.1.mlp.output", model_name="tiny")
    Transcoder(TranscoderConfig(d_in=D, d_sae=D_SAE, d_out=D, apply_b_dec_to_input=False, metadata=meta)).save_model(str(tmp_path / "hf2"))
    loaded = load_sae(path_sae(tmp_path / "hf2"), ARCH)
    assert (loaded.input_location, loaded.location) == (Location("mlp_in", 1), Location("mlp_out", 1))
    for hook in ("mlp_out 0", "mlp_in 0"):
        over = load_sae(path_sae(tmp_path / "hf2", hook=hook), ARCH)
        assert (over.input_location, over.location, over.layer) == (Location("mlp_in", 0), Location("mlp_out", 0), 0)


def test_transcoders_other_than_the_mlp_pair_and_bad_widths_are_refused(tmp_path):
    meta = SAEMetadata(hook_name="blocks.1.hook_resid_mid", hook_name_out="blocks.1.hook_mlp_out", model_name="tiny")
    Transcoder(TranscoderConfig(d_in=D, d_sae=D_SAE, d_out=D, apply_b_dec_to_input=False, metadata=meta)).save_model(str(tmp_path / "mid"))
    with pytest.raises(SpecError, match=r"from resid_mid 1 to mlp_out 1; sagec evaluates transcoders from a layer's MLP input"):
        load_sae(path_sae(tmp_path / "mid"), ARCH)
    Transcoder(TranscoderConfig(d_in=D, d_sae=D_SAE, d_out=2 * D, apply_b_dec_to_input=False, metadata=SAEMetadata(**MLP))).save_model(str(tmp_path / "wide"))
    with pytest.raises(SpecError, match=r"transcoder with d_out 32 at mlp_out 1 .* has width 16 there"):
        check_fits(load_sae(path_sae(tmp_path / "wide"), ARCH), ARCH)
    Transcoder(TranscoderConfig(d_in=D, d_sae=D_SAE, d_out=D, apply_b_dec_to_input=False, metadata=SAEMetadata(hook_name="blocks.1.hook_mlp_in"))).save_model(str(tmp_path / "no_out"))
    with pytest.raises(SpecError, match=r"its config gives no output hook") as e:
        load_sae(path_sae(tmp_path / "no_out"), ARCH)
    assert 'hook "mlp_out 3"' in e.value.diagnostics[0].hint
    assert load_sae(path_sae(tmp_path / "no_out", hook="mlp_out 1"), ARCH).location == Location("mlp_out", 1)
    meta = SAEMetadata(hook_name="blocks.1.ln2.hook_normalized", hook_name_out="blocks.1.hook_mlp_out", model_name="tiny")
    Transcoder(TranscoderConfig(d_in=D, d_sae=D_SAE, d_out=D, apply_b_dec_to_input=False, metadata=meta)).save_model(str(tmp_path / "ln"))
    with pytest.raises(SpecError, match=r"before the norm's scale.*hook \"mlp_in 1\""):
        load_sae(path_sae(tmp_path / "ln"), ARCH)


def test_fold_ln_is_refused_at_the_mlp_input_unless_accepted(tmp_path):
    meta = SAEMetadata(**MLP, model_from_pretrained_kwargs={"fold_ln": True, "center_writing_weights": True})
    Transcoder(TranscoderConfig(d_in=D, d_sae=D_SAE, d_out=D, apply_b_dec_to_input=False, metadata=meta)).save_model(str(tmp_path / "t"))
    with pytest.raises(SpecError, match=r"fold_ln=True moves the MLP norm's scale"):
        load_sae(path_sae(tmp_path / "t"), ARCH)
    accepted = Sae("s", "path", str(tmp_path / "t"), None, None, None, AT, ("fold_ln",))
    loaded = load_sae(accepted, ARCH)
    # centring applies to the output (mlp_out is a write into the stream), never to mlp_in
    assert loaded.preprocessing.centre and loaded.preprocessing.accepted == ("fold_ln",)
    x, c = torch.randn(5, D), torch.randn(5, D)
    with torch.no_grad():
        c_hat, _ = preprocessing.transcode(loaded.sae, loaded.preprocessing, x, c)
        plain, _ = reconstruct.transcode(loaded.sae, x)
    torch.testing.assert_close(c_hat, plain + c.mean(-1, keepdim=True))


@pytest.mark.parametrize("affine", [False, True])
def test_a_gemma_scope_2_transcoder_loads_offline_through_sae_lens_s_own_loader(affine, tmp_path):
    """sae_lens's Gemma Scope 2 loader names a transcoder's hooks `blocks.L.hook_mlp_in` ->
    `blocks.L.hook_mlp_out` (HF: pre_feedforward_layernorm's output -> post_feedforward_layernorm's)
    and an affine one's skip connection W_skip: a fixture release in the real file layout, in a
    local Hugging Face cache, described from its config alone and loaded."""
    from safetensors.torch import save as save_safetensors

    from runtime.model.architectures import GEMMA3
    from tests import hub_cache

    layer, d, d_sae = 1, 16, 32
    name = f"layer_{layer}_width_16k_l0_small" + ("_affine" if affine else "")
    folder = f"transcoder_all/{name}"
    g = torch.Generator().manual_seed(5)
    weights = {"w_enc": torch.randn(d, d_sae, generator=g), "w_dec": torch.randn(d_sae, d, generator=g), "b_enc": torch.zeros(d_sae),
               "b_dec": torch.randn(d, generator=g), "threshold": torch.full((d_sae,), 0.5)}
    if affine:
        weights["affine_skip_connection"] = torch.randn(d, d, generator=g)  # stored (d_in, d_out)
    config = {"architecture": "jump_relu", "model_name": "gemma-v3-270m-pt", "hf_hook_point_in": f"model.layers.{layer}.pre_feedforward_layernorm.output",
              "hf_hook_point_out": f"model.layers.{layer}.post_feedforward_layernorm.output", "affine_connection": affine}
    hub_cache.write_repo(tmp_path, "google/gemma-scope-2-270m-pt", {f"{folder}/config.json": json.dumps(config).encode(),
                                                                      f"{folder}/params.safetensors": save_safetensors(weights)})
    gemma = Architecture(family=GEMMA3, n_layers=4, n_heads=4, d_model=d, d_head=4, vocab_size=100, parallel_residual=False)
    spec_sae = Sae("tc", "sae_lens", None, "gemma-scope-2-270m-pt-transcoders-all", name, None, AT)
    with hub_cache.use(tmp_path):
        described = describe_sae(spec_sae, gemma)
        loaded = load_sae(spec_sae, gemma)
    expected = "jumprelu_skip_transcoder" if affine else "jumprelu_transcoder"
    for about in (described, loaded):
        assert (about.architecture, about.input_location, about.location, about.d_in, about.d_out, about.d_sae) == (
            expected, Location("mlp_in", layer), Location("mlp_out", layer), d, d, d_sae)
    check_fits(loaded, gemma)
    x = torch.randn(6, d, generator=g)
    with torch.no_grad():
        c_hat, f = reconstruct.transcode(loaded.sae, x)
    pre = x @ weights["w_enc"] + weights["b_enc"]
    f = f.to_dense()  # latents come back sparse
    torch.testing.assert_close(f, pre * (pre > 0.5))
    skip = x @ weights["affine_skip_connection"] if affine else 0
    torch.testing.assert_close(c_hat, f @ weights["w_dec"] + weights["b_dec"] + skip)


def test_architectures_sagec_cannot_evaluate_are_refused_with_the_reason(tmp_path):
    AbsTopKSAE(AbsTopKSAEConfig(d_in=D, d_sae=3 * D, k=4, metadata=SAEMetadata(**RESID))).save_model(str(tmp_path / "abs"))
    from sae_lens import TemporalSAE, TemporalSAEConfig

    TemporalSAE(TemporalSAEConfig(d_in=D, d_sae=3 * D, n_heads=2, bottleneck_factor=2, metadata=SAEMetadata(**RESID))).save_model(str(tmp_path / "temporal"))
    for load in (load_sae, describe_sae):
        with pytest.raises(SpecError, match=r"SAE s is a sae_lens 'abstopk' SAE, which sagec cannot evaluate: its latents fire with either sign"):
            load(path_sae(tmp_path / "abs"), ARCH)
        with pytest.raises(SpecError, match=r"'temporal' SAE, which sagec cannot evaluate: it encodes a token from the whole sequence"):
            load(path_sae(tmp_path / "temporal"), ARCH)
