"""The text pass (METHOD.md section 8): one SAE spliced in at its own hook over the corpus.

Three full forwards per batch of corpus windows, with the logits at every token: the model as it
is, with the SAE's reconstruction in place of the activation at its hook (every token but each
window's first), and with zeros there; from them ce_loss_score and kl_div_score, and from the
SAE's inputs explained variance, L0 and dead fraction on the same tokens
(runtime/sage/loss_recovered.py has the definitions, SAELens's and SAEBench core's).

Why a pass of its own, `text[EVAL/SAE]`, and not part of the score node: it reads neither the
task's cross-sections nor the trace, only the corpus (runtime/passes/corpus.py) and the SAE, so
the score node's key leaves the text metrics out (sagec/lower.py) and listing
ce_loss_score / kl_div_score in `score` recomputes no other number; it is one node per SAE, not
per reconstruction variant, since the SAE is spliced in where it reads whatever the eval's
variant; and its cost (the corpus's forwards) is paid only when the metrics are asked for.

A transcoder is spliced in at mlp_out L from the MLP's input. An SAE this cannot splice in (a
head's output or z, every head's z at once, a transcoder other than mlp_in L -> mlp_out L) gets
every text metric null, with the reason.
"""

from __future__ import annotations

import torch

from runtime.model.forward import pad_left
from runtime.model.splice import SPLICEABLE, recorded_below, skipped_below, spliced
from runtime.passes import common
from runtime.passes.corpus import windows_of
from runtime.saes import preprocessing
from runtime.sage.loss_recovered import RAW, SCORES, Tally, log_softmax_, token_ce, token_kl
from runtime.sage.metrics import described
from runtime.store.cache import Artifact
from sagec.locations import Location
from sagec.plan import Node, TextParams

# One batch's logits (tokens x vocabulary, float32) stay under this; the clean log-probabilities
# are held while the other two forwards run, so a batch holds about twice it.
LOGITS_BUDGET = 1 << 27
MAX_ROWS = 64
# Tokens reconstructed at once. The latents come back sparse (runtime/sage/sparse.py bounds what
# its encoder holds, a wide SAE's a block of latents at a time), so this is not a memory bound.
TOKEN_CHUNK = 1 << 10


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: TextParams = node.params
    (corpus_id,) = node.inputs
    corpus = inputs[corpus_id]
    loaded = common.loaded_model(ctx, params.model)
    from runtime.saes.loading import check_fits, load_sae

    sae = ctx.resource("sae", params.sae.name, lambda: load_sae(params.sae, loaded.arch))
    check_fits(sae, loaded.arch, params.model.name)
    head = {"name": params.label, "location": str(sae.location) if sae.location else None, "hook": sae.hook,
            "corpus": corpus.meta["corpus"]["name"]}
    reason = unscorable(params.sae.name, sae.location, sae.hook, getattr(sae, "input_location", None))
    if reason is not None:
        return Artifact({"text": {**head, "scores": None, "reason": reason}})
    windows = windows_of(corpus)
    if not windows:
        return Artifact({"text": {**head, "scores": None, "reason": "the corpus has no text of two tokens or more to score"}})
    tally = measure(loaded, sae, windows)
    est = tally.estimates()
    scores = {name: described(name if name in ("ce_loss_score", "kl_div_score") else f"text_{name}", est[name]) for name in SCORES}
    raw = {name: described(name, est[name]) for name in RAW}
    ctx.reporter.detail(f"{node.id}: ce_loss_score {est['ce_loss_score'].value:.3f}, kl_div_score {est['kl_div_score'].value:.3f}")
    return Artifact({"text": {**head, "scores": scores, "raw": raw,
                              "tokens": {"ce": int(tally.sums["ce_tokens"].sum()), "kl": int(tally.sums["kl_tokens"].sum())}}})


