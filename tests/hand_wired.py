"""A GPT-2 wired by hand whose attention softmax saturates: first-order attribution misses an
effect that activation patching sees, and integrated gradients must recover it.

One layer, one head, MLP off. Every token embedding carries a large anchor (+A, -A on two
dimensions) that dominates its norm, so each LayerNorm (gain A*sqrt(2/d)) is the identity up to
a part in 1e4 on the small features; features sit on pairs of dimensions (+v, -v) so every vector
has zero mean and the norms subtract nothing. Features: the identity of each name and a flag.

The head at every position queries the anchor and keys on the flag, score = SCORE * flag, and
copies the names it attends to into the stream with gain GAIN. The prompt `Mary* John to` (Mary
flagged) has the final position attend to Mary with probability about 0.998, so the metric
logit(Mary) - logit(John) is about +90. Its twin `Mary John* to` flags John instead. Patching
the embedding of the first token (resid_pre 0) with the twin's removes Mary's flag: attention
becomes uniform over the three tokens and the metric drops to 0, an effect of about -90. The
gradient at the clean point sits on the saturated side of the softmax, so attribution patching
says about -2; the straight path from the twin's embedding to the clean one crosses the
softmax's steep region, which the integrated gradient sees.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

VOCAB = ["<pad>", "<unk>", "Mary", "John", "MaryX", "JohnX", "to", "and"]
ANCHOR = 1000.0
SCORE = 6.8  # attention score of a flagged token; unflagged tokens score 0
D = 8  # anchor pair, Mary pair, John pair, flag pair
MARY, JOHN, FLAG = 2, 4, 6  # first dimension of each feature pair


def _p_flagged(score: float = SCORE, others: int = 2) -> float:
    return math.exp(score) / (math.exp(score) + others)


# The gain that makes the clean metric 2 * GAIN * (p0 - p1) = 90.
GAIN = 90.0 / (2 * (_p_flagged() - 1 / (math.exp(SCORE) + 2)))


def _feature(dim: int, value: float = 1.0) -> torch.Tensor:
    v = torch.zeros(D)
    v[dim], v[dim + 1] = value, -value
    return v


def embeddings() -> torch.Tensor:
    anchor = torch.zeros(D)
    anchor[0], anchor[1] = ANCHOR, -ANCHOR
    rows = {
        "Mary": _feature(MARY), "John": _feature(JOHN),
        "MaryX": _feature(MARY) + _feature(FLAG), "JohnX": _feature(JOHN) + _feature(FLAG),
    }
    return torch.stack([anchor + rows.get(w, torch.zeros(D)) for w in VOCAB])


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<pad>",
                                   eos_token="<pad>", padding_side="left", model_max_length=16)


def build(folder: Path) -> Path:
    """Save the model and its tokenizer into `folder`; return the folder."""
    cfg = GPT2Config(n_embd=D, n_layer=1, n_head=1, n_positions=16, vocab_size=len(VOCAB), bos_token_id=0,
                     eos_token_id=0, pad_token_id=0, layer_norm_epsilon=1e-5, tie_word_embeddings=False)
    model = GPT2LMHeadModel(cfg).eval()
    gain = ANCHOR * math.sqrt(2 / D)  # the anchor's standard deviation: LayerNorm then changes nothing
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.wte.weight.copy_(embeddings())
        # The unembedding reads the features only: with the anchor in it every logit would carry
        # 2 * ANCHOR^2, and the logit difference would lose its precision to float32 rounding.
        model.lm_head.weight.copy_(embeddings() - embeddings()[0])
        for ln in (model.transformer.h[0].ln_1, model.transformer.h[0].ln_2, model.transformer.ln_f):
            ln.weight.fill_(gain)
        attn = model.transformer.h[0].attn
        w = torch.zeros(D, 3 * D)  # Conv1D: [q | k | v] = x @ w
        w[0, 0] = SCORE * math.sqrt(D) / ANCHOR  # q: the anchor, scaled so q.k / sqrt(d) = SCORE * flag
        w[FLAG, D] = 1.0  # k: the flag
        for dim in (MARY, MARY + 1, JOHN, JOHN + 1):  # v: the names
            w[dim, 2 * D + dim] = 1.0
        attn.c_attn.weight.copy_(w)
        attn.c_proj.weight.copy_(torch.eye(D) * GAIN)
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder
