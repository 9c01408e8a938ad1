"""Writing a head folder from the training commands, never over a user's files, and what `train` records in it.

`AcceptanceHead.save_pretrained` refuses a folder holding head files it did not write (another model's
`config.json`, say) and keeps a model card written or edited by hand; `check_head_folder` checks that before any
work is done, and both report a refusal as a TrainingError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..head import AcceptanceHead
from ..head import check_owned_folder
from .common import TrainingError, hub_repo_id

PLOT_FILE = "calibration.png"


def check_head_folder(folder: str | os.PathLike, plot: bool = False) -> bool:
    """Refuse a folder a head may not be written to (with `plot`, also one whose `calibration.png` is not ours);
    return whether it already holds a head this package wrote."""
    folder = Path(folder)
    try:
        check_owned_folder(folder)
    except FileExistsError as err:
        raise TrainingError(str(err)) from None
    ours = (folder / "config.json").is_file()
    if plot and (folder / PLOT_FILE).exists() and not ours:
        raise TrainingError(f"{folder / PLOT_FILE} exists in a folder that holds no head: refusing to overwrite it. "
                            "Choose a new or empty folder.")
    return ours


def save_head(head: AcceptanceHead, folder: str | os.PathLike, **kwargs) -> None:
    """`head.save_pretrained(folder)` (a user's README.md there is kept), a refusal reported as a TrainingError."""
    folder = Path(folder)
    check_head_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        head.save_pretrained(str(folder), **kwargs)
    except FileExistsError as err:
        raise TrainingError(str(err)) from None


def trained_head_info(head: AcceptanceHead, meta: dict, manifest: dict, data_dir: Path, args: dict,
                      state: dict) -> dict[str, Any]:
    """`training_info.json` of a trained head: the data, decoding, arguments, best epoch and history."""
    totals = manifest.get("totals", {})
    info = dict(head.training_info or {})
    info.update({
        "data": {
            "path": os.path.abspath(data_dir),
            "source": meta["source"],
            "responses": meta["responses"],
            "mix_ratio": meta["mix_ratio"],
            "max_new_tokens": meta["max_new_tokens"],
            "train_responses": totals.get("train"),
            "dev_responses": totals.get("dev"),
            "train_label_rows": totals.get("train_label_rows"),
            "train_tokens": totals.get("train_tokens"),
            "dev_tokens": totals.get("dev_tokens"),
            "dev_label_rows": totals.get("dev_label_rows"),
            "train_rows": totals.get("train_tokens" if head.scores_without_lag else "train_label_rows"),
            "dev_rows": totals.get("dev_tokens" if head.scores_without_lag else "dev_label_rows"),
            "draft_fingerprint": meta["draft"],
            "target_fingerprint": meta["target"],
        },
        "decoding": meta["decoding"],
        "train_args": args,
        "best_epoch": state["best"]["epoch"] if state["best"] else None,
        "dev_metrics": state["best"]["metrics"] if state["best"] else None,
        "history": state["history"],
    })
    # a Hub id where the local folder is known to be a copy of one: the card names what others can download
    info.update(draft_model_id=hub_repo_id(meta["draft"]["id"]) or meta["draft"]["id"],
                target_model_id=hub_repo_id(meta["target"]["id"]) or meta["target"]["id"])
    return info
