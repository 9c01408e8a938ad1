"""What every CLI command shares: one-line errors instead of tracebacks, JSON output, option parsing.

Nothing here imports torch or transformers at module level, so `hf-specdecpp --help` stays fast.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import typer

EXPECTED_ERRORS = ("TrainingError", "FileFormatError", "FetchError", "ResumeError", "MissingExtraError",
                   "CacheSupportError", "UpstreamChangedError", "ConfigSelectionError")
"""Errors that describe bad input or a missing resource: printed as one red line, exit status 1."""

DTYPES = ("float32", "bfloat16", "float16")


def friendly(func):
    """Expected failures print one red line and exit with status 1, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError) as err:
            _fail(str(err))
        except KeyboardInterrupt:
            from rich.console import Console

            Console(stderr=True).print("[yellow]Interrupted; run the same command again to resume.[/]")
            raise typer.Exit(code=130) from None
        except Exception as err:
            if type(err).__name__ in EXPECTED_ERRORS or any(c.__name__ in EXPECTED_ERRORS for c in type(err).__mro__):
                _fail(str(err))
            raise

    return wrapper


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]Error:[/] {message}", highlight=False)  # paths unbroken
    raise typer.Exit(code=1)


def print_json(obj) -> None:
    from rich.console import Console

    Console().print_json(json.dumps(obj, default=str))


def parse_dtype_option(name: str, option: str = "--dtype"):
    """A `--dtype` value (float32, bfloat16, float16) as a torch dtype; a readable CLI error otherwise."""
    if name not in DTYPES:
        raise typer.BadParameter(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}", param_hint=option)
    import torch

    return getattr(torch, name)


def numbers(text: str, kind, option: str, low=None, high=None, low_open: bool = False) -> list:
    """Comma-separated numbers, each checked against (low, high); a readable CLI error otherwise."""
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=option) from None
    if not values:
        raise typer.BadParameter("expected at least one value", param_hint=option)
    for value in values:
        if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
            bound = f"{'>' if low_open else '>='} {low}" if high is None else f"in [{low}, {high}]"
            raise typer.BadParameter(f"every value must be {bound}, got {value}", param_hint=option)
    return values


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
