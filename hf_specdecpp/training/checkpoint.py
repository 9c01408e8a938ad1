"""train's checkpoints: the whole training state after each epoch, written atomically and checked on resume.

In `output_dir/checkpoint/`: `epoch-NNNNN/` and `manifest.json`, written last, naming the format version, the
epoch, its folder and the sha256 of every file in it. An epoch folder holds only files this module writes and
reads back without unpickling anything (a checkpoint folder from someone else cannot run code): the head's
weights `model.safetensors`, the optimizer's tensors `optimizer.safetensors` and settings `optimizer.json`, the
learning-rate schedule `scheduler.json`, the trainer state `trainer_state.json` and the best head so far
`best_head.safetensors`. (Training needs no random state: the head has no dropout and each epoch's shuffle is
derived from the seed.)

A save is written to `.tmp-epoch-NNNNN/`, appears by one rename, and the manifest then switches to it; older
epoch folders and the temporary files of killed saves are removed after that. A run killed anywhere inside a
save therefore leaves the previous manifest and its complete folder, and `--resume` continues from exactly that
state. Resume refuses a checkpoint whose files do not match the manifest, one that lists files this module does
not write, one of an older format (accelerate's pickles), and epoch folders without a manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
MODEL_FILE = "model.safetensors"
OPTIMIZER_TENSORS_FILE = "optimizer.safetensors"
OPTIMIZER_FILE = "optimizer.json"
SCHEDULER_FILE = "scheduler.json"
EPOCH_FILES = (STATE_FILE, BEST_HEAD_FILE, MODEL_FILE, OPTIMIZER_TENSORS_FILE, OPTIMIZER_FILE, SCHEDULER_FILE)
FORMAT = "hf-specdecpp train checkpoint"
VERSION = 2  # version 1 held accelerate's pickled state
_EPOCH_FOLDER = re.compile(r"^epoch-\d{5}$")
_OURS = re.compile(r"^(\.tmp-)?epoch-\d{5}$|^\.manifest\.json\.\d+\.tmp$")


@dataclass
class Checkpoint:
    """What an epoch folder restores: the trainer state and the state dicts of the head, optimizer and schedule,
    and the best head so far."""

    state: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_head: dict[str, torch.Tensor]


def checkpoint_dir(output_dir: Path) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR


def has_checkpoint(output_dir: Path) -> bool:
    """Whether `output_dir` holds a training run. Refuses a `checkpoint` folder holding files we did not write."""
    ckpt = checkpoint_dir(output_dir)
    if not ckpt.exists():
        return False
    if not ckpt.is_dir():
        raise TrainingError(f"{ckpt} exists and is not a folder: choose another output folder")
    if (ckpt / MANIFEST_FILE).exists() or (ckpt / STATE_FILE).exists() or _epoch_folders(ckpt):
        return True
    foreign = sorted(c.name for c in ckpt.iterdir() if not _OURS.match(c.name))
    if foreign:
        raise TrainingError(f"{ckpt} holds {foreign[0]!r}, which hf-specdecpp did not write: refusing to write "
                            "checkpoints there. Choose another output folder.")
    return False  # only the temporary files of a first save that was interrupted


def _epoch_folders(ckpt: Path) -> list[str]:
    return sorted(c.name for c in ckpt.iterdir() if _EPOCH_FOLDER.match(c.name))


def save_checkpoint(output_dir: Path, checkpoint: Checkpoint) -> None:
    """Write the state after epoch `checkpoint.state["epochs_done"]` atomically (see the module docstring).

    Args:
        output_dir: the `train` output folder; the checkpoint goes to its `checkpoint/` subfolder.
        checkpoint: the trainer state and the state dicts to restore on resume.
    """
    ckpt = checkpoint_dir(output_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{checkpoint.state['epochs_done']:05d}"
    tmp = ckpt / f".tmp-{name}"
    remove_entries(ckpt, [tmp.name])  # debris of an interrupted save of this epoch
    tmp.mkdir()
    optimizer_tensors, optimizer_settings = _split_optimizer_state(checkpoint.optimizer)
    save_file(_cpu(checkpoint.model), str(tmp / MODEL_FILE))
    save_file(optimizer_tensors, str(tmp / OPTIMIZER_TENSORS_FILE))
    write_json(tmp / OPTIMIZER_FILE, optimizer_settings)
    write_json(tmp / SCHEDULER_FILE, checkpoint.scheduler)
    write_json(tmp / STATE_FILE, checkpoint.state)
    save_file(_cpu(checkpoint.best_head), str(tmp / BEST_HEAD_FILE))
    files = file_checksums(tmp)
    remove_entries(ckpt, [name])  # a folder of this epoch that no manifest names (an interrupted save)
    publish_folder(tmp, ckpt / name)
    write_json(ckpt / MANIFEST_FILE, {"format": FORMAT, "version": VERSION, "epoch": checkpoint.state["epochs_done"],
                                      "folder": name, "files": files})
    remove_entries(ckpt, [c.name for c in ckpt.iterdir() if _OURS.match(c.name) and c.name != name])


def load_checkpoint(output_dir: Path) -> Checkpoint | None:
    """The checkpoint in `output_dir`, every file checked against the manifest; None when there is none.

    Raises:
        TrainingError: the checkpoint is damaged, of an older format, lists files this module does not write,
            or its epoch folders have no manifest.
    """
    if not has_checkpoint(output_dir):
        return None
    ckpt = checkpoint_dir(output_dir)
    if not (ckpt / MANIFEST_FILE).is_file():
        found = _epoch_folders(ckpt)
        what = f"epoch folders ({', '.join(found)})" if found else "a trainer state"
        raise TrainingError(f"{ckpt} holds {what} but no {MANIFEST_FILE} (written by an older hf-specdecpp, or "
                            "removed): its files cannot be checked, so it is not resumed and nothing in it is "
                            f"deleted. Train into a new folder, or delete {ckpt} yourself to start over.")
    try:
        manifest = _read_manifest(ckpt / MANIFEST_FILE)
    except (FileFormatError, OSError) as err:
        raise TrainingError(f"Cannot resume from {ckpt}: {err}. The checkpoint is damaged; train into a new "
                            "folder (or delete the checkpoint folder to start over).") from None
    _check_trusted(manifest, ckpt / MANIFEST_FILE)
    folder = ckpt / manifest["folder"]
    try:
        verify_checksums(folder, manifest["files"], f"checkpoint {ckpt}")
        state = _read_state(folder / STATE_FILE, manifest["epoch"])
        checkpoint = Checkpoint(
            state=state,
            model=load_file(str(folder / MODEL_FILE)),
            optimizer=_join_optimizer_state(load_file(str(folder / OPTIMIZER_TENSORS_FILE)),
                                            read_json_object(folder / OPTIMIZER_FILE, "optimizer state")),
            scheduler=read_json_object(folder / SCHEDULER_FILE, "scheduler state"),
            best_head=load_file(str(folder / BEST_HEAD_FILE)),
        )
    except (FileFormatError, OSError) as err:
        raise TrainingError(f"Cannot resume from {ckpt}: {err}. The checkpoint is damaged; train into a new "
                            "folder (or delete the checkpoint folder to start over).") from None
    except Exception as err:  # safetensors raises its own types for corrupt files
        raise TrainingError(f"Cannot resume from {ckpt}: a file in {folder} cannot be read ({err}). Train into a "
                            "new folder (or delete the checkpoint folder to start over).") from None
    return checkpoint


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's `state_dict()` as (tensors for safetensors, JSON settings): `state.<param>.<name>` keys."""
    tensors, scalars = {}, {}
    for param, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param}.{key}"] = value
            else:
                scalars.setdefault(str(param), {})[key] = value
    return _cpu(tensors), {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], settings: dict) -> dict:
    """The inverse of `_split_optimizer_state`; a malformed key or settings file is a FileFormatError."""
    groups = settings.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                               for g in groups):
        raise FileFormatError("optimizer.json: param_groups must be a list of objects with params")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
            raise FileFormatError(f"{OPTIMIZER_TENSORS_FILE}: unexpected tensor {key!r}")
        state.setdefault(int(parts[1]), {})[parts[2]] = value
    for param, values in (settings.get("scalars") or {}).items():
        state.setdefault(int(param), {}).update(values)
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def _read_manifest(path: Path) -> dict:
    manifest = read_json_object(path, "checkpoint manifest")
    files = manifest.get("files")
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("epoch"), int) \
            or not _EPOCH_FOLDER.match(str(manifest.get("folder"))) or not isinstance(files, dict):
        raise FileFormatError(f"checkpoint manifest {path} is not a {FORMAT!r} manifest (format, epoch, folder, files)")
    missing = [name for name in EPOCH_FILES if name not in files] if manifest.get("version") == VERSION else []
    if missing:
        raise FileFormatError(f"checkpoint manifest {path} does not list {missing[0]}")
    return manifest


def _check_trusted(manifest: dict, path: Path) -> None:
    """Refuse a manifest of another format version or listing files this module does not write: nothing in such
    a folder is loaded (older versions held pickles, and unpickling a file from someone else can run code)."""
    if manifest.get("version") != VERSION:
        raise TrainingError(f"Cannot resume from {path.parent}: its checkpoint format (version "
                            f"{manifest.get('version')!r}) holds pickled state, which hf-specdecpp no longer loads "
                            f"(unpickling can run code). Train into a new folder.")
    foreign = sorted(set(manifest["files"]) - set(EPOCH_FILES))
    if foreign:
        raise TrainingError(f"Cannot resume from {path.parent}: {path} lists {foreign[0]!r}, which hf-specdecpp "
                            "does not write; refusing to load anything from that folder. Train into a new folder.")


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
