"""The pretrained path through a Hugging Face cache in the hub's own layout (tests/hub_cache.py):
releases load through the unmodified `SAE.from_pretrained` and map to the right location, their
configs alone describe them, mismatches are refused before any model pass, `sagec ls saes` marks
what is cached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from runtime.execute.executor import Context
from runtime.execute.progress import Reporter
from runtime.execute.run import run_spec
from runtime.model.sources import model_architecture
from runtime.saes.loading import SaeUnavailable, check_fits, describe_sae, load_sae, same_model, trained_on_warning
from sagec import load_spec
from sagec.cli import main
from sagec.diagnostics import SpecError
from sagec.locations import Location
from sagec.spec import Model, Origin, Sae
from tests import hub_cache as H

AT = Origin("pretrained.sage", 9, 1)

# release, id, the repos it needs, (location, architecture, d_in, d_sae, model name, transform)
RELEASES = [
    ("gpt2-small-res-jb", "blocks.8.hook_resid_pre", "jbloom/GPT2-Small-SAEs-Reformatted",
     (Location("resid_pre", 8), "standard", H.GPT2_WIDTH, H.D_SAE, "gpt2-small", "centre"), "openai-community/gpt2"),
    ("gpt2-small-res-jb", "blocks.11.hook_resid_post", "jbloom/GPT2-Small-SAEs-Reformatted",
     (Location("resid_post", 11), "standard", H.GPT2_WIDTH, H.D_SAE, "gpt2-small", "centre"), "openai-community/gpt2"),
    ("pythia-70m-deduped-res-sm", "blocks.0.hook_resid_pre", "ctigges/pythia-70m-deduped__res-sm_processed",
     (Location("resid_pre", 0), "standard", H.PYTHIA_WIDTH, H.D_SAE // 2, "pythia-70m-deduped", "none"), "EleutherAI/pythia-70m-deduped"),
    ("pythia-70m-deduped-res-sm", "blocks.3.hook_resid_post", "ctigges/pythia-70m-deduped__res-sm_processed",
     (Location("resid_post", 3), "standard", H.PYTHIA_WIDTH, H.D_SAE // 2, "pythia-70m-deduped", "none"), "EleutherAI/pythia-70m-deduped"),
    ("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical", "google/gemma-scope-2b-pt-res",
     (Location("resid_post", 12), "jumprelu", 2304, 16384, "gemma-2-2b", "none"), "google/gemma-2-2b"),
    ("gemma-scope-2-270m-pt-res-all", "layer_5_width_16k_l0_small", "google/gemma-scope-2-270m-pt",
     (Location("resid_post", 5), "jumprelu", H.GEMMA3_WIDTH, H.D_SAE, "google/gemma-3-270m", "none"), None),
]


def sae(release: str, sae_id: str, name: str = "s", accept: tuple[str, ...] = ()) -> Sae:
    return Sae(name, "sae_lens", None, release, sae_id, None, AT, accept)


def hub_model(ref: str, name: str = "m") -> Model:
    return Model(name, "hub", ref, "float32", "cpu", None, None, Origin("pretrained.sage", 2, 1))


@pytest.mark.parametrize(("release", "sae_id", "repo", "expected", "model_repo"), RELEASES, ids=[f"{r[0]}/{r[1]}" for r in RELEASES])
def test_each_release_loads_through_from_pretrained_and_configs_alone_say_the_same(offline_hub, release, sae_id, repo, expected, model_repo):
    offline_hub.require(repo, *([model_repo] if model_repo else []))
    arch = model_architecture(hub_model(model_repo)) if model_repo else None
    spec_sae = sae(release, sae_id)
    loaded = load_sae(spec_sae, arch)
    location, kind, d_in, d_sae, model_name, transform = expected
    assert (loaded.location, loaded.architecture, loaded.d_in, loaded.d_sae, loaded.model_name) == (location, kind, d_in, d_sae, model_name)
    assert loaded.identity == {"source": "sae_lens", "release": release, "id": sae_id, "sae_lens": "6.54.12"}
    if arch is not None:
        assert loaded.preprocessing.transform == transform
        check_fits(loaded, arch, model=hub_model(model_repo))
    described = describe_sae(spec_sae, arch)
    assert (described.location, described.architecture, described.d_in, described.d_sae, described.model_name) == (location, kind, d_in, d_sae, model_name)
    assert described.preprocessing == (loaded.preprocessing if arch is not None else None)
    assert described.tl_options == ((("center_writing_weights", True),) if release == "gpt2-small-res-jb" else ())


def test_the_weights_are_the_fixture_files(offline_hub):
    offline_hub.require("jbloom/GPT2-Small-SAEs-Reformatted")
    loaded = load_sae(sae("gpt2-small-res-jb", "blocks.3.hook_resid_pre"))
    on_disk = load_file(offline_hub.snapshot("jbloom/GPT2-Small-SAEs-Reformatted") / "blocks.3.hook_resid_pre" / "sae_weights.safetensors")
    assert torch.equal(loaded.sae.W_dec.detach(), on_disk["W_dec"]) and torch.equal(loaded.sae.W_enc.detach(), on_disk["W_enc"])


def test_describing_reads_no_weights(offline_hub, tmp_path):
    """A copy of the cache without the weight files still describes every release (the config, or
    for Gemma Scope nothing at all, or for Gemma Scope 2 the safetensors header: here a file that
    is only a header); loading then fails for want of the weights."""
    repos = ["jbloom/GPT2-Small-SAEs-Reformatted", "google/gemma-scope-2b-pt-res", "google/gemma-scope-2-270m-pt"]
    offline_hub.require(*repos)
    for repo in repos:
        shutil.copytree(H.repo_folder(offline_hub.root, repo), H.repo_folder(tmp_path, repo), symlinks=True)
        for link in (H.repo_folder(tmp_path, repo) / "snapshots").rglob("*"):
            if link.name in ("sae_weights.safetensors", "params.npz"):
                link.unlink()
            elif link.name == "params.safetensors":  # keep the header, drop the tensors
                header = link.read_bytes()[: 8 + int.from_bytes(link.read_bytes()[:8], "little")]
                link.unlink()
                link.write_bytes(header)
    with H.use(tmp_path):
        assert describe_sae(sae("gpt2-small-res-jb", "blocks.8.hook_resid_pre")).d_sae == H.D_SAE
        assert describe_sae(sae("gemma-scope-2b-pt-res-canonical", "layer_13/width_16k/canonical")).location == Location("resid_post", 13)
        assert describe_sae(sae("gemma-scope-2-270m-pt-res-all", "layer_7_width_16k_l0_small")).d_in == H.GEMMA3_WIDTH
        with pytest.raises(SpecError, match="not in the local Hugging Face cache"):
            load_sae(sae("gpt2-small-res-jb", "blocks.8.hook_resid_pre"))


def test_sae_lens_alone_cannot_read_gemma_scope_2_shapes_offline(offline_hub):
    """Why runtime/saes/loading.py reads cached safetensors headers itself: sae_lens 6.54 asks the
    hub for them with an HTTP range request even when the file is cached. (When this fails,
    sae_lens has fixed it and `cached_safetensors_headers` can go.)"""
    from sae_lens import SAE

    offline_hub.require("google/gemma-scope-2-270m-pt")
    with pytest.raises(Exception) as e:
        SAE.from_pretrained("gemma-scope-2-270m-pt-res-all", "layer_5_width_16k_l0_small")
    assert "huggingface.co" in str(e.value)


def test_an_uncached_release_is_unavailable_not_wrong(tmp_path):
    with H.use(tmp_path), pytest.raises(SaeUnavailable, match="valid but not in the local Hugging Face cache") as e:
        describe_sae(sae("gpt2-small-res-jb", "blocks.8.hook_resid_pre"))
    assert "sagec fetch" in e.value.diagnostics[0].hint


def test_model_names_resolve_through_transformer_lens_aliases():
    assert same_model("gpt2-small", hub_model("openai-community/gpt2"))
    assert same_model("pythia-70m-deduped", hub_model("EleutherAI/pythia-70m-deduped"))
    assert same_model("gemma-2-2b", hub_model("google/gemma-2-2b"))
    assert same_model("google/gemma-3-270m", hub_model("google/gemma-3-270m"))
    assert not same_model("gemma-2-2b", hub_model("openai-community/gpt2"))
    assert not same_model("pythia-70m-deduped", hub_model("EleutherAI/pythia-160m-deduped"))


# --- mismatches, refused before any model pass --------------------------------------------------

MISMATCH = """\
model gpt2 {
  source hub "openai-community/gpt2"
}

