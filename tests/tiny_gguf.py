"""A tiny Llama written as a .gguf (F32), so the gguf source is tested in a second, not a minute.

transformers cannot write GGUF; the `gguf` package can. We write what llama.cpp's converter
writes for a Llama with a byte-level BPE tokenizer (the layout SmolLM2's file uses): the llama.*
shape keys, tokenizer.ggml.* with byte-level tokens and merges, and the weights under GGUF names
with q/k rows permuted the way llama.cpp does (transformers' loader undoes that permutation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gguf import GGUFWriter
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode

WORDS = ("When", "Mary", "John", "went", "store", "gave", "drink")


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vocab() -> tuple[list[str], list[str]]:
    """Byte-level tokens (all 256 bytes) plus merges that build " When", " Mary", ... whole."""
    tokens = ["<|endoftext|>", *bytes_to_unicode().values()]
    merges = []
    for word in WORDS:
        pieces = ["Ġ", *word]
        left = pieces[0]
        for ch in pieces[1:]:
            merges.append(f"{left} {ch}")
            left = left + ch
            if left not in tokens:
                tokens.append(left)
    return tokens, merges


def write(path: Path, seed: int = 0) -> LlamaForCausalLM:
    """Write a random tiny Llama to `path` as GGUF; return the model it encodes."""
    tokens, merges = _vocab()
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    w = GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", cfg.num_hidden_layers)
    w.add_uint32("llama.context_length", cfg.max_position_embeddings)
    w.add_uint32("llama.embedding_length", cfg.hidden_size)
    w.add_uint32("llama.feed_forward_length", cfg.intermediate_size)
    w.add_uint32("llama.attention.head_count", cfg.num_attention_heads)
    w.add_uint32("llama.attention.head_count_kv", cfg.num_key_value_heads)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
    w.add_uint32("llama.vocab_size", cfg.vocab_size)
    w.add_uint32("llama.rope.dimension_count", cfg.hidden_size // cfg.num_attention_heads)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "default")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", [3] + [1] * (len(tokens) - 1))
    w.add_array("tokenizer.ggml.merges", merges)
    for key in ("bos", "eos", "unknown", "padding"):
        w.add_uint32(f"tokenizer.ggml.{key}_token_id", 0)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
                 "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy().copy()
        if name in names:
            gguf_name = names[name]
        else:
            _, _, layer, *rest = name.split(".")
            gguf_name = f"blk.{layer}.{per_layer['.'.join(rest[:-1])]}.weight"
            if rest[-2] == "q_proj":
                array = _permute(array, cfg.num_attention_heads)
            elif rest[-2] == "k_proj":
                array = _permute(array, cfg.num_key_value_heads)
        w.add_tensor(gguf_name, np.ascontiguousarray(array))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model
