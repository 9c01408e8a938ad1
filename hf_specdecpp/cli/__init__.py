"""The `hf-specdecpp` command line: one typer app, each command group registered from its own module.

Command modules import only typer at module level; each command imports what it needs when it runs, so
`hf-specdecpp --help` does not load torch or transformers.
"""

from __future__ import annotations

import typer

from . import bench, hub_method, method_list, models, recalibrate, training

app = typer.Typer(
    name="hf-specdecpp",
    help="SpecDec++ adaptive speculative decoding for Hugging Face transformers.",
    no_args_is_help=True,
    add_completion=False,
)

for _module in (models, method_list, training, recalibrate, hub_method, bench):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
