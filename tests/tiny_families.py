"""Tiny random models of every supported family, saved like a user's local model folder.

Built from configs alone (no download) with a word-level tokenizer, as shared/STACK.md section 2
shows. A larger `initializer_range` than the HF default keeps activations far from zero, so a
patch that should move the output moves it visibly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

WORDS = ("When Mary and John went to the store , gave a drink to Alice Bob park Tom Sarah book "
         "ball Then Afterwards had lot of fun at school . is was in city").split()
VOCAB = ["<pad>", "<unk>", "<bos>", "<eos>", *dict.fromkeys(WORDS)]
SPECIAL = {"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}

# family name -> (config class, model class, config kwargs)
_SIZES = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": len(VOCAB),
          "max_position_embeddings": 64, "initializer_range": 0.3, **SPECIAL}
FAMILIES = {
    "gpt2": (GPT2Config, GPT2LMHeadModel, {"n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 64,
                                            "vocab_size": len(VOCAB), "initializer_range": 0.3, **SPECIAL}),
    "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM, {**_SIZES, "intermediate_size": 64, "use_parallel_residual": True}),
    "gpt_neox_sequential": (GPTNeoXConfig, GPTNeoXForCausalLM,
                            {**_SIZES, "intermediate_size": 64, "use_parallel_residual": False}),
    "llama": (LlamaConfig, LlamaForCausalLM, {**_SIZES, "intermediate_size": 64, "num_key_value_heads": 2}),
    # head_dim 16 != 32 / 4: Gemma-2's o_proj input is n_heads * head_dim wide, not d_model.
    "gemma2": (Gemma2Config, Gemma2ForCausalLM, {**_SIZES, "intermediate_size": 64, "num_key_value_heads": 2,
                                                  "head_dim": 16, "sliding_window": 8, "query_pre_attn_scalar": 16}),
    # Gemma-3-270M's peculiarities at toy size: one KV head for four query heads, sliding-window
    # layers (window 6, shorter than the test prompts) before a global one, q/k norms, the
    # embedding scaled by sqrt(d_model).
    "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM, {**_SIZES, "intermediate_size": 64, "num_key_value_heads": 1,
                                                      "head_dim": 16, "sliding_window": 6, "query_pre_attn_scalar": 16,
                                                      "layer_types": ["sliding_attention", "sliding_attention", "full_attention"]}),
}


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="left", model_max_length=64)


def build(family: str, folder: Path, seed: int = 0) -> Path:
    """Save a random model of `family` and its tokenizer into `folder`; return the folder."""
    config_cls, model_cls, kwargs = FAMILIES[family]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**kwargs)).eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so their placement matters
        for name, p in model.named_parameters():
            if "norm" in name or "ln" in name or name.endswith(".bias"):
                p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder
