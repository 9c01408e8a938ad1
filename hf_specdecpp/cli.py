"""The `hf-specdecpp` command line: one typer app, each command group registered from its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="hf-specdecpp",
    help="SpecDec++ adaptive speculative decoding for Hugging Face transformers.",
    no_args_is_help=True,
    add_completion=False,
)

# Each module below defines `register(app)` adding its commands; keep one line per module.
# --- command registrations (one per line) ---
from .models.fetch import register as _register_models; _register_models(app)  # noqa: E402,E702
from .training.commands import register as _register_training; _register_training(app)  # noqa: E402,E702
from .benchmarks.commands import register as _register_bench; _register_bench(app)  # noqa: E402,E702
# --- end of command registrations ---


def main() -> None:
    app()


if __name__ == "__main__":
    main()
