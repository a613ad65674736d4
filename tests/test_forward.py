"""The forward engine: collect, patch and differentiate over ragged, left-padded batches."""

from __future__ import annotations

import pytest
import torch

from runtime.model.forward import Patch, collect, collect_with_grads, pad_left, patched_logits, prefix_cache, suffix_needed
from runtime.model.sources import load_model
from sagec.locations import Location
from sagec.spec import Model, Origin
from tests import tiny_families


# gemma3: one KV head, sliding window 6 (the prompts run to 10 tokens), the Gemma head shares
@pytest.fixture(scope="module", params=["gpt2", "llama", "gpt_neox", "gemma3"])
def loaded(request, tmp_path_factory):
    folder = tiny_families.build(request.param, tmp_path_factory.mktemp(request.param))
    spec = Model(request.param, "path", str(folder), "float32", "cpu", None, 4, Origin("t.sage", 1, 1))
    return load_model(spec)


def prompts(n: int = 7, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 11, (n,), generator=g)
    return [torch.randint(4, len(tiny_families.VOCAB), (int(k),), generator=g).tolist() for k in lengths]


LOCS = [Location("resid_pre", 0), Location("resid_post", 1), Location("attn_out", 2), Location("head", 1, 3),
        Location("head_z", 2, 0), Location("mlp_out", 0), Location("resid_mid", 2)]


def test_pad_left_and_columns():
    p = pad_left([[5, 6, 7], [8]], pad_id=0)
    assert p.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert p.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert p.position_ids[1, -1] == 0 and p.position_ids[0].tolist() == [0, 1, 2]
    assert p.columns([1, 0]).tolist() == [1, 2]
    assert p.columns([-1, -1]).tolist() == [2, 2]
    with pytest.raises(IndexError, match="position 1 is outside batch row 1 of 1 tokens"):
        p.columns([0, 1])


