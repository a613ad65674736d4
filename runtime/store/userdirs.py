"""Where sagec keeps what it builds once and reuses: dequantised models, lazily trained SAEs,
downloaded wheels, the artifact cache. `SAGEC_CACHE_DIR` overrides the default
`$XDG_CACHE_HOME/sagec` (`~/.cache/sagec`), so tests can point it at a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    override = os.environ.get("SAGEC_CACHE_DIR")
    if override:
        root = Path(override)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sagec"
    root.mkdir(parents=True, exist_ok=True)
    return root
