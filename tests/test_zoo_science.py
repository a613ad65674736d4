"""The method on a model that really solves the task: the zoo's tiny-ioi (runtime/zoo).

- Attribution patching, the first-order estimate locate ranks by, agrees with real activation
  patching on the top candidates of the spec's own counterfactual.
- The residual reconstruction of a head's output through a residual-stream SAE (METHOD.md
  section 4) matches what an SAE trained on that very head reconstructs, far better than the
  same reconstruction through an untrained SAE of the same shape.
"""

import pytest
import torch

from runtime.execute.executor import Context
from runtime.execute.progress import Reporter
from runtime.model.sources import load_model
from runtime.passes import locate
from runtime.saes.loading import load_sae
from runtime.sage import reconstruct
from runtime.sage.selection import spearman
from runtime.task.prompts import build_prompt_set
from sagec import load_spec
from sagec.locations import CrossSection, Location

SPEC = "specs/ioi-tiny.sage"


@pytest.fixture(scope="module")
def tiny():
    spec = load_spec(SPEC)
    loaded = load_model(spec.model("tiny"))
    return spec, loaded, build_prompt_set(spec.task("ioi"), loaded.tokenizer)


def test_attribution_agrees_with_real_patching_on_the_top_candidates(tiny):
    spec, loaded, ps = tiny
    ctx = Context(None, Reporter("quiet"))
    locations = locate.candidates(("head", "mlp_out"), None, loaded.arch)
    rows = list(ps.indices("train"))[:128]
    scores = locate.attribution(ctx, loaded, ps, rows, locations, ["end"])[0]["counterfactual"]
    top = sorted(range(len(locations)), key=lambda i: -abs(float(scores[i])))[:5]
    sites = [CrossSection(locations[i], "end") for i in top]
    effects = locate.patch_effects(ctx, loaded, ps, rows[:64], sites, {s: "counterfactual" for s in sites})
    assert spearman([float(scores[i]) for i in top], [effects[s] for s in sites]) >= 0.8


def test_residual_reconstruction_of_a_head_tracks_a_direct_sae(tiny, tmp_path):
    from sae_lens import SAE

    from runtime.model import forward
    from runtime.zoo.sae_training import KINDS, Budget, train_sae

    spec, loaded, ps = tiny
    head, stream = Location("head", 2, 1), Location("resid_post", 2)
    prompts = ps.prompts
    got = forward.collect(loaded, [p.ids for p in prompts], {"end": [p.positions["end"] for p in prompts]}, [head, stream])
    c, r_after = got.activations[(head, "end")], got.activations[(stream, "end")]
    train, test = slice(0, 3 * len(c) // 4), slice(3 * len(c) // 4, None)
    train_sae(c[train], KINDS["topk-k8"], Budget(steps=300, batch_size=128), tmp_path / "direct", "head 2.1", "tiny-ioi", log=lambda *_: None)
    direct = SAE.load_from_disk(str(tmp_path / "direct"))
    residual_sae = load_sae(spec.sae("topk32[2]"), loaded.arch).sae
    untrained = type(residual_sae)(residual_sae.cfg)  # same class and shape, weights drawn at random
    with torch.no_grad():
        torch.manual_seed(0)
        for p in untrained.parameters():
            p.copy_(torch.randn_like(p) * p.std().clamp_min(0.1))
        target = reconstruct.direct(direct, c[test])[0]
        ours = reconstruct.residual(residual_sae, r_after[test], c[test])[0]
        baseline = reconstruct.residual(untrained, r_after[test], c[test])[0]
    cosine = torch.nn.functional.cosine_similarity
    ours_cos, baseline_cos = cosine(ours, target).mean(), cosine(baseline, target).mean()
    assert ours_cos > baseline_cos + 0.2, (float(ours_cos), float(baseline_cos))
    assert reconstruct.explained_variance(c[test], ours) > reconstruct.explained_variance(c[test], baseline)