def test_collect_matches_plain_forward_of_each_prompt(loaded):
    """Each prompt alone through plain HF (output_hidden_states) equals its row of the padded,
    sorted, batched collect: padding, position ids and reordering change nothing."""
    xs = prompts()
    first = [0] * len(xs)
    last = [len(x) - 1 for x in xs]
    got = collect(loaded, xs, {"first": first, "last": last}, [Location("resid_post", 0), Location("resid_pre", 2)])
    for i, x in enumerate(xs):
        with torch.no_grad():
            out = loaded.model._module(input_ids=torch.tensor([x]), output_hidden_states=True)
        for name, pos in (("first", 0), ("last", len(x) - 1)):
            torch.testing.assert_close(got.activations[Location("resid_post", 0), name][i], out.hidden_states[1][0, pos], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(got.activations[Location("resid_pre", 2), name][i], out.hidden_states[2][0, pos], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got.logits[i], out.logits[0, -1], atol=1e-5, rtol=1e-4)


def test_batch_size_does_not_change_results(loaded):
    xs = prompts()
    pos = {"end": [-1] * len(xs), "second": [1] * len(xs)}
    a = collect(loaded, xs, pos, LOCS, batch_size=1)
    b = collect(loaded, xs, pos, LOCS, batch_size=16)
    for key in a.activations:
        assert a.activations[key].shape == (len(xs), loaded.arch.width(key[0]))
        torch.testing.assert_close(a.activations[key], b.activations[key], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-4)


def test_patching_own_values_changes_nothing_and_others_do(loaded):
    xs = prompts()
    g = torch.Generator().manual_seed(1)
    ys = [torch.randint(4, len(tiny_families.VOCAB), (len(x),), generator=g).tolist() for x in xs]
    pos = {"end": [-1] * len(xs)}
    clean = collect(loaded, xs, pos, LOCS)
    corrupt = collect(loaded, ys, pos, LOCS)
    own = [Patch(loc, [-1] * len(xs), clean.activations[loc, "end"]) for loc in LOCS]
    torch.testing.assert_close(patched_logits(loaded, xs, own), clean.logits, atol=1e-5, rtol=1e-4)
    # resid_post of the last layer at the final position decides the logits: patching it in
    # from the corrupted run gives the corrupted logits exactly
    last = Location("resid_post", loaded.arch.n_layers - 1)
    full = collect(loaded, ys, pos, [last])
    swapped = patched_logits(loaded, xs, [Patch(last, [-1] * len(xs), full.activations[last, "end"])])
    torch.testing.assert_close(swapped, corrupt.logits, atol=1e-4, rtol=1e-4)


def test_collect_with_no_positions_gives_logits_only(loaded):
    xs = prompts(3)
    got = collect(loaded, xs, {}, [Location("resid_post", 0)])
    assert got.activations == {} and got.logits.shape == (3, len(tiny_families.VOCAB))
    with pytest.raises(IndexError, match="position 'end' 20 is outside prompt 0, which has"):
        collect(loaded, xs, {"end": [20, 20, 20]}, [Location("resid_post", 0)])


def test_patched_logits_rejects_wrong_shapes(loaded):
    xs = prompts(3)
    with pytest.raises(ValueError, match=r"patch of mlp_out 0: expected 3 positions"):
        patched_logits(loaded, xs, [Patch(Location("mlp_out", 0), [0, 0, 0], torch.zeros(3, 5))])
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        patched_logits(loaded, xs, [Patch(Location("mlp_out", 9), [0, 0, 0], torch.zeros(3, 32))])


def _metric(answer: list[int], other: list[int]):
    def metric(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        idx = torch.arange(len(rows))
        return logits[idx, torch.tensor(answer)[rows]] - logits[idx, torch.tensor(other)[rows]]
    return metric


def test_gradients_match_finite_differences(loaded):
    """d metric / d activation, checked against a real patch a small step along a random direction."""
    xs = prompts(5)
    n = len(xs)
    answer, other = [5 + i for i in range(n)], [12 + i for i in range(n)]
    metric = _metric(answer, other)
    pos = {"mid": [2] * n, "end": [-1] * n}
    locs = [Location("resid_mid", 1), Location("head", 2, 1), Location("head_z", 1, 3), Location("attn_out", 0),
            Location("resid_pre", 1), Location("mlp_out", 2), Location("resid_pre", 0), Location("resid_post", 2)]
    got = collect_with_grads(loaded, xs, pos, locs, metric)
    base = metric(got.logits, torch.arange(n))
    torch.testing.assert_close(got.metric, base)
    eps = 1e-3  # small: at layer 0 the RMS norms of tiny embeddings are strongly curved
    for loc in locs:
        for name, where in pos.items():
            direction = torch.randn(n, loaded.arch.width(loc), generator=torch.Generator().manual_seed(7))
            a = got.activations[loc, name].double()
            # +eps and -eps rows in one forward: the prompts twice over
            both = Patch(loc, [*where, *where], torch.cat([a + eps * direction, a - eps * direction]).float())
            m2 = metric(patched_logits(loaded, xs + xs, [both], batch_size=2 * n), torch.arange(2 * n) % n)
            up, down = m2[:n], m2[n:]
            numeric = (up - down) / (2 * eps)
            analytic = (got.gradients[loc, name] * direction).sum(-1)
            torch.testing.assert_close(analytic, numeric, atol=2e-3, rtol=2e-2, msg=f"{loc} @ {name}")
            assert analytic.abs().max() > 1e-3 or name == "mid"  # not vacuous at the final position


def test_suffix_only_path_matches_the_full_forward(loaded):
    xs = prompts(6)
    n = len(xs)
    pos = {"end": [-1] * n}
    locs = [Location("resid_pre", 1), Location("head", 2, 1), Location("mlp_out", 0), Location("resid_mid", 2)]
    g = torch.Generator().manual_seed(5)
    patches = [Patch(loc, [len(x) - 1 for x in xs], torch.randn(n, loaded.arch.width(loc), generator=g)) for loc in locs]
    prefix = prefix_cache(loaded, xs, batch_size=4)
    full = patched_logits(loaded, xs, patches)
    fast = patched_logits(loaded, xs, patches, prefix=prefix)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-4)
    # the cache is reusable: a second intervention on the same prefix gives the clean logits back
    clean = collect(loaded, xs, pos, [])
    torch.testing.assert_close(patched_logits(loaded, xs, [], prefix=prefix), clean.logits, atol=1e-5, rtol=1e-4)
    # a patch before the final token falls back to the full forward, and is still right
    early = [Patch(Location("mlp_out", 0), [0] * n, torch.zeros(n, loaded.arch.d_model))]
    torch.testing.assert_close(patched_logits(loaded, xs, early, prefix=prefix), patched_logits(loaded, xs, early))
    assert prefix.serves(xs, patches) and not prefix.serves(xs, early) and not prefix.serves(xs[1:] + [[7, 8, 9]], [])


def test_a_longer_suffix_serves_patches_at_earlier_positions_and_matches_the_full_forward(loaded):
    """Patches a few tokens before the end (IOI's s2 is six tokens before `end`), at different
    positions per prompt and per site, and prompts of different lengths in one padded batch:
    recomputing the last `suffix` tokens on the clean prefix's cache gives the full forward."""
    xs = prompts(6)
    n, shortest = len(xs), min(len(x) for x in xs)
    g = torch.Generator().manual_seed(11)
    back = [int(k) for k in torch.randint(1, shortest - 1, (n,), generator=g)]  # tokens before the end
    patches = [Patch(Location("mlp_out", 0), [len(x) - 1 - b for x, b in zip(xs, back)], torch.randn(n, loaded.arch.d_model, generator=g)),
               Patch(Location("head", 2, 1), [-1] * n, torch.randn(n, loaded.arch.width(Location("head", 2, 1)), generator=g)),
               Patch(Location("resid_pre", 1), [len(x) - 2 for x in xs], torch.randn(n, loaded.arch.d_model, generator=g))]
    need = suffix_needed(xs, [p.positions for p in patches])
    assert need == max(back) + 1
    prefix = prefix_cache(loaded, xs, batch_size=4, suffix=need)
    assert prefix.serves(xs, patches)
    torch.testing.assert_close(patched_logits(loaded, xs, patches, prefix=prefix), patched_logits(loaded, xs, patches), atol=1e-5, rtol=1e-4)
    # one token fewer does not reach the earliest patch: the full forward runs, and is still right
    short = prefix_cache(loaded, xs, batch_size=4, suffix=need - 1)
    assert not short.serves(xs, patches)
    torch.testing.assert_close(patched_logits(loaded, xs, patches, prefix=short), patched_logits(loaded, xs, patches))
    with pytest.raises(ValueError, match="longer than"):
        prefix_cache(loaded, xs, suffix=shortest)


@pytest.mark.parametrize("start", [1, 2])
def test_layers_before_the_first_patched_one_are_skipped_on_the_clean_stream(loaded, start):
    """Patches at layer `start` and later, a few tokens before the end: the prefix keeps the
    clean stream entering layer `start` at the recomputed tokens, the layers before it are
    skipped (their output is that stream), and the logits are the full forward's."""
    xs = prompts(6, seed=3)
    n, shortest = len(xs), min(len(x) for x in xs)
    g = torch.Generator().manual_seed(13)
    at = [len(x) - 1 - int(b) for x, b in zip(xs, torch.randint(0, shortest - 1, (n,), generator=g))]
    first = Location("resid_pre", start) if start == 2 else Location("head", start, 1)
    patches = [Patch(first, at, torch.randn(n, loaded.arch.width(first), generator=g)),
               Patch(Location("mlp_out", 2), [-1] * n, torch.randn(n, loaded.arch.d_model, generator=g))]
    need = suffix_needed(xs, [p.positions for p in patches])
    prefix = prefix_cache(loaded, xs, batch_size=4, suffix=need, start=start)
    assert prefix.serves(xs, patches)
    torch.testing.assert_close(patched_logits(loaded, xs, patches, prefix=prefix), patched_logits(loaded, xs, patches), atol=1e-5, rtol=1e-4)
    # no patch at all: the clean logits, through the skipped layers
    torch.testing.assert_close(patched_logits(loaded, xs, [], prefix=prefix), collect(loaded, xs, {}, []).logits, atol=1e-5, rtol=1e-4)
    # a patch before `start` is not served (its layer would be skipped)
    early = [Patch(Location("mlp_out", start - 1), [-1] * n, torch.zeros(n, loaded.arch.d_model))]
    assert not prefix.serves(xs, early)
    torch.testing.assert_close(patched_logits(loaded, xs, early, prefix=prefix), patched_logits(loaded, xs, early))
    assert_any_rows_are_served(loaded, xs, patches, prefix)


def test_reduced_logits_are_the_reduction_of_the_full_logits_on_both_paths(loaded):
    """`reduce` sees each forward's logits with the caller's prompt indices, whichever order
    the engine runs them in (sorted by length, grouped by prefix batch, repeated rows)."""
    xs = prompts(7, seed=4)
    n = len(xs)
    g = torch.Generator().manual_seed(2)
    patches = [Patch(Location("mlp_out", 1), [-1] * n, torch.randn(n, loaded.arch.d_model, generator=g))]
    weights = torch.randn(n, generator=g)

    def reduce(logits, rows):  # depends on which prompt each row is: a wrong index shows
        return torch.stack([logits[:, 5] * weights[rows], logits.argmax(dim=-1).double()], dim=1)

    full = patched_logits(loaded, xs, patches, batch_size=3)
    expected = reduce(full, torch.arange(n))
    torch.testing.assert_close(patched_logits(loaded, xs, patches, batch_size=3, reduce=reduce), expected)
    prefix = prefix_cache(loaded, xs, batch_size=3)
    assert prefix.serves(xs, patches)
    torch.testing.assert_close(patched_logits(loaded, xs, patches, prefix=prefix, reduce=reduce), expected, atol=1e-5, rtol=1e-4)
    # a reduction to one column per row
    torch.testing.assert_close(patched_logits(loaded, xs, patches, prefix=prefix, reduce=lambda lg, r: lg[:, 5] * weights[r]), full[:, 5] * weights, atol=1e-5, rtol=1e-4)


def assert_any_rows_are_served(loaded, xs, patches, prefix):
    """The suffix path runs any rows of the prefix's prompts, in any order and repeated (the
    distinct units of many conditions), across the prefix's batches and in several forwards
    per batch, and gives each row the full forward's logits."""
    from runtime.model import forward

    pick = [3, 0, 3, len(xs) - 1, 1, 3, 0]
    rows = [xs[i] for i in pick]
    some = [Patch(p.location, [p.positions[i] for i in pick], p.values[pick]) for p in patches]
    assert prefix.serves(rows, some) and not prefix.serves([*rows, [5, 6, 7]], [])
    expected = patched_logits(loaded, rows, some)
    torch.testing.assert_close(patched_logits(loaded, rows, some, prefix=prefix), expected, atol=1e-5, rtol=1e-4)
    real = forward.SUFFIX_ROWS_MEMORY
    try:
        forward.SUFFIX_ROWS_MEMORY = 1  # one batch's rows per forward at most
        torch.testing.assert_close(patched_logits(loaded, rows * 3, [Patch(p.location, list(p.positions) * 3, p.values.repeat(3, 1)) for p in some], prefix=prefix),
                                   expected.repeat(3, 1), atol=1e-5, rtol=1e-4)
    finally:
        forward.SUFFIX_ROWS_MEMORY = real


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_gemma_padding_and_suffix_path(tmp_path, family):
    """Gemma-2 and -3 mix sliding-window and global layers; prompts longer than the window (8 and
    6) must still match their unpadded selves, and the suffix path on the clean prefix's cache
    (whose sliding layers keep only the window) its full forward."""
    folder = tiny_families.build(family, tmp_path / family)
    loaded = load_model(Model("g", "path", str(folder), "float32", "cpu", None, 4, Origin("t.sage", 1, 1)))
    g = torch.Generator().manual_seed(0)
    xs = [torch.randint(4, len(tiny_families.VOCAB), (k,), generator=g).tolist() for k in (5, 12, 9, 14, 3)]
    n = len(xs)
    clean = collect(loaded, xs, {}, [])
    for i, x in enumerate(xs):
        with torch.no_grad():
            alone = loaded.model._module(input_ids=torch.tensor([x])).logits[0, -1]
        torch.testing.assert_close(clean.logits[i], alone, atol=1e-5, rtol=1e-4)
    patches = [Patch(Location("head", 1, 2), [len(x) - 1 for x in xs], torch.randn(n, 32, generator=g)),
               Patch(Location("mlp_out", 2), [-1] * n, torch.randn(n, 32, generator=g))]
    fast = patched_logits(loaded, xs, patches, prefix=prefix_cache(loaded, xs))
    torch.testing.assert_close(fast, patched_logits(loaded, xs, patches), atol=1e-5, rtol=1e-4)
    assert_any_rows_are_served(loaded, xs, patches, prefix_cache(loaded, xs, batch_size=2))
    # two tokens recomputed, the earlier one patched: the sliding layers' cached window must
    # still hold what each recomputed token attends to
    early = [Patch(Location("mlp_out", 1), [len(x) - 2 for x in xs], torch.randn(n, 32, generator=g))]
    fast = patched_logits(loaded, xs, early, prefix=prefix_cache(loaded, xs, suffix=2))
    torch.testing.assert_close(fast, patched_logits(loaded, xs, early), atol=1e-5, rtol=1e-4)


def test_bfloat16_on_cpu_runs_eager_attention_and_its_suffix_path_matches_the_full_forward(tmp_path):
    """A bfloat16 model on the CPU is loaded with the matmul-softmax attention (sources.py: the
    CPU flash kernel is slow there); padding and the prefix cache must still give each prompt
    its own logits, to bfloat16's rounding."""
    folder = tiny_families.build("llama", tmp_path / "llama")
    loaded = load_model(Model("b", "path", str(folder), "bfloat16", "cpu", None, 4, Origin("t.sage", 1, 1)))
    assert loaded.model._module.config._attn_implementation == "eager"
    assert load_model(Model("f", "path", str(folder), "float32", "cpu", None, 4, Origin("t.sage", 1, 1))).model._module.config._attn_implementation != "eager"
    xs = prompts(6, seed=7)
    n = len(xs)
    g = torch.Generator().manual_seed(3)
    patches = [Patch(Location("mlp_out", 1), [-2] * n, torch.randn(n, loaded.arch.d_model, generator=g).to(torch.bfloat16))]
    full = patched_logits(loaded, xs, patches)
    prefix = prefix_cache(loaded, xs, batch_size=4, suffix=2, start=1)
    assert prefix.serves(xs, patches)
    torch.testing.assert_close(patched_logits(loaded, xs, patches, prefix=prefix), full, atol=3e-2, rtol=3e-2)
    for i, x in enumerate(xs):  # each prompt alone, unpadded
        torch.testing.assert_close(patched_logits(loaded, [x], [Patch(p.location, [-2], p.values[i : i + 1]) for p in patches]), full[i : i + 1], atol=3e-2, rtol=3e-2)
