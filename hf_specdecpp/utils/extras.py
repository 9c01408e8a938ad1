"""Optional dependencies: training, benchmarks and model fetching live behind pip extras."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {"train": ("accelerate", "datasets", "scikit-learn", "matplotlib", "tqdm"),
          "bench": ("matplotlib", "scipy", "datasets"),
          "fetch": ("gguf",),
          "cli": ("typer", "rich")}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip command that installs it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import `module`, or raise `MissingExtraError` telling how to install the `extra` that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{feature} needs the optional dependency {module!r} ({err}). Install it with: "
            f'pip install "hf-specdecpp[{extra}]"'
        ) from err
