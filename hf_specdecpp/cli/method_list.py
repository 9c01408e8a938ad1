"""The `methods` command: the registered decoding methods, what each does, and its settings."""

from __future__ import annotations

import typer

from .common import friendly


def register(app: typer.Typer) -> None:
    """Add the `methods` command to the typer `app`."""

    @app.command("methods")
    @friendly
    def methods_command(
        name: str = typer.Argument(None, help="A registered method name: show its settings with their help text."),
    ) -> None:
        """List the decoding methods (registry name, class, description), or one method's config fields."""
        from ..methods import registry

        if name is None:
            for entry in (registry.get(n) for n in registry.names()):
                typer.echo(f"{entry.name:<10} {entry.method_class.__name__:<16} {entry.description}")
            return
        try:
            entry = registry.get(name)
        except KeyError as err:
            raise typer.BadParameter(str(err.args[0]), param_hint="NAME") from None
        typer.echo(f"{entry.name}: {entry.method_class.__name__}({entry.config_class.__name__}) - {entry.description}")
        typer.echo(entry.settings_doc())
