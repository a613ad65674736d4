"""The three reconstruction variants of METHOD.md section 4 through the whole score pass.

SAEs that lose nothing (W_enc = [I, -I], W_dec = [I; -I]: relu(x) - relu(-x) = x) make the
right answers known: through `residual` and `residual_pair` every served cross-section is
reconstructed exactly, so explained variance, sufficiency, logit difference recovered and
necessity are all 1. Which sites each variant serves, and with which partner, follows from
where the SAEs read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from runtime.execute.progress import Reporter
from runtime.execute.run import run_spec
from runtime.passes.score import before_points, pair_before, served
from sagec import load_spec
from sagec.locations import CrossSection, Location
from tests.tiny_pipeline import make_project

# pair[1] is listed twice in the eval, so its results carry the reconstruction in their names.
PAIRED = ("pair[0]", "pair[1] (residual_pair)", "pair[2]")
HOOKS = {"lossless_pre": "blocks.0.hook_resid_pre", **{f"lossless{l}": f"blocks.{l}.hook_resid_post" for l in range(3)}}


def lossless_sae(folder: Path, hook: str, d: int = 32) -> None:
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=d, d_sae=2 * d)
    cfg.metadata.hook_name = hook
    sae = StandardSAE(cfg)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save_model(str(folder))


EVALS = """
sae pair[l] for l in 0..2 {
  source path "lossless{{l}}"
}
sae pre {
  source path "lossless_pre"
}
eval paired {
  model tiny
  task ioi
  locate { method attribution  components heads, mlp  positions end  select top 6 per family }
  saes pair[*], pre reconstruct residual_pair
  saes pair[1] reconstruct residual
  report "runs/paired" as json
}
eval alone {
  model tiny
  task ioi
  locate { method attribution  components heads, mlp  positions end  select top 6 per family }
  saes pair[2] reconstruct residual_pair
  report "runs/alone" as json
}
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """One run of the tiny project's model and task, scoring lossless SAEs at resid_pre 0 and
    resid_post 0..2 with residual_pair (and one of them with residual too), and, in a second
    eval, one residual_pair SAE with no partner."""
    folder = tmp_path_factory.mktemp("variants")
    spec = make_project(folder)
    for name, hook in HOOKS.items():
        lossless_sae(folder / name, hook)
    text = spec.read_text()
    spec.write_text(text[: text.index("sae res[l]")] + EVALS)
    summary = run_spec(load_spec(str(spec)), cache_dir=folder / "cache", out_dir=folder / "out", reporter=Reporter("quiet"))
    return {name: json.loads(path.read_text()) for name, path in summary.results.items()}


def value(entry: dict, *path: str) -> float:
    for p in path:
        entry = entry[p]
    return entry["value"]


def test_lossless_pairs_reconstruct_every_served_site_exactly(results):
    saes = results["paired"]["saes"]
    located = results["paired"]["ground_truth"]["sites"]
    paired = {s for name in PAIRED for s in saes[name]["sites"]}
    sublayers = {s for s in located if not s.startswith("resid")}
    assert sublayers and sublayers <= paired  # every located sublayer has an SAE on each side
    for name in PAIRED:
        entry = saes[name]
        if not entry["sites"]:
            continue
        assert set(entry["variant_per_site"].values()) <= {"residual_pair", "direct"}
        scores = entry["scores"]
        for metric in ("sufficiency", "logit_diff_recovered", "necessity"):
            assert value(scores, metric) == pytest.approx(1.0, abs=1e-4), (name, metric)
        for site in entry["sites"]:
            assert value(scores["per_site"][site], "explained_variance") == pytest.approx(1.0, abs=1e-5), (name, site)


def test_each_pair_is_the_sae_on_the_stream_before_the_sublayer(results):
    saes = results["paired"]["saes"]
    for name in PAIRED:
        layer = int(name[5])
        for site, partner in saes[name].get("pair_per_site", {}).items():
            assert Location.parse(site.split("@")[0]).layer == layer
            expected = "pre" if layer == 0 else f"pair[{layer - 1}]"
            assert partner["sae"] == expected, (name, site, partner)


def test_one_sae_under_two_reconstructions_is_scored_twice(results):
    saes = results["paired"]["saes"]
    assert "pair[1] (residual_pair)" in saes and "pair[1] (residual)" in saes
    a, b = saes["pair[1] (residual_pair)"], saes["pair[1] (residual)"]
    assert [s["name"] for s in results["paired"]["spec"]["resolved"]["saes"]].count("pair[1]") == 1
    assert a["sites"] == b["sites"]
    for site in b["sites"]:
        assert b["variant_per_site"][site] in ("residual", "direct")
        assert value(b["scores"]["per_site"][site], "explained_variance") == pytest.approx(1.0, abs=1e-5)


def test_an_sae_with_no_partner_says_why_it_serves_nothing(results):
    entry = results["alone"]["saes"]["pair[2]"]
    assert not any(s.startswith("resid") for s in results["alone"]["ground_truth"]["sites"])  # nothing to serve directly
    assert entry["sites"] == [] and entry["scores"] is None
    assert "residual_pair needs a second SAE" in entry["reason"] and "(they read at none)" in entry["reason"]


def site(text: str) -> CrossSection:
    location, position = text.split("@")
    return CrossSection(Location.parse(location), position)


@pytest.mark.parametrize(
    ("sae", "target", "partners", "expected"),
    [
        ("resid_post 2", "head 2.1@end", ["resid_post 1"], "residual_pair"),
        ("resid_post 2", "head 2.1@end", ["resid_pre 2"], "residual_pair"),  # the same tensor
        ("resid_post 2", "mlp_out 2@end", ["resid_mid 2"], "residual_pair"),
        ("resid_post 2", "mlp_out 2@end", [], None),
        ("resid_post 2", "attn_out 2@end", ["resid_mid 2"], None),  # attention writes before resid_mid
        ("resid_mid 2", "attn_out 2@end", ["resid_post 1"], "residual_pair"),
        ("resid_mid 2", "mlp_out 2@end", ["resid_post 1"], None),
        ("resid_post 2", "head 1.0@end", ["resid_post 1"], None),
        ("resid_post 2", "resid_pre 3@end", [], "direct"),
    ],
)
def test_which_sites_a_pair_serves(sae, target, partners, expected):
    assert served(Location.parse(sae), "residual_pair", site(target), [Location.parse(p) for p in partners]) == expected


def test_the_mlp_pairs_with_the_nearest_stream_before_it():
    after = Location.parse("resid_post 2")
    assert before_points(Location.parse("mlp_out 2"), after) == (Location("resid_mid", 2), Location("resid_pre", 2))
    both = {Location("resid_mid", 2), Location("resid_post", 1)}
    assert pair_before(Location.parse("mlp_out 2"), after, both) == Location("resid_mid", 2)
    assert pair_before(Location.parse("mlp_out 2"), after, {Location("resid_post", 1)}) == Location("resid_pre", 2)
    assert pair_before(Location.parse("head 2.0"), after, both) == Location("resid_pre", 2)
    assert pair_before(Location.parse("head 2.0"), after, {Location("resid_mid", 2)}) is None
