"""GGUF files to plain safetensors folders, once.

transformers' GGUF loader dequantises a .gguf into an ordinary model, but that model refuses
`save_pretrained` ("quantized with gguf and is not serializable") and the dequantisation takes
tens of seconds. So we rebuild a plain model from its config and state dict (shared/STACK.md
section 5), save it with the tokenizer, and later loads read the folder in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from runtime.store.cache import sha256_file

MANIFEST = "sagec-manifest.json"


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def dequantise(gguf_path: Path, out: Path, manifest: dict) -> Path:
    """Write the dequantised model and tokenizer of `gguf_path` to `out`, atomically.

    The model is built in a temporary sibling folder and renamed into place, so an interrupted
    build leaves no half-written folder that a later load would trust. `manifest` (plus the
    .gguf's sha256) is saved beside the weights as the model's identity.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # the caller shows its own status line

    gguf_path = Path(gguf_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        quantised = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        config = quantised.config.to_dict()
        config.pop("quantization_config", None)
        plain = type(quantised)(type(quantised.config).from_dict(config))
        plain.load_state_dict(quantised.state_dict())
        plain.eval().save_pretrained(tmp)
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(tmp)
        info = {**manifest, "gguf_sha256": sha256_file(gguf_path),
                "weights_sha256": sha256_file(tmp / "model.safetensors")}
        (tmp / MANIFEST).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private; the finished model is an ordinary folder
        if out.exists():  # a concurrent build finished first: keep its folder
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
