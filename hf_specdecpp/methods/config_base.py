"""What every method's config shares: checks of `Literal` choices, help text per field, a dict and a JSON file.

A method's config is a frozen dataclass subclassing `MethodConfig` (`<method>/config.py`): each field carries
its help text (`field(metadata={"help": ...})`), a field that takes a fixed set of strings is a `Literal`
(checked here, for every config), and the config's own `__post_init__` checks the rest. `method` names the
config's entry in the registry; it is written into the dict and the file so that `methods.load_config` can find
the config class of a saved file.

Serialisation follows transformers' `GenerationConfig`: `to_dict`/`from_dict`, `save_pretrained(directory)`
writes `decoding_method.json` into a directory (created when missing) and `from_pretrained(directory)` reads it
back. Unlike `GenerationConfig`, saving never replaces a different file of that name unless `overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import textwrap
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from ..core.validation import check_choice
from ..utils.io import FileFormatError, read_json, read_json_object, write_json

CONFIG_NAME = "decoding_method.json"
"""The file `MethodConfig.save_pretrained` writes (as transformers' `generation_config.json`)."""

C = TypeVar("C", bound="MethodConfig")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method's settings: an immutable, validated dataclass that round-trips through JSON.

    Args:
        The subclass's fields (each with its help text, `field(metadata={"help": ...})`); `Literal` fields are
        checked here, the rest by the subclass's `__post_init__`.
    """

    method: ClassVar[str] = ""
    """The registry name of the method this config belongs to (e.g. "specdec++")."""

    def __post_init__(self) -> None:
        for name, choices in literal_fields(type(self)).items():
            check_choice(name, getattr(self, name), choices)

    # ------------------------------------------------------------------ dicts
    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict.

        Returns:
            `dict[str, Any]`: `{"method": <registry name>, <field>: <value>, ...}`, every field included.
        """
        return {"method": self.method, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def from_dict(cls: type[C], config_dict: dict[str, Any], **kwargs: Any) -> C:
        """A config from `to_dict()`'s output; `kwargs` override its values.

        Args:
            config_dict (`dict[str, Any]`): field values, optionally with the `"method"` key `to_dict` writes
                (which must name this config's method).
            kwargs: field values that replace those of `config_dict`.

        Returns:
            the config (validated like a constructed one).

        Raises:
            `ValueError`: for a dict of another method or with keys that are not fields of this config.
        """
        if cls is MethodConfig:
            raise TypeError("MethodConfig.from_dict needs a method's config class (e.g. SpecDecPPConfig), or use "
                            "hf_specdecpp.methods.load_config to pick the class from the dict's 'method'.")
        values = {**config_dict, **kwargs}
        method = values.pop("method", cls.method)
        if method != cls.method:
            raise ValueError(f"This is the config of method {method!r}, not of {cls.method!r} ({cls.__name__}).")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}; its fields: "
                             f"{', '.join(help_texts(cls))}.")
        return cls(**values)

    # ------------------------------------------------------------------ files
    def save_pretrained(self, save_directory: str | os.PathLike, config_file_name: str | None = None,
                        overwrite: bool = False) -> Path:
        """Write the config as JSON into `save_directory` (created when missing).

        Args:
            save_directory (`str` or `os.PathLike`): the folder to write into.
            config_file_name (`str`, *optional*): the file name, default `decoding_method.json`.
            overwrite (`bool`, *optional*, defaults to `False`): replace an existing file that holds another
                config. A file with the same config is left as it is.

        Returns:
            `pathlib.Path`: the file written.

        Raises:
            `NotADirectoryError`: when `save_directory` is a file.
            `FileExistsError`: when the file exists with other contents and `overwrite` is False.
        """
        folder = Path(save_directory)
        if folder.is_file():
            raise NotADirectoryError(f"save_pretrained needs a directory, but {folder} is a file")
        path = folder / (config_file_name or CONFIG_NAME)
        if path.exists() and not overwrite and _existing_contents(path) != self.to_dict():
            raise FileExistsError(f"{path} exists and holds another config: remove it, choose another folder, or "
                                  "pass overwrite=True.")
        folder.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def from_pretrained(cls: type[C], pretrained_path: str | os.PathLike, config_file_name: str | None = None,
                        **kwargs: Any) -> C:
        """Read a config that `save_pretrained` wrote.

        Args:
            pretrained_path (`str` or `os.PathLike`): the folder `save_pretrained` wrote into, or the JSON file.
            config_file_name (`str`, *optional*): the file name inside the folder, default `decoding_method.json`.
            kwargs: field values that replace the file's.

        Returns:
            the config.

        Raises:
            `FileNotFoundError`: when there is no such file; `FileFormatError` when it is not a JSON object;
            `ValueError` when it holds another method's config.
        """
        return cls.from_dict(read_json_object(config_path(pretrained_path, config_file_name), "method config"),
                             **kwargs)


