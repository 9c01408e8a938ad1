"""The registry of decoding methods: every front door, the CLI and the benchmark find methods here.

Each method folder's class is registered under a short name (its config's `method`) with a one-line description.
`build(name, **kwargs)` constructs a method by name (the CLI, the Hub method and the benchmark), `entry_for(obj)`
recognises a method object (the generate() patch), `available()` lists names with descriptions (`hf-specdecpp
methods`), and `config_class(name)` / `load_config(path)` find the config class of a name or of a saved file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..utils.io import read_json_object
from .base import DecodingMethod
from .config_base import MethodConfig, config_path, fields_doc


@dataclass(frozen=True)
class MethodEntry:
    """One registered method.

    Args:
        name (`str`): the registry name, e.g. "specdec++" (also the config's `method`).
        method_class (`type[DecodingMethod]`): the method's class.
        config_class (`type[MethodConfig]`): its settings (`method_class.config_class`).
        description (`str`): one line for listings.
    """

    name: str
    method_class: type[DecodingMethod]
    config_class: type[MethodConfig]
    description: str

    def settings_doc(self, indent: str = "  ") -> str:
        """The config's fields with type, default and help text (`Args:` entries; the `methods NAME` command)."""
        return fields_doc(self.config_class, indent)


_REGISTRY: dict[str, MethodEntry] = {}


def register(name: str, method_class: type[DecodingMethod], description: str) -> None:
    """Add a method under `name` (a name can be registered once).

    Args:
        name (`str`): the registry name; must equal `method_class.config_class.method`.
        method_class (`type[DecodingMethod]`): the class; its `config_class` is registered with it.
        description (`str`): one line shown by `available()` and `hf-specdecpp methods`.

    Raises:
        `ValueError`: when another class holds the name, or the config names another method.
    """
    if name in _REGISTRY and _REGISTRY[name].method_class is not method_class:
        raise ValueError(f"A decoding method named {name!r} is already registered")
    if method_class.config_class.method != name:
        raise ValueError(f"{method_class.config_class.__name__}.method is {method_class.config_class.method!r}, "
                         f"not {name!r}")
    _REGISTRY[name] = MethodEntry(name, method_class, method_class.config_class, description)


__all__ = ["MethodEntry", "available", "build", "config_class", "entry_for", "get", "load_config",
           "names", "register"]


def names() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def available() -> dict[str, str]:
    """The registered methods and what each does.

    Returns:
        `dict[str, str]`: registry name -> one-line description, sorted by name.
    """
    return {name: _REGISTRY[name].description for name in names()}


def get(name: str) -> MethodEntry:
    """The entry of a registered name.

    Args:
        name (`str`): a registered name (`names()`).

    Returns:
        `MethodEntry`.

    Raises:
        `KeyError`: for a name that is not registered (the message lists those that are).
    """
    if name not in _REGISTRY:
        raise KeyError(f"Unknown decoding method {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name]


def config_class(name: str) -> type[MethodConfig]:
    """The config class of a registered method, e.g. `config_class("fixed-k")` is `FixedKConfig`.

    Args:
        name (`str`): a registered name.

    Returns:
        `type[MethodConfig]`.
    """
    return get(name).config_class


def build(name: str, **kwargs: Any) -> DecodingMethod:
    """A method object by registered name, e.g. `build("fixed-k", num_candidates=3)`.

    Args:
        name (`str`): a registered name (`names()`).
        kwargs: the method's arguments: its config's fields and e.g. `head=`, `draft_model=`, `streamer=`.

    Returns:
        `DecodingMethod`: the method object.
    """
    return get(name).method_class(**kwargs)


def load_config(pretrained_path: str | os.PathLike, config_file_name: str | None = None) -> MethodConfig:
    """A config saved with `save_pretrained`, of whichever method the file names.

    Args:
        pretrained_path (`str` or `os.PathLike`): the folder (or the JSON file) `save_pretrained` wrote.
        config_file_name (`str`, *optional*): the file name in the folder, default `decoding_method.json`.

    Returns:
        `MethodConfig`: an instance of the registered config class the file's `"method"` names.
    """
    path = config_path(pretrained_path, config_file_name)
    data = read_json_object(path, "method config")
    if data.get("method") not in _REGISTRY:
        raise ValueError(f"{path} names method {data.get('method')!r}; registered: {', '.join(names())}")
    return config_class(data["method"]).from_dict(data)


def entry_for(obj: Any) -> MethodEntry | None:
    """The registry entry of a method object (None for anything else).

    Args:
        obj (`Any`): e.g. the `candidate_generator=` of a call.

    Returns:
        `MethodEntry` or `None`.
    """
    for entry in _REGISTRY.values():
        if isinstance(obj, entry.method_class):
            return entry
    return None
