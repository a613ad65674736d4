"""Each family's location table, checked on a tiny random model of that family.

The identities are what makes the vocabulary trustworthy across architectures: the residual
stream decomposes as resid_pre + attn_out + mlp_out == resid_post (with each family's own norm
placement), the heads sum to the attention output, and a write changes its location and what is
downstream of it, never what is upstream.
"""

from __future__ import annotations

import pytest
import torch

from runtime.model.architectures import GPT_NEOX, architecture, family_of
from runtime.model.locations import Write, access, envoy_at, o_proj_bias, o_proj_matrix
from runtime.model.sources import load_model
from sagec.locations import Location
from sagec.spec import Model, Origin
from tests import tiny_families

FAMILY_NAMES = list(tiny_families.FAMILIES)
COMPONENTS = ("resid_pre", "resid_mid", "attn_out", "mlp_out", "resid_post")


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def loaded(request, tmp_path_factory):
    folder = tiny_families.build(request.param, tmp_path_factory.mktemp(request.param))
    spec = Model(request.param, "path", str(folder), "float32", "cpu", None, None, Origin("t.sage", 1, 1))
    return load_model(spec)


def ids(batch: int = 3, length: int = 9, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, len(tiny_families.VOCAB), (batch, length), generator=g)


def all_locations(arch) -> list[Location]:
    locs = [Location(c, layer) for layer in range(arch.n_layers) for c in COMPONENTS]
    locs += [Location(c, layer, h) for layer in range(arch.n_layers) for c in ("head", "head_z") for h in range(arch.n_heads)]
    return locs


def run(loaded, x, reads=(), writes=()):
    model = loaded.model
    with torch.no_grad(), model.trace(x):
        cap = access(model, loaded.arch, reads, writes)
        logits = model.output.logits.save()
    return cap.values, logits


def test_family_detection_and_shape(loaded):
    arch = loaded.arch
    assert arch.family is family_of(loaded.model.config)
    assert (arch.n_layers, arch.n_heads, arch.d_model) == (3, 4, 32)
    assert arch.d_head == (16 if arch.family.attn_site_is_norm else 8)
    assert arch.width(Location("head_z", 0, 1)) == arch.d_head and arch.width(Location("head", 0, 1)) == 32


def test_unknown_architecture_is_named():
    class Cfg:
        model_type = "mamba"

    with pytest.raises(ValueError, match="unsupported architecture 'mamba'.*gpt2"):
        architecture(Cfg())


def test_out_of_range_location_is_named(loaded):
    with pytest.raises(ValueError, match="head 1.7: head 7 is out of range"):
        loaded.arch.check(Location("head", 1, 7))
    with pytest.raises(ValueError, match="resid_pre 3: layer 3 is out of range"):
        loaded.arch.check(Location("resid_pre", 3))


def test_residual_identity(loaded):
    v, _ = run(loaded, ids(), all_locations(loaded.arch))
    for layer in range(loaded.arch.n_layers):
        pre, attn, mlp, post = (v[Location(c, layer)] for c in ("resid_pre", "attn_out", "mlp_out", "resid_post"))
        torch.testing.assert_close(pre + attn + mlp, post, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v[Location("resid_mid", layer)], pre + attn)
        if layer:
            torch.testing.assert_close(v[Location("resid_pre", layer)], v[Location("resid_post", layer - 1)])
        assert attn.abs().max() > 1e-2 and mlp.abs().max() > 1e-2  # the identity is not vacuous


def test_resid_mid_is_what_the_mlp_reads(loaded):
    """In sequential families resid_mid is a real tensor: the input of the MLP's norm."""
    arch = loaded.arch
    norm = {"gpt2": "ln_2", "gpt_neox": "post_attention_layernorm", "llama": "post_attention_layernorm",
            "gemma2": "pre_feedforward_layernorm", "gemma3": "pre_feedforward_layernorm"}[arch.family.name]
    x = ids()
    model = loaded.model
    with torch.no_grad(), model.trace(x):
        cap = access(model, arch, [Location("resid_pre", 1), Location("resid_mid", 1)])
        mlp_in = envoy_at(envoy_at(model, arch.family.layers)[1], norm).input.save()
    expected = cap.values[Location("resid_pre", 1)] if arch.parallel_residual else cap.values[Location("resid_mid", 1)]
    torch.testing.assert_close(mlp_in, expected)


