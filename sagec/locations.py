"""The location vocabulary: where an activation lives, independent of any architecture.

`resid_pre 3`, `resid_mid 3`, `resid_post 3`, `attn_out 3`, `mlp_out 3`, `head 3.1` and
`head_z 3.1`, and `mlp_in 3`, the MLP's input, which SAEs (transcoders) read but `locate`
does not rank. The runtime maps each to module paths per architecture family (runtime/model/locations.py);
the compiler only needs to name, parse and print them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sagec.names import LOCATION_COMPONENTS

_HEADED = ("head", "head_z")
_PATTERN = re.compile(r"^\s*([a-z_]+)\s+(\d+)(?:\.(\d+))?\s*$")


@dataclass(frozen=True, order=True)
class Location:
    component: str
    layer: int
    head: int | None = None

    def __post_init__(self) -> None:
        if self.component not in LOCATION_COMPONENTS:
            raise ValueError(f"unknown component {self.component!r}; expected one of {', '.join(LOCATION_COMPONENTS)}")
        if (self.head is not None) != (self.component in _HEADED):
            need = "needs a head index, as in 'head 3.1'" if self.component in _HEADED else "takes no head index"
            raise ValueError(f"{self.component!r} {need}")
        if self.layer < 0 or (self.head is not None and self.head < 0):
            raise ValueError("layer and head indices must be non-negative")

    def __str__(self) -> str:
        return f"{self.component} {self.layer}" + (f".{self.head}" if self.head is not None else "")

    @classmethod
    def parse(cls, text: str) -> Location:
        m = _PATTERN.match(text)
        if not m:
            raise ValueError(f"not a location: {text!r} (expected e.g. 'resid_pre 3' or 'head 3.1')")
        head = int(m.group(3)) if m.group(3) is not None else None
        return cls(m.group(1), int(m.group(2)), head)


@dataclass(frozen=True, order=True)
class CrossSection:
    """A location at a named token position: where SAGE looks for a task's features."""

    location: Location
    position: str

    def __str__(self) -> str:
        return f"{self.location} @ {self.position}"
