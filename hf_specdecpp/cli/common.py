"""What every CLI command shares: one-line errors and warnings instead of tracebacks, a short summary (JSON on
request), option parsing.

Nothing here imports torch or transformers at module level, so `hf-specdecpp --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import typer

EXPECTED_ERRORS = ("TrainingError", "FileFormatError", "FetchError", "ResumeError", "MissingExtraError",
                   "CacheSupportError", "UpstreamChangedError", "ConfigSelectionError")
"""Errors that describe bad input or a missing resource: printed as one red line, exit status 1."""

DTYPES = ("float32", "bfloat16", "float16")


def friendly(func=None, *, on_interrupt: str = "run the same command again to resume."):
    """Expected failures print one red line and exit with status 1, without a traceback; Ctrl-C prints
    "Interrupted; " + `on_interrupt` and exits with status 130. Use as `@friendly` or `friendly(f, on_interrupt=...)`.
    """
    if func is None:
        return functools.partial(friendly, on_interrupt=on_interrupt)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning  # restored when the command ends
                return func(*args, **kwargs)
        except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError) as err:
            _fail(str(err))
        except KeyboardInterrupt:
            from rich.console import Console

            Console(stderr=True).print(f"[yellow]Interrupted; {on_interrupt}[/]", highlight=False)
            raise typer.Exit(code=130) from None
        except Exception as err:
            if type(err).__name__ in EXPECTED_ERRORS or any(c.__name__ in EXPECTED_ERRORS for c in type(err).__mro__):
                _fail(str(err))
            raise

    return wrapper


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    # escaped: `pip install "hf-specdecpp[train]"` must not lose `[train]` as rich markup; soft wrap: paths unbroken
    Console(stderr=True, soft_wrap=True).print(f"[bold red]Error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=1)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings during a command: one yellow line on stderr, without the source line python would print."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[yellow]Warning:[/] {escape(str(message))}", highlight=False)


def flag(default: bool, *names: str, help: str):
    """A boolean flag option, shown in `--help` without a `<bool>` value it does not take."""
    return typer.Option(default, *names, help=help, metavar="")


def json_flag():
    """The `--json` option of the commands that report a result."""
    return flag(False, "--json", help="Print the result as JSON instead of a short summary.")


def report(summary: list[str], data: dict, as_json: bool) -> None:
    """Print a command's result: a few human lines on stdout, or `data` as JSON with `--json`."""
    if as_json:
        print_json(data)
        return
    for line in summary:
        typer.echo(line)


def print_json(obj) -> None:
    from rich.console import Console

    Console().print_json(json.dumps(obj, default=str))


def check_inputs(folders: dict[str, Path | None] | None = None, files: dict[str, Path | None] | None = None,
                 models: tuple[str | None, ...] = (), dtype: str | None = None) -> None:
    """The cheap checks of a command's inputs, before torch or transformers is imported (seconds): each folder
    and file exists, each model id is a Hub id or an existing folder, the dtype is known.

    Args:
        folders: {what the folder holds: path} (None: not given).
        files: {what the file holds: path}.
        models: model ids or local folders.
        dtype: a `--dtype` value ("auto" or one of DTYPES).
    """
    from ..utils.folders import local_folder

    for what, path in (folders or {}).items():
        if path is not None and not Path(path).is_dir():
            raise (NotADirectoryError if Path(path).exists() else FileNotFoundError)(
                f"No such {what} folder: {path}" + (" (it is a file)" if Path(path).exists() else ""))
    for what, path in (files or {}).items():
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
    for model in models:
        if model is not None:
            local_folder(model, "model")
    if dtype is not None and dtype != "auto" and dtype not in DTYPES:
        raise typer.BadParameter(f"unknown dtype {dtype!r}; choose auto or one of {', '.join(DTYPES)}",
                                 param_hint="--dtype")


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