def test_mlp_in_is_what_the_mlp_reads_and_the_mlp_makes_mlp_out_from_it(loaded):
    """mlp_in (a transcoder's input) is the MLP module's input: its norm applied to the stream
    the MLP reads; the MLP (and, in Gemma, the post-MLP norm) turns exactly it into mlp_out."""
    arch = loaded.arch
    family, model = arch.family, loaded.model
    x = ids()
    with torch.no_grad(), model.trace(x):
        cap = access(model, arch, [Location("resid_pre", 1), Location("resid_mid", 1), Location("mlp_in", 1), Location("mlp_out", 1)])
    block = model._module.get_submodule(f"{family.layers}.1")
    mlp_in = cap.values[Location("mlp_in", 1)]
    stream = cap.values[Location("resid_pre", 1)] if arch.parallel_residual else cap.values[Location("resid_mid", 1)]
    with torch.no_grad():
        torch.testing.assert_close(mlp_in, block.get_submodule(family.mlp_norm)(stream))
        out = block.get_submodule(family.mlp)(mlp_in)
        if family.mlp_site != family.mlp:  # Gemma's post-MLP norm; GPT-NeoX's dropout (an identity)
            out = block.get_submodule(family.mlp_site)(out)
    torch.testing.assert_close(out, cap.values[Location("mlp_out", 1)], atol=1e-5, rtol=1e-5)
    assert arch.width(Location("mlp_in", 1)) == arch.d_model


def test_mlp_in_write_changes_the_mlp_output_and_not_the_stream(loaded):
    arch = loaded.arch
    x = ids()
    reads = [Location("resid_mid", 1), Location("mlp_in", 1), Location("mlp_out", 1)]
    clean, _ = run(loaded, x, reads)
    value = torch.randn(x.shape[0], arch.d_model, generator=torch.Generator().manual_seed(4))
    got, _ = run(loaded, x, reads, [Write(Location("mlp_in", 1), torch.full((x.shape[0],), 5), value)])
    torch.testing.assert_close(got[Location("resid_mid", 1)], clean[Location("resid_mid", 1)])
    torch.testing.assert_close(got[Location("mlp_in", 1)], clean[Location("mlp_in", 1)])  # read before its own write
    assert not torch.allclose(got[Location("mlp_out", 1)][:, 5], clean[Location("mlp_out", 1)][:, 5])
    torch.testing.assert_close(got[Location("mlp_out", 1)][:, :5], clean[Location("mlp_out", 1)][:, :5])