model pythia {
  source hub "EleutherAI/pythia-70m-deduped"
}

include "paper/tasks/ioi.sage"

sae wrong {
  source sae_lens "RELEASE" "ID"
}

eval e {
  model MODEL
  task ioi
  locate { method attribution  components heads  positions end  select top 2 }
  ground_truth { method mean  validate sufficiency }
  saes wrong
  score sufficiency
  report "out" as json
}
"""


def mismatch_spec(tmp_path: Path, release: str, sae_id: str, model: str) -> Path:
    shutil.copytree(Path(__file__).resolve().parent.parent / "specs" / "paper" / "tasks", tmp_path / "paper" / "tasks", dirs_exist_ok=True)
    path = tmp_path / "mismatch.sage"
    path.write_text(MISMATCH.replace("RELEASE", release).replace("ID", sae_id).replace("MODEL", model))
    return path


def refused(path: Path, tmp_path: Path, monkeypatch) -> str:
    """`sagec run`'s refusal, after checking that it came before any model pass; also `sagec plan`
    and `sagec check --deep` refuse the same way. Returns the message."""
    passes: list[str] = []
    monkeypatch.setattr(Context, "count", lambda self, what, n=1: passes.append(what))
    with pytest.raises(SpecError) as e:
        run_spec(load_spec(str(path)), cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", reporter=Reporter("quiet"))
    assert passes == []
    assert not list((tmp_path / "cache").rglob("manifest.json"))  # no node finished either
    (d,) = e.value.diagnostics
    assert (d.file, d.line) == (str(path), 11)  # the sae block
    for args in (["plan", str(path), "--cache-dir", str(tmp_path / "cache")], ["check", "--deep", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and d.message in result.output, result.output
    return d.message


def test_a_width_that_does_not_fit_names_both_widths_and_the_model_it_was_trained_on(offline_hub, tmp_path, monkeypatch):
    offline_hub.require("openai-community/gpt2", "ctigges/pythia-70m-deduped__res-sm_processed")
    message = refused(mismatch_spec(tmp_path, "pythia-70m-deduped-res-sm", "blocks.3.hook_resid_post", "gpt2"), tmp_path, monkeypatch)
    assert f"has d_in {H.PYTHIA_WIDTH} at resid_post 3" in message
    assert f"d_model {H.GPT2_WIDTH}) has width {H.GPT2_WIDTH} there" in message
    assert "model gpt2 (hub 'openai-community/gpt2' at " in message and "trained on pythia-70m-deduped" in message


def test_a_hook_the_model_lacks(offline_hub, tmp_path, monkeypatch):
    offline_hub.require("EleutherAI/pythia-70m-deduped", "jbloom/GPT2-Small-SAEs-Reformatted")
    message = refused(mismatch_spec(tmp_path, "gpt2-small-res-jb", "blocks.8.hook_resid_pre", "pythia"), tmp_path, monkeypatch)
    assert f"reads resid_pre 8 (hook 'blocks.8.hook_resid_pre'), but model pythia" in message and f"has {H.PYTHIA_LAYERS} layers" in message
    assert "trained on gpt2-small" in message


def test_a_hook_sagec_has_no_location_for(offline_hub, tmp_path, monkeypatch):
    """Gemma Scope's embedding SAE reads `hook_embed`, which no location names; its config needs no
    file at all (sae_lens derives it from the path), so it is refused with nothing downloaded."""
    offline_hub.require("openai-community/gpt2")
    message = refused(mismatch_spec(tmp_path, "gemma-scope-2b-pt-res", "embedding/width_4k/average_l0_6", "gpt2"), tmp_path, monkeypatch)
    assert "cannot tell where it reads" in message and "'hook_embed'" in message


def test_only_the_name_differing_is_a_warning(offline_hub, tmp_path):
    """A Gemma Scope 2 SAE is as wide as the Pythia fixture: it is evaluated, with a warning."""
    offline_hub.require("EleutherAI/pythia-70m-deduped", "google/gemma-scope-2-270m-pt")
    model = hub_model("EleutherAI/pythia-70m-deduped", "pythia")
    arch = model_architecture(model)
    described = describe_sae(sae("gemma-scope-2-270m-pt-res-all", "layer_4_width_16k_l0_small"), arch)
    check_fits(described, arch, model=model)
    warning = trained_on_warning(described, model)
    assert warning is not None and "trained on google/gemma-3-270m" in warning and "'EleutherAI/pythia-70m-deduped'" in warning
    path = mismatch_spec(tmp_path, "gemma-scope-2-270m-pt-res-all", "layer_4_width_16k_l0_small", "pythia")
    result = CliRunner().invoke(main, ["plan", str(path), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0 and "warning:" in result.output and "trained on google/gemma-3-270m" in result.output
    offline_hub.require("ctigges/pythia-70m-deduped__res-sm_processed")
    assert trained_on_warning(describe_sae(sae("pythia-70m-deduped-res-sm", "blocks.1.hook_resid_post"), arch), model) is None


def test_plan_notes_what_it_cannot_check_offline(offline_hub, tmp_path):
    """Nothing of this spec is cached: the plan is still shown, with a note per SAE; the run
    refuses before any model pass."""
    path = mismatch_spec(tmp_path, "gpt2-small-res-jb", "blocks.8.hook_resid_pre", "gpt2")
    with H.use(tmp_path / "empty-hub"):
        result = CliRunner().invoke(main, ["plan", str(path), "--cache-dir", str(tmp_path / "cache")])
        assert result.exit_code == 0, result.output
        assert "not in the local Hugging Face cache" in result.output and "not checked against the model" in result.output
        with pytest.raises(SpecError, match="not in the local Hugging Face cache"):
            run_spec(load_spec(str(path)), cache_dir=tmp_path / "cache", out_dir=tmp_path / "out", reporter=Reporter("quiet"))


def test_ls_saes_marks_cached_releases(offline_hub):
    offline_hub.require("google/gemma-scope-2b-pt-res")
    result = CliRunner().invoke(main, ["ls", "saes", "--json", "gemma-scope-2b-pt-res-canonical"])
    rows = {r["id"]: r["status"] for r in json.loads(result.output)}
    cached = {f"layer_{l}/width_16k/canonical" for l in H.GEMMA_SCOPE_LAYERS}
    assert {i for i, s in rows.items() if s == "cached"} == cached and set(rows.values()) == {"cached", "download"}
    table = CliRunner().invoke(main, ["ls", "saes", "layer_12/width_16k/canonical"]).output
    assert any(line.split()[-1] == "cached" and "gemma-scope-2b-pt-res-canonical" in line for line in table.splitlines())


def test_zoo_saes_are_checked_too_and_lazy_ones_only_once_built(tmp_path):
    from runtime.execute.fits import check_saes

    text = MISMATCH.replace('source sae_lens "RELEASE" "ID"', 'source zoo "tiny-ioi/topk-k8/resid_post.1"').replace("MODEL", "gpt2")
    text = text.replace('source hub "openai-community/gpt2"', 'source zoo "tiny-tasks"')
    shutil.copytree(Path(__file__).resolve().parent.parent / "specs" / "paper" / "tasks", tmp_path / "paper" / "tasks")
    (tmp_path / "zoo.sage").write_text(text)
    with pytest.raises(SpecError, match="has d_in 64 at resid_post 1 .* d_model 128"):
        check_saes(load_spec(str(tmp_path / "zoo.sage")), require=False)
    lazy = text.replace("tiny-ioi/topk-k8/resid_post.1", "smollm2-135m/weak/resid_post.3")
    (tmp_path / "lazy.sage").write_text(lazy)
    from runtime.zoo.saes import entry

    if not entry("smollm2-135m/weak/resid_post.3").built:  # nothing to say before it exists
        assert check_saes(load_spec(str(tmp_path / "lazy.sage")), require=False) == []
