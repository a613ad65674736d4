"""Loading a spec's model: from the hub, a local folder, a GGUF file or the zoo, through nnsight.

Every source is first turned into a local `save_pretrained` folder (hub: the HF cache snapshot;
gguf: a dequantised copy under the cache dir; zoo: whatever the zoo entry builds), so there is one
loading path and one identity: `LoadedModel.identity` names the source and a hash of the weights,
which keys every cached artifact computed from the model.

`model_config` and `load_tokenizer` read only the config or the tokenizer: `sagec plan` and
`sagec check --deep` use them and must not load weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runtime.model.architectures import Architecture, architecture
from runtime.model.gguf import MANIFEST, dequantise, read_manifest
from runtime.model.registry import ZooEntry, zoo_entry
from runtime.store.cache import sha256_file
from runtime.store.userdirs import cache_dir
from sagec.diagnostics import SpecError
from sagec.spec import Model

DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # nnsight TransformersModel, dispatched
    tokenizer: Any  # padding side left, with a pad token
    arch: Architecture
    identity: Mapping[str, str]  # source, ref and a weights hash: part of every cache key
    spec: Model

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size or DEFAULT_BATCH_SIZE

    @property
    def device(self) -> Any:
        return next(self.model._module.parameters()).device


def load_model(model: Model) -> LoadedModel:
    """Resolve `model` to a local folder and load it with nnsight (dispatch=True)."""
    import torch
    from nnsight import TransformersModel

    if model.remote == "ndif":
        return _load_ndif(model)
    folder = resolve_folder(model)
    tokenizer = _prepare(_auto_tokenizer(folder, model))
    kwargs: dict[str, Any] = {"dtype": getattr(torch, DTYPES[model.dtype])}
    kwargs["device_map"] = "auto" if model.device == "auto" else model.device
    if model.device == "cpu" and model.dtype == "bfloat16":
        # PyTorch's CPU flash-attention kernel is slow in bfloat16 on short queries: a patched
        # suffix forward of SmolLM2 (5 tokens on a 16-token cache) spent 1.2 of its 8 s there,
        # against 0.3 s for the plain matmul-softmax path, which also takes its softmax in
        # float32. In float32 the two run alike.
        kwargs["attn_implementation"] = "eager"
    with _quiet():
        lm = TransformersModel(str(folder), task="text-generation", dispatch=True, tokenizer=tokenizer, **kwargs)
    lm._module.eval()
    arch = _architecture(lm.config, model)
    return LoadedModel(lm, tokenizer, arch, _identity(model, folder), model)


def _load_ndif(model: Model) -> LoadedModel:
    """A model NDIF hosts: only its config and tokenizer come here; the weights stay on the
    server (no dispatch), and every trace runs there (runtime/model/forward.py's backend)."""
    from nnsight import TransformersModel

    if model.source != "hub":
        raise SpecError.at(model.origin, f"model {model.name}: `remote ndif` runs models NDIF hosts, named by their hub id; this one has source {model.source}",
                           hint='write `source hub "openai-community/gpt2"` (or another model NDIF serves)')
    folder = _hub_folder(model, weights=False)
    tokenizer = _prepare(_auto_tokenizer(folder, model))
    with _quiet():
        lm = TransformersModel(model.ref, task="text-generation", dispatch=False, tokenizer=tokenizer)
    return LoadedModel(lm, tokenizer, _architecture(lm.config, model), {"source": "hub", "ref": model.ref, "remote": "ndif"}, model)


def load_tokenizer(model: Model) -> Any:
    """The model's tokenizer only (left padding, a pad token), without loading weights."""
    if model.source == "zoo":
        entry = _zoo(model)
        if entry.tokenizer is not None:
            return _prepare(entry.tokenizer())
        return _prepare(_auto_tokenizer(entry.folder(), model))
    if model.source == "gguf":
        gguf = _gguf_path(model)
        built = _gguf_folder(gguf)
        if (built / MANIFEST).is_file():
            return _prepare(_auto_tokenizer(built, model))
        return _prepare(_gguf_tokenizer(gguf))
    folder = _hub_folder(model, weights=False) if model.source == "hub" else resolve_folder(model)
    return _prepare(_auto_tokenizer(folder, model))


def model_config(model: Model) -> Any:
    """The model's HF config only, without loading (or building) weights."""
    from transformers import AutoConfig

    if model.source == "zoo":
        entry = _zoo(model)
        if entry.config is not None:
            return entry.config()
        return AutoConfig.from_pretrained(entry.folder())
    if model.source == "gguf":
        gguf = _gguf_path(model)
        built = _gguf_folder(gguf)
        if (built / MANIFEST).is_file():
            return AutoConfig.from_pretrained(built)
        return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    folder = _hub_folder(model, weights=False) if model.source == "hub" else resolve_folder(model)
    return AutoConfig.from_pretrained(folder)


def model_architecture(model: Model) -> Architecture:
    """Family and shape facts from the config alone (for planning)."""
    return _architecture(model_config(model), model)


# --- sources -----------------------------------------------------------------------------------


def resolve_folder(model: Model) -> Path:
    """A local save_pretrained folder holding `model`, fetching or building it if needed."""
    if model.source == "path":
        folder = Path(model.ref)
        if not folder.is_dir():
            raise SpecError.at(model.origin, f"model folder {model.ref!r} does not exist",
                               hint="give a folder written by save_pretrained, or a zoo model such as zoo \"smollm2-135m\"")
        if not (folder / "config.json").is_file():
            raise SpecError.at(model.origin, f"model folder {model.ref!r} has no config.json, so it is not a save_pretrained folder")
        return folder
    if model.source == "hub":
        return _hub_folder(model)
    if model.source == "gguf":
        gguf = _gguf_path(model)
        out = _gguf_folder(gguf)
        if not (out / MANIFEST).is_file():
            from rich.console import Console

            with Console(stderr=True, highlight=False).status(f"Dequantising {gguf.name} into {out} (once)"):
                dequantise(gguf, out, {"gguf": str(gguf)})
        return out
    if model.source == "zoo":
        return _zoo(model).folder()
    raise SpecError.at(model.origin, f"unknown model source {model.source!r}")


# The files of a hub model sagec reads: config, tokenizer and generation files, and safetensors
# weights (`sagec fetch` downloads the same).
HUB_CONFIG_PATTERNS = ("*.json", "*.model", "*.txt", "*.tiktoken")
HUB_WEIGHT_PATTERNS = ("*.safetensors",)


def _hub_folder(model: Model, weights: bool = True) -> Path:
    """The HF cache snapshot of a hub id; without a reachable hub, only an already cached one.
    `weights=False` fetches config and tokenizer files only."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = [*HUB_CONFIG_PATTERNS, *(HUB_WEIGHT_PATTERNS if weights else [])]
    offline = hub_unreachable()
    try:
        return Path(snapshot_download(model.ref, allow_patterns=patterns, local_files_only=offline is not None))
    except Exception as e:  # network and hub errors: say what happened in the spec's terms
        if offline is None or not isinstance(e, LocalEntryNotFoundError):
            raise SpecError.at(model.origin, f"could not fetch hub model {model.ref!r}: {e}") from e
    raise SpecError.at(
        model.origin,
        f"hub model {model.ref!r} cannot be loaded: {offline}, and it is not in the local Hugging Face cache",
        hint="use a local folder (source path \"./my-model\"), a .gguf file (source gguf \"./model.gguf\") "
             "or a zoo model (source zoo \"smollm2-135m\"; `sagec ls zoo` lists them)",
    )


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached, or None when it can. Checked up front: without it the hub
    client spends about 25 s on retries before failing."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "the Hugging Face hub is switched off here (HF_HUB_OFFLINE=1)"
    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    try:  # the endpoint's own port: HF_ENDPOINT may name a mirror
        socket.create_connection((host, endpoint.port or (80 if endpoint.scheme == "http" else 443)), timeout=3).close()
    except OSError as e:
        return f"the Hugging Face hub ({host}) cannot be reached ({e.__class__.__name__}: {e})"
    return None


def _gguf_path(model: Model) -> Path:
    gguf = Path(model.ref)
    if not gguf.is_file():
        raise SpecError.at(model.origin, f"GGUF file {model.ref!r} does not exist")
    return gguf


def _gguf_folder(gguf: Path) -> Path:
    """Where a .gguf's dequantised copy lives: keyed by its path, size and mtime, so an edited file
    gets a new copy (the manifest inside records the content hash)."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"gguf-{gguf.stem}-{key}"


def _gguf_tokenizer(gguf: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _zoo(model: Model) -> ZooEntry:
    try:
        return zoo_entry(model.ref)
    except KeyError as e:
        message, _, hint = e.args[0].partition("; did you mean ")
        raise SpecError.at(model.origin, message, hint=f"did you mean {hint}" if hint else None) from None


# --- helpers -----------------------------------------------------------------------------------


def _auto_tokenizer(folder: Path, model: Model) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise SpecError.at(model.origin, f"no tokenizer could be loaded from {str(folder)!r}: {e}") from e


def _prepare(tokenizer: Any) -> Any:
    """Left padding, so every prompt's last token sits at index -1 of a padded batch."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _architecture(config: Any, model: Model) -> Architecture:
    try:
        return architecture(config)
    except ValueError as e:
        raise SpecError.at(model.origin, f"model {model.name!r}: {e}") from e


def _identity(model: Model, folder: Path) -> dict[str, str]:
    identity = {"source": model.source, "ref": model.ref, "dtype": model.dtype}
    manifest = read_manifest(folder)
    if manifest and "weights_sha256" in manifest:
        identity["weights_sha256"] = manifest["weights_sha256"]
        if "gguf_sha256" in manifest:
            identity["gguf_sha256"] = manifest["gguf_sha256"]
    else:
        identity["weights_sha256"] = weights_hash(folder)
    if model.source == "hub":
        identity["revision"] = folder.name  # the snapshot folder is named by the commit
    return identity


def weights_hash(folder: Path) -> str:
    """sha256 over config.json and the weight files, memoised by (path, size, mtime) in the cache
    dir, since hashing a large model on every load would cost seconds."""
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.suffix in (".safetensors", ".bin"))
    memo_path = cache_dir() / "weights-hashes.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    key = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    if key not in memo:
        digest = hashlib.sha256()
        for p in files:
            digest.update(p.name.encode() + b"\0" + sha256_file(p).encode())
        memo[key] = digest.hexdigest()
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=1), encoding="utf-8")
        os.replace(tmp, memo_path)
    return memo[key]


class _quiet:
    """Silence transformers' per-load progress bars, which would interleave with ours."""

    def __enter__(self) -> None:
        from transformers.utils import logging

        self._was = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging

        if self._was:
            logging.enable_progress_bar()