def test_heads_sum_to_attention_output(loaded):
    arch = loaded.arch
    model = loaded.model
    x = ids()
    heads = [Location("head", 1, h) for h in range(arch.n_heads)]
    with torch.no_grad(), model.trace(x):
        cap = access(model, arch, [*heads, Location("attn_out", 1)])
    total = sum(cap.values[h] for h in heads)
    bias = o_proj_bias(model, arch, 1)
    torch.testing.assert_close(total + (0 if bias is None else bias), cap.values[Location("attn_out", 1)], atol=1e-5, rtol=1e-5)
    # head = head_z @ its block of W_O, times the post-attention norm's factor (Gemma)
    with torch.no_grad(), model.trace(x):
        cap = access(model, arch, [Location("head", 1, 2), Location("head_z", 1, 2)])
        o = envoy_at(envoy_at(model, arch.family.layers)[1], arch.family.o_proj).output.save()
    w = o_proj_matrix(model, arch, 1)[2 * arch.d_head : 3 * arch.d_head]
    share = cap.values[Location("head_z", 1, 2)] @ w
    if arch.family.attn_site_is_norm:  # Gemma's RMSNorm, by hand: x / rms(x) * (1 + weight)
        norm = model._module.get_submodule(f"{arch.family.layers}.1.{arch.family.attn_site}")
        share = share / (o.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt() * (1 + norm.weight)
    torch.testing.assert_close(share, cap.values[Location("head", 1, 2)])


def test_resid_post_matches_hidden_states(loaded):
    x = ids()
    v, logits = run(loaded, x, [Location("resid_pre", 0), Location("resid_post", 0), Location("resid_post", 1)])
    with torch.no_grad():
        out = loaded.model._module(input_ids=x, output_hidden_states=True)
    torch.testing.assert_close(v[Location("resid_pre", 0)], out.hidden_states[0])
    torch.testing.assert_close(v[Location("resid_post", 0)], out.hidden_states[1])
    torch.testing.assert_close(v[Location("resid_post", 1)], out.hidden_states[2])
    torch.testing.assert_close(logits, out.logits)


@pytest.mark.parametrize("component", ["resid_pre", "resid_mid", "attn_out", "mlp_out", "resid_post", "head", "head_z"])
def test_write_lands_where_it_should_and_nowhere_upstream(loaded, component):
    arch = loaded.arch
    layer, pos = 1, 5
    target = Location(component, layer, 2 if component in ("head", "head_z") else None)
    x = ids()
    reads = all_locations(arch)
    clean, clean_logits = run(loaded, x, reads)
    value = torch.randn(x.shape[0], arch.width(target), generator=torch.Generator().manual_seed(3))
    write = Write(target, torch.full((x.shape[0],), pos), value)
    got, logits = run(loaded, x, reads, [write])

    # upstream of the write: every earlier layer, and every earlier position, is untouched
    for loc in reads:
        before_site = loc.layer < layer or (loc.layer == layer and _site_order(loc) < _site_order(target))
        if before_site:
            torch.testing.assert_close(got[loc], clean[loc])
        torch.testing.assert_close(got[loc][:, :pos], clean[loc][:, :pos])
    assert not torch.allclose(logits[:, pos:], clean_logits[:, pos:])

    # the write itself, seen through the residual identity at layer `layer`, position `pos`
    at = lambda v, c: v[Location(c, layer)][:, pos]  # noqa: E731
    if component == "resid_pre":
        torch.testing.assert_close(at(got, "resid_post") - at(got, "attn_out") - at(got, "mlp_out"), value, atol=1e-5, rtol=1e-5)
    elif component == "resid_mid":
        torch.testing.assert_close(at(got, "resid_post") - at(got, "mlp_out"), value, atol=1e-5, rtol=1e-5)
    elif component in ("attn_out", "mlp_out"):
        other = "mlp_out" if component == "attn_out" else "attn_out"
        torch.testing.assert_close(at(got, "resid_post") - at(got, "resid_pre") - at(got, other), value, atol=1e-5, rtol=1e-5)
    elif component == "resid_post":
        torch.testing.assert_close(got[Location("resid_pre", layer + 1)][:, pos], value)
    elif component == "head" or not arch.family.attn_site_is_norm:  # the attention output moves by the head's change
        # (a Gemma head_z write is renormalised by the post-attention norm, so it moves attn_out non-linearly)
        w = o_proj_matrix(loaded.model, arch, layer)[2 * arch.d_head : 3 * arch.d_head]
        new = value if component == "head" else value @ w
        old = at(clean, "attn_out") - clean[Location("head", layer, 2)][:, pos]
        torch.testing.assert_close(at(got, "attn_out"), old + new, atol=1e-5, rtol=1e-5)


def test_head_z_write_equals_patching_the_projection_input(loaded):
    """An independent route: overwrite the head's slice of the o_proj input directly."""
    arch, model = loaded.arch, loaded.model
    x = ids()
    dh = arch.d_head
    value = torch.randn(x.shape[0], dh, generator=torch.Generator().manual_seed(4))
    _, ours = run(loaded, x, (), [Write(Location("head_z", 2, 3), torch.full((x.shape[0],), 7), value)])
    with torch.no_grad(), model.trace(x):
        o_proj = envoy_at(envoy_at(model, arch.family.layers)[2], arch.family.o_proj)
        z = o_proj.input.clone()
        z[:, 7, 3 * dh : 4 * dh] = value
        o_proj.input = z
        theirs = model.output.logits.save()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_rows_select_batch_rows(loaded):
    arch = loaded.arch
    x = ids()
    loc = Location("mlp_out", 0)
    clean, clean_logits = run(loaded, x)
    value = torch.randn(1, arch.d_model)
    _, logits = run(loaded, x, (), [Write(loc, torch.tensor([4]), value, rows=torch.tensor([1]))])
    torch.testing.assert_close(logits[[0, 2]], clean_logits[[0, 2]])
    assert not torch.allclose(logits[1, 4:], clean_logits[1, 4:])


def test_parallel_residual_is_detected():
    cfg = tiny_families.FAMILIES["gpt_neox"][0](**tiny_families.FAMILIES["gpt_neox"][2])
    assert architecture(cfg).family is GPT_NEOX and architecture(cfg).parallel_residual
    seq = tiny_families.FAMILIES["gpt_neox_sequential"]
    assert not architecture(seq[0](**seq[2])).parallel_residual


_ORDER = {"resid_pre": 0, "head_z": 1, "head": 1, "attn_out": 2, "resid_mid": 2, "mlp_out": 3, "resid_post": 4}


def _site_order(loc: Location) -> int:
    return _ORDER[loc.component]
