"""The `push-method` command: publish SpecDec++ as a Hub `custom_generate` repo."""

from __future__ import annotations

import typer

from .common import friendly


def register(app: typer.Typer) -> None:
    """Add the `push-method` command to the typer `app`."""

    @app.command("push-method")
    @friendly
    def push_method_command(
        repo_id: str = typer.Argument(..., help="Hub repo to publish to, namespace/name (created if missing)."),
        private: bool = typer.Option(False, "--private", help="Create the repo private."),
        local_dir: str = typer.Option(None, "--local-dir",
                                      help="Write the repo to this new local folder instead of pushing it."),
    ) -> None:
        """Publish SpecDec++ as a transformers `custom_generate` method: `model.generate(...,
        custom_generate=REPO_ID, trust_remote_code=True, draft_model=...)` then works without importing it.

        A new repo gets a README (tagged `custom_generate`) and `custom_generate/`; an existing repo gets
        `custom_generate/` only, its README and other files untouched."""
        from ..integration.hub_method import push_method, write_method_repo

        if local_dir is not None:
            typer.echo(f"wrote {write_method_repo(local_dir)}")
            return
        commit = push_method(repo_id, private=private)
        typer.echo(f"pushed {repo_id} ({commit.oid[:12]}); use: model.generate(..., custom_generate={repo_id!r}, "
                   "trust_remote_code=True, draft_model=...)")
