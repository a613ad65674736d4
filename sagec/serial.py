"""Exact JSON round trips for the frozen dataclasses of the spec and the plan.

Every dataclass is written as an object tagged with its class name; tuples come back as tuples.
The plan's content hashes are taken over `canonical_json`, so the encoding must stay stable:
sorted keys, no whitespace, and floats written by `repr` (exact in JSON).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

_REGISTRY: dict[str, type] = {}


def register(*classes: type) -> None:
    for cls in classes:
        _REGISTRY[cls.__name__] = cls


def to_data(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        data["type"] = type(obj).__name__
        return data
    if isinstance(obj, (tuple, list)):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_data(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def from_data(data: Any) -> Any:
    if isinstance(data, dict):
        if "type" in data and data["type"] in _REGISTRY:
            cls = _REGISTRY[data["type"]]
            return cls(**{k: from_data(v) for k, v in data.items() if k != "type"})
        return {k: from_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return tuple(from_data(x) for x in data)
    return data


def canonical_json(obj: Any) -> str:
    return json.dumps(to_data(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _register_known() -> None:
    from sagec import locations, spec

    for module in (spec, locations):
        register(*(v for v in vars(module).values() if isinstance(v, type) and dataclasses.is_dataclass(v)))


_register_known()