def config_from_arguments(config_class: type[C], settings: tuple[Any, ...], values: dict[str, Any],
                          config: C | None = None) -> C:
    """A method constructor's config: from `config` (a `config_class` instance, also accepted as the only
    positional argument) and/or field values, positional in field order (`settings`) or by name (`values`)."""
    if config is None and len(settings) == 1 and isinstance(settings[0], MethodConfig):
        config, settings = settings[0], ()
    if config is not None and not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    names = [f.name for f in dataclasses.fields(config_class)]
    if len(settings) > len(names):
        raise TypeError(f"{config_class.__name__} has {len(names)} fields ({', '.join(names)}); got {len(settings)} "
                        "positional values")
    given = dict(zip(names, settings))
    unknown = sorted(set(values) - set(names))
    twice = sorted(set(given) & set(values))
    if unknown or twice:
        problem = f"unexpected argument(s) {', '.join(unknown)}" if unknown else f"{', '.join(twice)} given twice"
        raise TypeError(f"{problem}; the fields of {config_class.__name__}: {', '.join(names)}")
    given.update(values)
    return dataclasses.replace(config, **given) if config is not None else config_class(**given)


def config_path(pretrained_path: str | os.PathLike, config_file_name: str | None = None) -> Path:
    """The JSON file of a saved config: `pretrained_path` itself when it is a file, else the file inside it."""
    path = Path(pretrained_path)
    return path if path.is_file() else path / (config_file_name or CONFIG_NAME)


def _existing_contents(path: Path) -> Any:
    try:
        return read_json(path, "method config")
    except FileFormatError:
        return None  # not ours to compare: a different file


@functools.cache
def literal_fields(config_class: type) -> dict[str, tuple[Any, ...]]:
    """The choices of each `Literal` field of a config class (`Optional[Literal[...]]` fields allow None)."""
    hints = typing.get_type_hints(config_class)
    out = {}
    for f in dataclasses.fields(config_class):
        hint, choices = hints[f.name], ()
        for part in (typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)):
            if typing.get_origin(part) is Literal:
                choices += typing.get_args(part)
            elif part is type(None):
                choices += (None,)
        if any(c is not None for c in choices):
            out[f.name] = choices
    return out


_UnionType = type(int | None)


def help_texts(config_class: type) -> dict[str, str]:
    """Each field's help text (`field(metadata={"help": ...})`), in declaration order."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(config_class)}


def fields_doc(config_class: type, indent: str = "        ") -> str:
    """The `Args:` entries of a config class's fields, transformers style: name (type, default) and help text."""
    hints = typing.get_type_hints(config_class)
    lines = []
    for f in dataclasses.fields(config_class):
        default = "" if f.default is dataclasses.MISSING else f", *optional*, defaults to `{f.default!r}`"
        lines.append(f"{indent}{f.name} (`{_type_name(hints[f.name])}`{default}):")
        lines.append(textwrap.fill(f.metadata.get("help", ""), 116, initial_indent=indent + "    ",
                                   subsequent_indent=indent + "    "))
    return "\n".join(lines)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def document_fields(config_class: type[C]) -> type[C]:
    """Class decorator (outside `@dataclass`): append the fields' `Args:` section to the config's docstring."""
    config_class.__doc__ = f"{(config_class.__doc__ or '').rstrip()}\n\n    Args:\n{fields_doc(config_class)}\n"
    return config_class
