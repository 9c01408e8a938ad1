"""push: upload a trained, calibrated head (weights, config, policy, traces, model card) to the Hugging Face Hub."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

from ..head import AcceptanceHead
from .common import TrainingError
from .head_files import PLOT_FILE, check_head_folder, save_head


def _load(head_dir: str | os.PathLike) -> AcceptanceHead:
    try:
        return AcceptanceHead.from_pretrained(str(head_dir))
    except (OSError, ValueError) as err:
        raise TrainingError(f"Could not load the acceptance head in {head_dir}: {err}") from err


def export_head(head_dir: str | os.PathLike, output_dir: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Write exactly what `push_head` uploads (weights, config, policy, traces, model card, plot) to a folder.

    The folder must be new, empty, or a head folder written by this package (`AcceptanceHead.save_pretrained`
    refuses anything else); a model card written or edited by hand there is kept.

    Args:
        head_dir (`str` or `os.PathLike`): a trained (and calibrated) head folder.
        output_dir (`str` or `os.PathLike`): the folder to write.
        repo_id (`str`, *optional*, defaults to `None`): the Hub repo the model card names (`None`: `output_dir`).

    Returns:
        `Path`: `output_dir`.

    Raises:
        TrainingError: the head cannot be loaded, or `output_dir` holds files this package did not write.
    """
    head = _load(head_dir)
    output_dir = Path(output_dir)
    plot = Path(head_dir) / PLOT_FILE
    check_head_folder(output_dir, plot=plot.is_file())
    save_head(head, output_dir, model_card_kwargs={"repo_id": repo_id or str(output_dir)})
    if plot.is_file() and plot.resolve() != (output_dir / PLOT_FILE).resolve():
        shutil.copy(plot, output_dir / PLOT_FILE)
    return output_dir


def _http_client_errors() -> tuple[type[Exception], ...]:
    """The errors of huggingface_hub's HTTP client when an endpoint cannot be reached (a refused connection, a
    timeout): `httpx2` or `httpx`, depending on its version."""
    errors = []
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def push_head(head_dir: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool | None = None,
              endpoint: str | None = None, revision: str | None = None,
              commit_message: str = "Upload SpecDec++ acceptance head") -> str:
    """Upload the head in `head_dir` to the Hub repo `repo_id`; returns the commit URL.

    Args:
        head_dir (`str` or `os.PathLike`): a trained (and calibrated) head folder; its files are those `export_head`
            writes.
        repo_id (`str`): the Hub repo, created if missing.
        token (`str`, *optional*, defaults to `None`): a Hub token (`None`: the user's saved one).
        private (`bool`, *optional*, defaults to `None`): whether a new repo is private (`None`: the Hub's default).
        endpoint (`str`, *optional*, defaults to `None`): the Hub endpoint (`None`: `HF_ENDPOINT` or the Hub).
        revision (`str`, *optional*, defaults to `None`): the branch to commit to (`None`: the default branch).
        commit_message (`str`, *optional*, defaults to `"Upload SpecDec++ acceptance head"`): the commit message.

    Returns:
        `str`: the URL of the commit.

    Raises:
        TrainingError: the head folder is missing or cannot be loaded, or the Hub refused or could not be reached.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not Path(head_dir).is_dir():
        raise TrainingError(f"Head folder not found: {head_dir}")
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_head(head_dir, Path(tmp) / "head", repo_id=repo_id)
        try:
            repo = api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
            commit = api.upload_folder(repo_id=repo.repo_id, folder_path=str(folder), commit_message=commit_message,
                                       revision=revision)
        except (HfHubHTTPError, OSError, ValueError, *_http_client_errors()) as err:
            where = endpoint or os.environ.get("HF_ENDPOINT") or "the Hub"
            raise TrainingError(f"Could not push to {repo_id!r} at {where}: {type(err).__name__}: {err}. "
                                "`push --local-dir DIR` writes the same files to a folder instead.") from err
    return str(getattr(commit, "commit_url", commit))
