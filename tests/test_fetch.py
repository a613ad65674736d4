"""`sagec fetch SPEC`: offline it lists exactly what the Hugging Face cache lacks (exit 1) or says
nothing does (exit 0); online it downloads everything into the cache, here from a hub on
localhost serving the fixture repositories (tests/hub_server.py), after which the spec's models and
SAEs load with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from runtime.model.sources import load_tokenizer, model_config
from runtime.saes.loading import describe_sae, load_sae
from sagec import load_spec
from sagec.cli import main
from tests import hub_cache as H
from tests.hub_server import serving

PAPER = Path(__file__).resolve().parent.parent / "specs" / "paper"
PYTHIA = str(PAPER / "ioi-pythia-70m.sage")


def fetch(spec: str):
    return CliRunner().invoke(main, ["fetch", spec])


def listed(output: str) -> set[str]:
    return {line.strip() for line in output.splitlines() if line.startswith("    ")}


def test_nothing_missing_from_the_fixture_cache(offline_hub):
    offline_hub.require(*H.PAPER["ioi-pythia-70m"])
    result = fetch(PYTHIA)
    assert result.exit_code == 0, result.output
    assert "everything it needs from the hub is already in the Hugging Face cache" in result.output and "7 items" in result.output


def test_an_empty_cache_lists_exactly_what_is_missing(tmp_path):
    with H.use(tmp_path / "empty"):
        result = fetch(PYTHIA)
    assert result.exit_code == 1
    expected = {"EleutherAI/pythia-70m-deduped: the whole repository (config.json, tokenizer files, *.safetensors weights)"}
    expected |= {f"ctigges/pythia-70m-deduped__res-sm_processed: {l}-res-sm/{f}" for l in range(6) for f in ("cfg.json", "sae_weights.safetensors")}
    assert listed(result.output) == expected
    assert "res[3] (sae_lens 'pythia-70m-deduped-res-sm' 'blocks.3.hook_resid_post'), " in result.output and "ioi-pythia-70m.sage:19:1" in result.output
    assert "HF_HUB_OFFLINE=1" in result.output


def test_a_partial_cache_lists_the_files_it_lacks(offline_hub, tmp_path):
    offline_hub.require(*H.PAPER["ioi-pythia-70m"])
    for repo in H.PAPER["ioi-pythia-70m"]:
        shutil.copytree(H.repo_folder(offline_hub.root, repo), H.repo_folder(tmp_path, repo), symlinks=True)
    snapshot = tmp_path / H.repo_folder(tmp_path, "ctigges/pythia-70m-deduped__res-sm_processed").name / "snapshots" / H.commit_of("ctigges/pythia-70m-deduped__res-sm_processed")
    (snapshot / "4-res-sm" / "sae_weights.safetensors").unlink()
    model = H.repo_folder(tmp_path, "EleutherAI/pythia-70m-deduped") / "snapshots" / H.commit_of("EleutherAI/pythia-70m-deduped")
    (model / "tokenizer.json").unlink()
    with H.use(tmp_path):
        result = fetch(PYTHIA)
    assert result.exit_code == 1
    assert listed(result.output) == {"ctigges/pythia-70m-deduped__res-sm_processed: 4-res-sm/sae_weights.safetensors",
                                     "EleutherAI/pythia-70m-deduped: tokenizer files (tokenizer.json or tokenizer.model or vocab.json or tiktoken.model)"}


def test_online_it_downloads_everything_and_the_spec_then_loads_offline(offline_hub, tmp_path):
    offline_hub.require(*H.PAPER["ioi-gemma-3-270m"])
    spec_file = str(PAPER / "ioi-gemma-3-270m.sage")
    fetched = tmp_path / "fetched"
    with serving(offline_hub.root) as (endpoint, requests), H.use(fetched, offline=False, endpoint=endpoint):
        result = fetch(spec_file)
        assert result.exit_code == 0, result.output
    assert "[19/19] SAE scope[17]" in result.output and "fetched in the Hugging Face cache" in result.output
    assert any(r.startswith("GET /api/models/google/gemma-3-270m/revision/main") for r in requests)
    assert any("resid_post_all/layer_17_width_16k_l0_small/params.safetensors" in r for r in requests)
    with serving(offline_hub.root) as (endpoint, requests), H.use(tmp_path / "elsewhere", offline=False, endpoint=endpoint):
        # online and uncached, sae_lens reads Gemma Scope 2's shapes with its own range request
        assert describe_sae(load_spec(spec_file).sae("scope[2]")).d_in == H.GEMMA3_WIDTH
        assert "GET /google/gemma-scope-2-270m-pt/resolve/main/resid_post_all/layer_2_width_16k_l0_small/params.safetensors" in requests
    with H.use(fetched):
        assert fetch(spec_file).exit_code == 0
        spec = load_spec(spec_file)
        model = spec.model("gemma3")
        assert load_tokenizer(model)("When Mary").input_ids == [H.STAND_IN_VOCAB.index("When"), H.STAND_IN_VOCAB.index("Mary")]
        assert model_config(model).num_hidden_layers == H.GEMMA3_LAYERS
        loaded = load_sae(spec.sae("scope[9]"))  # Gemma Scope 2's shapes from the fetched header
        assert (str(loaded.location), loaded.d_in) == ("resid_post 9", H.GEMMA3_WIDTH)
        # huggingface_hub kept the repository's listing: a lost file is named exactly
        snapshot = H.repo_folder(fetched, "google/gemma-3-270m") / "snapshots" / H.commit_of("google/gemma-3-270m")
        (snapshot / "generation_config.json").unlink()
        result = fetch(spec_file)
        assert result.exit_code == 1 and listed(result.output) == {"google/gemma-3-270m: generation_config.json"}
