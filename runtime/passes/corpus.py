"""The corpus pass: the text the text metrics run on (METHOD.md section 8), tokenized.

Which text (sagec/lower.py decides, CorpusParams.source says):
- `file`: the eval's `corpus "FILE"`, one text a line (blank lines skipped), tokenized as the
  task's prompts are, with the tokenizer's special tokens (Gemma's <bos>);
- `zoo`: for a zoo model, its own SAE corpus (runtime/zoo/corpus.py: task prompts with their
  answers and text the model samples), the text its zoo SAEs were trained on;
- `task`: otherwise the task's own prompts (every split, clean ones, not twins), each followed by
  its answer's first token, as the zoo's corpus writes task text.
Each text is cut into windows of at most `context` tokens (a later window starts again with the
text's special prefix, as SAELens's activation store begins each context with BOS); the windows
are shuffled (seeded, as SAEBench core shuffles its dataset) and taken until `max_tokens`, the
last one cut to fit. The artifact holds the windows as one flat id tensor with their lengths,
and names the corpus with its counts for results.json.
"""

from __future__ import annotations

import os
import random

import torch

from runtime.passes.sample import prompt_set
from runtime.store.cache import Artifact
from sagec.plan import CorpusParams, Node

SEED = "sagec-text-corpus:0"


def run(node: Node, inputs: dict[str, Artifact], ctx) -> Artifact:
    params: CorpusParams = node.params
    from runtime.model.sources import load_tokenizer

    tokenizer = ctx.resource("tokenizer", params.model.name, lambda: load_tokenizer(params.model))
    specials = set(tokenizer.all_special_ids)
    if params.source == "file":
        with open(params.file, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        texts = [t for t in lines if t]
        rows = [list(ids) for ids in tokenizer(texts, add_special_tokens=True).input_ids] if texts else []
        name = f"file {os.path.basename(params.file)}"
        extra = {"file": params.file, "sha256": params.file_sha256}
    elif params.source == "zoo":
        from runtime.zoo.saes import corpus_rows

        rows = corpus_rows(params.model.ref, log=ctx.reporter.detail)
        if rows is None:
            raise ValueError(f"zoo model {params.model.ref!r} has no SAE corpus; name a text file with `corpus \"FILE\"` in the eval")
        name = f"zoo corpus of {params.model.ref}"
        extra = {}
    else:
        (sample_id,) = node.inputs
        ps = prompt_set(ctx, inputs, sample_id)
        rows = [[*p.ids, p.answer_ids[0]] for p in ps.prompts]
        name = f"prompts of task {ps.task}"
        extra = {}
    windows = take(shuffled(cut(rows, params.context, specials)), params.max_tokens)
    lengths = torch.tensor([len(w) for w in windows], dtype=torch.long)
    ids = torch.tensor([x for w in windows for x in w], dtype=torch.long)
    meta = {"corpus": {
        "source": params.source, "name": name, "texts": len(rows), "windows": len(windows), "tokens": int(lengths.sum()),
        # what the metrics are averaged over: every token but each window's first (KL), and but
        # its last too for cross-entropy, which has no next token there
        "scored_tokens": int((lengths - 1).clamp(min=0).sum()), "context": params.context, "max_tokens": params.max_tokens, **extra,
    }}
    ctx.reporter.detail(f"{node.id}: {name}, {len(windows)} windows, {meta['corpus']['tokens']} tokens")
    return Artifact(meta, {"ids": ids, "lengths": lengths})


def cut(rows: list[list[int]], context: int, specials: set[int]) -> list[list[int]]:
    """Windows of at most `context` tokens; a text's leading special tokens open each of its
    windows. Windows of one token score nothing and are dropped."""
    out = []
    for row in rows:
        prefix = []
        while len(prefix) < len(row) and row[len(prefix)] in specials:
            prefix.append(row[len(prefix)])
        body = row[len(prefix):]
        step = context - len(prefix)
        if step < 1:
            continue
        for i in range(0, len(body), step):
            window = prefix + body[i : i + step]
            if len(window) > 1:
                out.append(window)
    return out


def shuffled(windows: list[list[int]]) -> list[list[int]]:
    out = list(windows)
    random.Random(SEED).shuffle(out)
    return out


def take(windows: list[list[int]], max_tokens: int) -> list[list[int]]:
    out, total = [], 0
    for w in windows:
        if total >= max_tokens:
            break
        w = w[: max_tokens - total]
        if len(w) > 1:
            out.append(w)
            total += len(w)
    return out


def windows_of(artifact: Artifact) -> list[list[int]]:
    """The corpus windows back from the artifact."""
    return [t.tolist() for t in torch.split(artifact.tensors["ids"], artifact.tensors["lengths"].tolist())]
