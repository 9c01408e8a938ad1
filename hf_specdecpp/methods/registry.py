"""The registry of decoding methods: every front door, the CLI and the benchmark find methods here.

Each method folder registers its user-facing class under a short name with its config class. `build(name,
**kwargs)` constructs a method by name (the CLI and the benchmark), `entry_for(obj)` recognises a method
object (the generate() patch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import DecodingMethod


@dataclass(frozen=True)
class MethodEntry:
    name: str
    method_class: type[DecodingMethod]
    config_class: type
    description: str


_REGISTRY: dict[str, MethodEntry] = {}


def register(name: str, method_class: type[DecodingMethod], config_class: type, description: str) -> None:
    """Add a method under `name` (a name can be registered once)."""
    if name in _REGISTRY and _REGISTRY[name].method_class is not method_class:
        raise ValueError(f"A decoding method named {name!r} is already registered")
    _REGISTRY[name] = MethodEntry(name, method_class, config_class, description)


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> MethodEntry:
    if name not in _REGISTRY:
        raise KeyError(f"Unknown decoding method {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name]


def build(name: str, **kwargs: Any) -> DecodingMethod:
    """A method object by registered name, e.g. `build("fixed-k", num_candidates=3)`."""
    return get(name).method_class(**kwargs)


def entry_for(obj: Any) -> MethodEntry | None:
    """The registry entry of a method object (None for anything else)."""
    for entry in _REGISTRY.values():
        if isinstance(obj, entry.method_class):
            return entry
    return None
