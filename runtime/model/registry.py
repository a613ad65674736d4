"""Built-in models by name: `source zoo "name"` resolves here.

The model layer owns the table and knows no entry itself: runtime/zoo fills it when it is
imported (as do tests and plug-ins, through `register_zoo_model`), so the model layer never
imports the zoo that builds on it. Entry points that resolve specs (runtime/execute, the CLI)
import runtime.zoo first.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ZooEntry:
    """`folder()` returns a save_pretrained folder, building it if needed; `tokenizer()` and
    `config()`, when given, load those without building the model."""

    folder: Callable[[], Path]
    tokenizer: Callable[[], Any] | None = None
    config: Callable[[], Any] | None = None


_ENTRIES: dict[str, ZooEntry] = {}


def register_zoo_model(name: str, folder: Callable[[], Path], tokenizer: Callable[[], Any] | None = None,
                       config: Callable[[], Any] | None = None) -> None:
    """Make `zoo "name"` resolve through `folder()`."""
    _ENTRIES[name] = ZooEntry(folder, tokenizer, config)


def zoo_entry(name: str) -> ZooEntry:
    """The entry for `name`; KeyError with the closest registered names otherwise."""
    if name not in _ENTRIES:
        close = difflib.get_close_matches(name, list(_ENTRIES), n=3)
        known = ", ".join(sorted(_ENTRIES)) or "no models (nothing registered: import runtime.zoo first)"
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown zoo model {name!r}; the zoo has {known}{hint}")
    return _ENTRIES[name]


def zoo_names() -> list[str]:
    return sorted(_ENTRIES)
