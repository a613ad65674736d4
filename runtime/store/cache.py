"""The content-addressed artifact cache: one folder per plan-node key.

An artifact is named tensors (stored as safetensors) plus JSON metadata. Each is written into a
temporary folder beside its final place, with a manifest holding the sha256 of every file, and
renamed into place in one step: a crash (even kill -9) leaves either the whole artifact or none.
Loading re-hashes the files, so a truncated or altered artifact is detected, reported and
recomputed instead of silently feeding wrong numbers downstream.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported only when an artifact is read or written, so that
    import torch  # `sagec plan` can ask what is cached without paying for it

TENSORS = "tensors.safetensors"
META = "meta.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    meta: dict[str, Any]
    tensors: dict[str, "torch.Tensor"] = field(default_factory=dict)


class CorruptArtifact(Exception):
    """An artifact on disk does not match its manifest."""


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in blocks (weights can be large); used for every content hash."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class ArtifactCache:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / "artifacts" / key[:2] / key

    def has(self, key: str) -> bool:
        return (self.path(key) / MANIFEST).is_file()

    def load(self, key: str) -> Artifact:
        folder = self.path(key)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            for name, digest in manifest["files"].items():
                if sha256_file(folder / name) != digest:
                    raise CorruptArtifact(f"{folder / name}: contents do not match the manifest")
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
            from safetensors.torch import load_file

            tensors = load_file(str(folder / TENSORS)) if TENSORS in manifest["files"] else {}
        except CorruptArtifact:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise CorruptArtifact(f"{folder}: unreadable ({e})") from None
        return Artifact(meta, tensors)

    def load_meta(self, key: str) -> dict[str, Any] | None:
        """An artifact's metadata alone, checked against its manifest, without reading its
        tensors (nor importing torch): what `sagec plan` reads of a cached locate artifact. None
        when absent or corrupt (the run will recompute it)."""
        folder = self.path(key)
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            if sha256_file(folder / META) != manifest["files"][META]:
                return None
            return json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError):
            return None

    def save(self, key: str, artifact: Artifact) -> Path:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=final.parent))
        try:
            files = {}
            # Key order kept: a cached artifact must read back as the one computed (a dict of
            # sites in located order must not come back sorted; results compare by order).
            (tmp / META).write_text(json.dumps(artifact.meta, allow_nan=False), encoding="utf-8")
            files[META] = sha256_file(tmp / META)
            if artifact.tensors:
                from safetensors.torch import save_file

                # safetensors refuses views that share memory; contiguous copies are cheap here.
                save_file({k: v.detach().contiguous().cpu() for k, v in artifact.tensors.items()}, str(tmp / TENSORS))
                files[TENSORS] = sha256_file(tmp / TENSORS)
            for name in files:
                _fsync_file(tmp / name)
            (tmp / MANIFEST).write_text(json.dumps({"key": key, "files": files}, sort_keys=True), encoding="utf-8")
            _fsync_file(tmp / MANIFEST)
            if final.exists():  # a stale or corrupt copy: replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def discard(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)