def unscorable(name: str, location, hook: str, input_location=None) -> str | None:
    """Why the SAE `name` cannot be spliced in at every token (None when it can)."""
    if input_location is not None:  # a transcoder (METHOD.md section 10): reads one tensor, writes another
        if location is not None and location.component == "mlp_out" and input_location == Location("mlp_in", location.layer):
            return None  # spliced at mlp_out from the MLP's input (runtime/model/splice.py `source`)
        return (f"SAE {name} is a transcoder (it reads {input_location} and reconstructs {location}); the text metrics "
                f"splice in transcoders from a layer's MLP input to its MLP output only")
    if location is not None and location.component in SPLICEABLE:
        return None
    where = f"at {location}" if location is not None else "over every head's z of a layer"
    return (f"SAE {name} reads {where} (hook {hook}), which is no single tensor of the model's forward; the text "
            f"metrics splice an SAE in at {', '.join(SPLICEABLE)} only")


@torch.no_grad()
def measure(loaded, sae, windows: list[list[int]]) -> Tally:
    """The per-window sums of every text metric (runtime/sage/loss_recovered.Tally)."""
    hf = loaded.model._module
    pad = loaded.tokenizer.pad_token_id
    device = loaded.device
    tally = Tally(len(windows), sae.d_in, sae.d_sae)
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # little padding per batch
    i = 0
    while i < len(order):
        width = len(windows[order[min(len(order) - 1, i + MAX_ROWS - 1)]])
        rows = max(1, min(MAX_ROWS, LOGITS_BUDGET // (4 * loaded.arch.vocab_size * width)))
        batch = order[i : i + rows]
        i += len(batch)
        _batch(hf, loaded, sae, [windows[j] for j in batch], torch.tensor(batch), pad, device, tally)
    return tally


def _batch(hf, loaded, sae, rows, texts, pad, device, tally: Tally) -> None:
    padded = pad_left(rows, pad)
    ids = padded.input_ids.to(device)
    kwargs = {"input_ids": ids, "attention_mask": padded.attention_mask.to(device), "position_ids": padded.position_ids.to(device)}
    scored = padded.attention_mask.bool()
    scored[torch.arange(len(rows)), padded.offsets] = False  # each window's first token
    scored = scored.to(device)
    text_of = texts[:, None].expand_as(padded.input_ids).to(device)

    layer = sae.location.layer
    with recorded_below(hf, loaded.arch, layer) as below:
        clean_logp = log_softmax_(hf(**kwargs).logits)
    ce_mask = scored[:, :-1]
    tally.add("ce_clean", text_of[:, :-1][ce_mask].cpu(), token_ce(clean_logp, ids)[ce_mask].cpu())
    tally.add("ce_tokens", text_of[:, :-1][ce_mask].cpu(), torch.ones(int(ce_mask.sum())))
    tally.add("kl_tokens", text_of[scored].cpu(), torch.ones(int(scored.sum())))

    def reconstruct(a: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        x = a[scored]
        inputs = source[scored] if source is not None else None  # a transcoder's: the MLP's input
        x_hat = torch.empty_like(x)
        token_texts = text_of[scored].cpu()
        for s in range(0, len(x), TOKEN_CHUNK):
            part = x[s : s + TOKEN_CHUNK].to(torch.float32).cpu()
            if inputs is not None:  # a transcoder: mlp_out from the MLP's input (METHOD.md section 10)
                part_hat, f = preprocessing.transcode(sae.sae, sae.preprocessing, inputs[s : s + TOKEN_CHUNK].to(torch.float32).cpu(), part)
            else:
                part_hat, f = preprocessing.direct(sae.sae, sae.preprocessing, part)
            tally.add_reconstruction(token_texts[s : s + TOKEN_CHUNK], part, part_hat, f)
            x_hat[s : s + TOKEN_CHUNK] = part_hat.to(x_hat)
        out = a.clone()
        out[scored] = x_hat
        return out

    def zero(a: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        return torch.where(scored[..., None], torch.zeros((), dtype=a.dtype, device=a.device), a)

    for name, replace in (("sae", reconstruct), ("ablated", zero)):
        # the layers before the hook's compute what they did in the clean forward: replayed
        with skipped_below(hf, loaded.arch, layer, below.value), spliced(hf, loaded.arch, sae.location, replace, source=getattr(sae, "input_location", None)):
            logp = log_softmax_(hf(**kwargs).logits)
        tally.add(f"ce_{name}", text_of[:, :-1][ce_mask].cpu(), token_ce(logp, ids)[ce_mask].cpu())
        tally.add(f"kl_{name}", text_of[scored].cpu(), token_kl(clean_logp, logp)[scored].cpu())
        del logp
