"""SAEs: round trips through sae_lens's on-disk format, offline name checks, hooks, fitting."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.saes.sae import SAEMetadata

from runtime.model.architectures import GEMMA2, GPT2, LLAMA, Architecture
from runtime.saes.loading import check_fits, config_location, hf_location, load_sae, tl_location
from sagec.diagnostics import SpecError
from sagec.locations import Location
from sagec.spec import Origin, Sae

AT = Origin("saes.sage", 7, 1)
ARCH = Architecture(family=GPT2, n_layers=2, n_heads=4, d_model=64, d_head=16, vocab_size=100, parallel_residual=False)


def path_sae(folder: Path, hook: str | None = None) -> Sae:
    return Sae("res[1]", "path", str(folder), None, None, hook, AT)


def pretrained(release: str, sae_id: str) -> Sae:
    return Sae("gpt", "sae_lens", None, release, sae_id, None, AT)


@pytest.fixture(params=["standard", "topk"])
def saved(request, tmp_path):
    torch.manual_seed(0)
    meta = SAEMetadata(hook_name="blocks.1.hook_resid_post", model_name="tiny")
    if request.param == "standard":
        sae = StandardSAE(StandardSAEConfig(d_in=64, d_sae=128, metadata=meta))
    else:
        sae = TopKSAE(TopKSAEConfig(d_in=64, d_sae=128, k=8, metadata=meta))
    with torch.no_grad():  # non-zero biases, so a load that dropped one would show
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    sae.save_model(str(tmp_path / request.param))
    return request.param, sae, tmp_path / request.param


def test_round_trip_through_a_path_source(saved):
    kind, original, folder = saved
    loaded = load_sae(path_sae(folder))
    assert (loaded.architecture, loaded.d_in, loaded.d_sae) == (kind, 64, 128)
    assert loaded.location == Location("resid_post", 1) and loaded.layer == 1 and not loaded.all_heads_z
    assert loaded.hook == "blocks.1.hook_resid_post"
    x = torch.randn(5, 3, 64)
    with torch.no_grad():
        assert torch.equal(loaded.sae.encode(x), original.encode(x))
        assert torch.equal(loaded.sae.decode(original.encode(x)), original.decode(original.encode(x)))
    assert loaded.identity["source"] == "path" and len(loaded.identity["sha256"]) == 64
    assert load_sae(path_sae(folder)).identity == loaded.identity
    check_fits(loaded, ARCH)


def test_spec_hook_overrides_the_config(saved):
    _, _, folder = saved
    loaded = load_sae(path_sae(folder, hook="resid_pre 0"))
    assert loaded.location == Location("resid_pre", 0) and loaded.hook == "resid_pre 0"
    with pytest.raises(SpecError, match="hook .resid 0.: unknown component"):
        load_sae(path_sae(folder, hook="resid 0"))


def test_width_and_layer_mismatch_name_both_sides(saved):
    _, _, folder = saved
    loaded = load_sae(path_sae(folder))
    wide = Architecture(family=LLAMA, n_layers=30, n_heads=9, d_model=576, d_head=64, vocab_size=49152, parallel_residual=False)
    with pytest.raises(SpecError) as e:
        check_fits(loaded, wide, "smol")
    (d,) = e.value.diagnostics
    assert (d.file, d.line) == ("saes.sage", 7)
    assert "SAE res[1] has d_in 64 at resid_post 1" in d.message and "model smol" in d.message and "d_model 576" in d.message
    shallow = Architecture(family=GPT2, n_layers=1, n_heads=4, d_model=64, d_head=16, vocab_size=100, parallel_residual=False)
    with pytest.raises(SpecError, match=r"reads resid_post 1 .* has 1 layers"):
        check_fits(loaded, shallow)


def test_missing_folder(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_sae(path_sae(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="sae_lens's on-disk format"):
        load_sae(path_sae(tmp_path / "empty"))


def test_bad_release_suggests_the_closest():
    with pytest.raises(SpecError) as e:
        load_sae(pretrained("gpt2-small-res-jbb", "blocks.8.hook_resid_pre"))
    (d,) = e.value.diagnostics
    assert "no release 'gpt2-small-res-jbb'" in d.message and "'gpt2-small-res-jb'" in (d.hint or "")


def test_bad_id_suggests_the_closest():
    with pytest.raises(SpecError) as e:
        load_sae(pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pr"))
    (d,) = e.value.diagnostics
    assert "has no SAE id 'blocks.8.hook_resid_pr'" in d.message and "'blocks.8.hook_resid_pre'" in (d.hint or "")


def test_valid_pretrained_name_offline_says_no_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache, whatever this machine holds
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(SpecError) as e:
        load_sae(pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre"))
    assert "no hub is reachable" in str(e.value) and e.value.diagnostics[0].line == 7


@pytest.mark.parametrize(
    ("hook", "head", "expected"),
    [
        ("blocks.0.hook_resid_pre", None, Location("resid_pre", 0)),
        ("blocks.3.hook_resid_mid", None, Location("resid_mid", 3)),
        ("blocks.11.hook_resid_post", None, Location("resid_post", 11)),
        ("blocks.2.hook_attn_out", None, Location("attn_out", 2)),
        ("blocks.2.hook_mlp_out", None, Location("mlp_out", 2)),
        ("blocks.2.hook_mlp_in", None, Location("mlp_in", 2)),
        ("blocks.5.mlp.hook_in", None, Location("mlp_in", 5)),
        ("blocks.4.attn.hook_z", 3, Location("head_z", 4, 3)),
        ("blocks.4.attn.hook_result", 1, Location("head", 4, 1)),
    ],
)
def test_transformer_lens_hooks(hook, head, expected):
    assert tl_location(hook, head) == (expected, expected.layer)


def test_every_head_z_is_no_single_location_but_sites_spell_it_out():
    assert tl_location("blocks.1.attn.hook_z") == (None, 1)
    meta = types.SimpleNamespace(hook_name="blocks.1.attn.hook_z", hf_hook_name=None, hook_head_index=None)
    assert config_location(meta) == (None, 1, "blocks.1.attn.hook_z")
    assert tl_location("blocks.1.hook_embed") is None


@pytest.mark.parametrize(
    ("module", "family", "expected"),
    [
        ("transformer.h.3", None, Location("resid_post", 3)),
        ("transformer.h.3.attn", None, Location("attn_out", 3)),
        ("transformer.h.3.mlp", None, Location("mlp_out", 3)),
        ("gpt_neox.layers.2", None, Location("resid_post", 2)),
        ("gpt_neox.layers.2.attention", None, Location("attn_out", 2)),
        ("gpt_neox.layers.2.mlp", None, Location("mlp_out", 2)),
        ("model.layers.5", None, Location("resid_post", 5)),
        ("model.layers.5.mlp", LLAMA, Location("mlp_out", 5)),
        ("model.layers.5.self_attn", LLAMA, Location("attn_out", 5)),
        ("model.layers.5.post_feedforward_layernorm", GEMMA2, Location("mlp_out", 5)),
        ("model.layers.5.mlp", GEMMA2, None),  # normalised before it is added: not mlp_out
        ("transformer.h.3.ln_1", None, None),
        # the MLP's input: its norm's output, or the MLP module's input; `.output` names an output
        ("transformer.h.3.ln_2", None, Location("mlp_in", 3)),
        ("transformer.h.3.mlp.input", None, Location("mlp_in", 3)),
        ("model.layers.5.pre_feedforward_layernorm.output", GEMMA2, Location("mlp_in", 5)),
        ("model.layers.5.post_feedforward_layernorm.output", GEMMA2, Location("mlp_out", 5)),
        ("model.layers.5.post_attention_layernorm", LLAMA, Location("mlp_in", 5)),
        ("model.layers.5.post_attention_layernorm", GEMMA2, Location("attn_out", 5)),
        ("gpt_neox.layers.2.post_attention_layernorm", None, Location("mlp_in", 2)),
    ],
)
def test_hf_module_names(module, family, expected):
    assert hf_location(module, family) == expected


def test_hf_names_that_differ_between_families_need_the_architecture():
    with pytest.raises(ValueError, match="llama and gemma2"):
        hf_location("model.layers.5.mlp")


def test_config_prefers_the_tl_name_then_hf():
    both = types.SimpleNamespace(hook_name="blocks.2.hook_resid_post", hf_hook_name="model.layers.2", hook_head_index=None)
    assert config_location(both)[0] == Location("resid_post", 2)
    hf_only = types.SimpleNamespace(hook_name="transformer.h.0", hf_hook_name=None, hook_head_index=None)
    assert config_location(hf_only) == (Location("resid_post", 0), 0, "transformer.h.0")


def test_unknown_config_hook_asks_for_an_override(tmp_path):
    sae = StandardSAE(StandardSAEConfig(d_in=8, d_sae=16, metadata=SAEMetadata(hook_name="embed.weird")))
    sae.save_model(str(tmp_path / "weird"))
    with pytest.raises(SpecError) as e:
        load_sae(path_sae(tmp_path / "weird"))
    assert "'embed.weird'" in str(e.value) and 'hook "resid_pre 3"' in (e.value.diagnostics[0].hint or "")
    assert load_sae(path_sae(tmp_path / "weird", hook="resid_pre 1")).location == Location("resid_pre", 1)


def test_all_heads_z_sae_fits_by_total_width(tmp_path):
    sae = StandardSAE(StandardSAEConfig(d_in=64, d_sae=32, metadata=SAEMetadata(hook_name="blocks.1.attn.hook_z")))
    sae.save_model(str(tmp_path / "z"))
    loaded = load_sae(path_sae(tmp_path / "z"))
    assert loaded.location is None and loaded.all_heads_z
    assert loaded.sites(ARCH) == tuple(Location("head_z", 1, h) for h in range(4))
    check_fits(loaded, ARCH)  # 4 heads x 16
    with pytest.raises(SpecError, match="8 heads x d_head 16"):
        check_fits(loaded, Architecture(family=GPT2, n_layers=2, n_heads=8, d_model=128, d_head=16, vocab_size=100, parallel_residual=False))


def test_hub_offline_in_tests():
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "run the tests with HF_HUB_OFFLINE=1"


def test_zoo_saes_resolve_through_the_registry(saved, monkeypatch):
    from runtime.saes import loading as saes

    kind, original, folder = saved
    monkeypatch.setattr(saes, "_ZOO", {})
    monkeypatch.setattr(saes, "_PROVIDERS", [])
    saes.register_zoo_sae(f"tiny/{kind}/1", lambda: folder)
    loaded = load_sae(Sae("z", "zoo", f"tiny/{kind}/1", None, None, None, AT))
    assert loaded.identity["name"] == f"tiny/{kind}/1" and loaded.location == Location("resid_post", 1)
    with pytest.raises(SpecError) as e:
        load_sae(Sae("z", "zoo", f"tiny/{kind}/2", None, None, None, AT))
    assert f"no SAE 'tiny/{kind}/2'" in str(e.value) and f"'tiny/{kind}/1'" in str(e.value)


def test_catalogue_lists_zoo_and_sae_lens(saved, monkeypatch):
    from runtime.saes import loading as saes

    monkeypatch.setattr(saes, "_ZOO", {"tiny/std/1": lambda: saved[2]})
    monkeypatch.setattr(saes, "_PROVIDERS", [])
    listed = saes.catalogue("*")
    assert listed[0] == saes.Listed("zoo", "tiny/std/1", "tiny")
    assert saes.Listed("sae_lens", "gpt2-small-res-jb/blocks.8.hook_resid_pre", "gpt2-small") in listed
    assert {x.name for x in saes.catalogue("gpt2-small-res-jb/blocks.1[01].hook_resid_pre")} == {f"gpt2-small-res-jb/blocks.{i}.hook_resid_pre" for i in (10, 11)}


@pytest.mark.parametrize("reshape", ["none", "hook_z"])
def test_all_heads_z_input_and_output_per_head(tmp_path, reshape):
    torch.manual_seed(0)
    cfg = StandardSAEConfig(d_in=64, d_sae=32, reshape_activations=reshape, metadata=SAEMetadata(hook_name="blocks.0.attn.hook_z"))
    StandardSAE(cfg).save_model(str(tmp_path / "z"))
    loaded = load_sae(path_sae(tmp_path / "z"))
    heads = [torch.randn(5, 16) for _ in range(4)]  # head_z 0.0 .. 0.3 at one position
    x = loaded.input_from(heads)
    with torch.no_grad():
        out = loaded.sae.decode(loaded.sae.encode(x))
        flat = StandardSAE(StandardSAEConfig(d_in=64, d_sae=32))
        flat.load_state_dict(loaded.sae.state_dict())
        expected = flat.decode(flat.encode(torch.cat(heads, dim=-1)))
    back = loaded.per_site(out, ARCH)
    assert len(back) == 4 and all(b.shape == (5, 16) for b in back)
    assert torch.allclose(torch.cat(back, dim=-1), expected, atol=1e-6)


def test_zoo_module_names_and_folders(saved, monkeypatch):
    from runtime.saes import loading as saes

    kind, _, folder = saved
    fake = types.SimpleNamespace(names=lambda: ["tiny-ioi/topk-k8/resid_post.1", "tiny-ioi/gone/resid_post.1"], folder=lambda n: folder if "topk" in n else (_ for _ in ()).throw(FileNotFoundError(f"zoo SAE {n} is missing; run `sagec zoo build {n}`")))
    monkeypatch.setattr(saes, "_ZOO", {})
    monkeypatch.setattr(saes, "_PROVIDERS", [(fake.names, fake.folder, None)])
    assert load_sae(Sae("z", "zoo", "tiny-ioi/topk-k8/resid_post.1", None, None, None, AT)).d_sae == 128
    with pytest.raises(SpecError, match="sagec zoo build"):
        load_sae(Sae("z", "zoo", "tiny-ioi/gone/resid_post.1", None, None, None, AT))
    with pytest.raises(SpecError) as e:
        load_sae(Sae("z", "zoo", "tiny-ioi/topk-k8/resid_post.2", None, None, None, AT))
    assert "did you mean 'tiny-ioi/topk-k8/resid_post.1'" in (e.value.diagnostics[0].hint or "")


def test_many_zoo_names_are_listed_by_shape(monkeypatch):
    from runtime.saes import loading as saes

    names = [f"m/{k}/resid_post.{l}" for k in ("topk-k8", "weak") for l in range(10)]
    monkeypatch.setattr(saes, "_ZOO", {n: (lambda: Path("/nowhere")) for n in names})
    monkeypatch.setattr(saes, "_PROVIDERS", [])
    with pytest.raises(SpecError) as e:
        load_sae(Sae("z", "zoo", "m/topk-k16/resid_post.1", None, None, None, AT))
    assert "it has 20: 'm/topk-k8/resid_post.N', 'm/weak/resid_post.N' (N a layer)" in str(e.value)
