"""Acceptance heads shipped inside the package, trained and calibrated by the project (see each folder's README).

`load_shipped_head()` returns the default head for the Qwen2.5-Coder-0.5B-Instruct (draft) ->
Qwen2.5-Coder-1.5B-Instruct (target) pair, the pair `hf-specdecpp fetch-models` obtains.
"""

from __future__ import annotations

from pathlib import Path

from ..modeling import AcceptanceHead

HEADS_DIR = Path(__file__).parent
DEFAULT_HEAD = "qwen2.5-coder-0.5b-to-1.5b-greedy"
SAMPLING_HEAD = "qwen2.5-coder-0.5b-to-1.5b-t0.7"


def default_head_name(sampling: bool = False) -> str:
    """The shipped head for greedy decoding, or the one for sampling at temperature 0.7.

    Args:
        sampling (`bool`, *optional*, defaults to `False`): the head for sampling instead of greedy decoding.

    Returns:
        `str`: a name `shipped_heads()` lists.
    """
    return SAMPLING_HEAD if sampling else DEFAULT_HEAD


def shipped_heads() -> list[str]:
    """Names of the heads shipped with the package."""
    return sorted(p.name for p in HEADS_DIR.iterdir() if (p / "config.json").is_file())


def shipped_head_path(name: str = DEFAULT_HEAD) -> Path:
    """The folder of a shipped head (loadable with `AcceptanceHead.from_pretrained(str(path))`).

    Only the names `shipped_heads()` lists are accepted: not paths, not other folders of the package.

    Args:
        name (`str`, *optional*, defaults to `DEFAULT_HEAD`): a shipped head's name.

    Returns:
        `pathlib.Path`: its folder inside the installed package.
    """
    if not isinstance(name, str) or name not in shipped_heads():
        raise ValueError(f"No shipped acceptance head named {name!r}; shipped heads: {', '.join(shipped_heads())}. "
                         "Load other heads with AcceptanceHead.from_pretrained(path_or_repo_id).")
    return HEADS_DIR / name


def load_shipped_head(name: str = DEFAULT_HEAD) -> AcceptanceHead:
    """Load a shipped head (float32, eval mode).

    Args:
        name (`str`, *optional*, defaults to `DEFAULT_HEAD`): a shipped head's name (`shipped_heads()`).

    Returns:
        `AcceptanceHead`: the head with its calibrated policy and dev traces.
    """
    return AcceptanceHead.from_pretrained(str(shipped_head_path(name))).float().eval()


__all__ = ["DEFAULT_HEAD", "SAMPLING_HEAD", "default_head_name", "load_shipped_head", "shipped_head_path",
           "shipped_heads"]
