"""train's checkpoints: the whole training state after each epoch, written atomically and checked on resume.

In `output_dir/checkpoint/`: `epoch-NNNNN/` (accelerate's state: model, optimizer, scheduler, RNG; the trainer
state `trainer_state.json`; the best head so far, `best_head.safetensors`) and `manifest.json`, written last,
naming the epoch, its folder and the sha256 of every file in it. A save is written to `.tmp-epoch-NNNNN/`,
appears by one rename, and the manifest then switches to it; older epoch folders are removed after that. A run
killed anywhere inside a save therefore leaves the previous manifest and its complete folder, and `--resume`
continues from exactly that state. Resume refuses a checkpoint whose files do not match the manifest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..utils.folders import file_checksums, publish_folder, remove_entries, verify_checksums
from ..utils.io import FileFormatError, read_json_object, write_json
from .common import TrainingError

CHECKPOINT_DIR = "checkpoint"
MANIFEST_FILE = "manifest.json"
STATE_FILE = "trainer_state.json"
BEST_HEAD_FILE = "best_head.safetensors"
FORMAT = "hf-specdecpp train checkpoint"
VERSION = 1
_EPOCH_FOLDER = re.compile(r"^epoch-\d{5}$")
_OURS = re.compile(r"^(\.tmp-)?epoch-\d{5}$")


def checkpoint_dir(output_dir: Path) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR


def has_checkpoint(output_dir: Path) -> bool:
    """Whether `output_dir` holds a training run. Refuses a `checkpoint` folder holding files we did not write."""
    ckpt = checkpoint_dir(output_dir)
    if not ckpt.exists():
        return False
    if not ckpt.is_dir():
        raise TrainingError(f"{ckpt} exists and is not a folder: choose another output folder")
    if (ckpt / MANIFEST_FILE).exists() or (ckpt / STATE_FILE).exists():
        return True
    foreign = sorted(c.name for c in ckpt.iterdir() if not _OURS.match(c.name))
    if foreign:
        raise TrainingError(f"{ckpt} holds {foreign[0]!r}, which hf-specdecpp did not write: refusing to write "
                            "checkpoints there. Choose another output folder.")
    return False  # only the debris of a first save that was interrupted


def save_checkpoint(accelerator, output_dir: Path, state: dict, best_head: dict[str, torch.Tensor]) -> None:
    """Write the state after epoch `state["epochs_done"]` atomically (see the module docstring)."""
    ckpt = checkpoint_dir(output_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{state['epochs_done']:05d}"
    tmp = ckpt / f".tmp-{name}"
    remove_entries(ckpt, [tmp.name])  # debris of an interrupted save of this epoch
    accelerator.save_state(str(tmp))
    write_json(tmp / STATE_FILE, state)
    save_file({k: v.detach().cpu().contiguous() for k, v in best_head.items()}, str(tmp / BEST_HEAD_FILE))
    files = file_checksums(tmp)
    remove_entries(ckpt, [name])  # a folder of this epoch that no manifest names (an interrupted save)
    publish_folder(tmp, ckpt / name)
    write_json(ckpt / MANIFEST_FILE, {"format": FORMAT, "version": VERSION, "epoch": state["epochs_done"],
                                      "folder": name, "files": files})
    remove_entries(ckpt, [c.name for c in ckpt.iterdir() if _OURS.match(c.name) and c.name != name])


def load_checkpoint(output_dir: Path) -> tuple[dict, Path, dict[str, torch.Tensor]] | None:
    """(trainer state, epoch folder for `accelerator.load_state`, best head state) of the checkpoint in
    `output_dir`, every file checked against the manifest; None when there is no checkpoint."""
    if not has_checkpoint(output_dir):
        return None
    ckpt = checkpoint_dir(output_dir)
    if not (ckpt / MANIFEST_FILE).is_file():
        raise TrainingError(f"{ckpt} was written by an older hf-specdecpp, without a manifest: it cannot be checked "
                            "and may mix two epochs. Train into a new folder.")
    try:
        manifest = _read_manifest(ckpt / MANIFEST_FILE)
        folder = ckpt / manifest["folder"]
        verify_checksums(folder, manifest["files"], f"checkpoint {ckpt}")
        state = _read_state(folder / STATE_FILE, manifest["epoch"])
        best = load_file(str(folder / BEST_HEAD_FILE))
    except (FileFormatError, OSError) as err:
        raise TrainingError(f"Cannot resume from {ckpt}: {err}. The checkpoint is damaged; train into a new "
                            "folder (or delete the checkpoint folder to start over).") from None
    return state, folder, best


def _read_manifest(path: Path) -> dict:
    manifest = read_json_object(path, "checkpoint manifest")
    files = manifest.get("files")
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("epoch"), int) \
            or not _EPOCH_FOLDER.match(str(manifest.get("folder"))) or not isinstance(files, dict):
        raise FileFormatError(f"checkpoint manifest {path} is not a {FORMAT!r} manifest (format, epoch, folder, files)")
    missing = [name for name in (STATE_FILE, BEST_HEAD_FILE) if name not in files]
    if missing:
        raise FileFormatError(f"checkpoint manifest {path} does not list {missing[0]}")
    return manifest


def _read_state(path: Path, epoch: int) -> dict[str, Any]:
    state = read_json_object(path, "trainer state")
    kinds = {"args": dict, "data": dict, "epochs_done": int, "history": list}
    for key, kind in kinds.items():
        if not isinstance(state.get(key), kind):
            raise FileFormatError(f"trainer state {path}: {key} must be a {kind.__name__}")
    if state["epochs_done"] != epoch or len(state["history"]) != epoch:
        raise FileFormatError(f"trainer state {path} describes epoch {state['epochs_done']} but the manifest names "
                              f"epoch {epoch}")
    if not isinstance(state.get("best"), dict):
        raise FileFormatError(f"trainer state {path}: best must be an object")
    return state
