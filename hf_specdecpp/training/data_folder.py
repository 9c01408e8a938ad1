"""A make-data folder on disk: its marker, `metadata.json`, the `progress.json` manifest, and what may be
deleted there.

The folder is recognisable as ours by a marker file written before anything else (`MARKER_FILE`). Only a folder
with the marker is resumed or (with `overwrite`) emptied, and then only of the files make-data writes: a
user's other files in it are never touched. Finished shards are listed in the manifest with the sha256 of
every file; a resumed run checks them before adding to the folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..utils.folders import remove_entries, verify_checksums
from ..utils.io import FileFormatError, diff_settings, read_json_object, write_json
from ..utils.warnings import warn_once
from .common import TrainingError

FORMAT_VERSION = 3  # 2: the producing-state columns (`context_*`); 3: the marker and per-file shard checksums
MARKER_FILE = ".hf_specdecpp_data.json"
MARKER = {"format": "hf-specdecpp make-data", "version": FORMAT_VERSION}
METADATA_FILE = "metadata.json"
PROGRESS_FILE = "progress.json"
PROCESS_PROGRESS = "progress.rank{rank}.json"
"""What each of several make-data processes has finished, merged into `PROGRESS_FILE` by the main process."""
_PROCESS_PROGRESS_ENTRY = re.compile(r"^progress\.rank\d+\.json$")
SHARDS_DIR = "shards"
SPLITS = ("train", "dev")
SHARD_COUNTS = ("prompts", "skipped", "context_cut", "train", "dev", "train_tokens", "dev_tokens",
                "train_label_rows", "dev_label_rows")
_OUR_SHARD_ENTRY = re.compile(r"^\.?(tmp-)?(train|dev)-\d{5}$")


def shard_name(split: str, shard: int) -> str:
    return f"{split}-{int(shard):05d}"


def has_marker(folder: Path) -> bool:
    """Whether `folder` carries make-data's marker (a damaged marker is reported, not taken for ours)."""
    path = folder / MARKER_FILE
    if not path.is_file():
        return False
    marker = read_json_object(path, "make-data marker")
    if marker.get("format") != MARKER["format"]:
        raise FileFormatError(f"make-data marker {path} names format {marker.get('format')!r}, not "
                              f"{MARKER['format']!r}")
    return True


def open_output(output_dir: Path, metadata: dict, overwrite: bool, num_shards: int) -> dict:
    """The manifest to continue from: a new folder's, or a resumable folder's (settings and finished shards
    checked). With `overwrite`, a folder make-data wrote is emptied of its own files first."""
    if output_dir.exists() and not output_dir.is_dir():
        raise TrainingError(f"{output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not has_marker(output_dir):
            what = "holds a metadata.json but no " if (output_dir / METADATA_FILE).exists() else "has no "
            raise TrainingError(f"{output_dir} {what}make-data marker ({MARKER_FILE}): it was not written by this "
                                "version of make-data, so nothing there is resumed, overwritten or deleted. Choose "
                                "a new or empty folder.")
        if overwrite or not (output_dir / METADATA_FILE).is_file():
            remove_own_files(output_dir)
        else:
            return resume_manifest(output_dir, metadata)
    return create_folder(output_dir, metadata, num_shards)


def create_folder(output_dir: Path, metadata: dict, num_shards: int) -> dict:
    """Write the marker first (so the folder is ours from its first file), then the metadata and the manifest."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / MARKER_FILE, MARKER)
    (output_dir / SHARDS_DIR).mkdir(exist_ok=True)
    write_json(output_dir / METADATA_FILE, metadata)
    manifest = {"num_shards": num_shards, "shards": {}, "complete": False}
    write_json(output_dir / PROGRESS_FILE, manifest)
    return manifest


def remove_own_files(output_dir: Path) -> None:
    """Delete what make-data writes in `output_dir` (shards, manifest, metadata; the marker last, so an
    interrupted deletion can be repeated); anything else stays."""
    remove_stale_shards(output_dir, keep=set())
    shards = output_dir / SHARDS_DIR
    if shards.is_dir() and not any(shards.iterdir()):
        shards.rmdir()
    remove_entries(output_dir, [*process_progress_files(output_dir), PROGRESS_FILE, METADATA_FILE, MARKER_FILE])


def remove_stale_shards(output_dir: Path, keep: set[str]) -> None:
    """Delete make-data's shard folders (and their temporary folders) in `shards/` except those named in `keep`."""
    shards = output_dir / SHARDS_DIR
    if shards.is_dir():
        remove_entries(shards, [c.name for c in shards.iterdir()
                                if _OUR_SHARD_ENTRY.match(c.name) and c.name not in keep])


def resume_manifest(output_dir: Path, metadata: dict) -> dict:
    """The manifest of a folder made with the same models and settings; refuses anything else unchanged."""
    old = read_metadata(output_dir)
    diffs = diff_settings(comparable(old), comparable(metadata))
    if diffs:
        raise TrainingError(f"{output_dir} holds data made with other models or settings; nothing was changed. "
                            "Differences: " + "; ".join(diffs) + ". Use a new folder or --overwrite.")
    manifest = merge_process_progress(output_dir, read_manifest(output_dir))  # an interrupted multi-process run
    for shard, entry in sorted(manifest["shards"].items(), key=lambda kv: int(kv[0])):
        for split in SPLITS:
            verify_shard_files(output_dir, split, int(shard), entry)
    # Shard folders not in the manifest are leftovers of an interrupted shard: remove them.
    remove_stale_shards(output_dir, keep={shard_name(s, k) for k in manifest["shards"] for s in SPLITS})
    return manifest


def verify_shard_files(data_dir: Path, split: str, shard: int, entry: dict) -> None:
    """Refuse a shard whose files differ from the checksums the manifest recorded (a data set of an older
    make-data, which recorded none, is read with a warning)."""
    if entry.get(split, 0) == 0:
        return
    name = shard_name(split, shard)
    if "files" not in entry:
        warn_once(f"unverified-data:{os.path.abspath(data_dir)}",
                  f"{data_dir} was written by an older make-data that recorded no checksums: damaged shard files "
                  "cannot be detected. Run make-data again into a new folder to get checked data.")
        return
    try:
        verify_checksums(Path(data_dir) / SHARDS_DIR / name, entry["files"], f"{data_dir}: shard {name}",
                         prefix=f"{name}/")
    except FileFormatError as err:
        raise TrainingError(f"{err}. The data set is damaged: run make-data again into a new folder (or with "
                            "--overwrite).") from None


def process_progress_files(output_dir: Path) -> list[str]:
    """The names of the per-process progress files in `output_dir`."""
    return sorted(p.name for p in Path(output_dir).glob("progress.rank*.json") if _PROCESS_PROGRESS_ENTRY.match(p.name))


def record_shard(output_dir: Path, manifest: dict, shard: int, entry: dict, rank: int, processes: int) -> None:
    """Add a finished shard to the manifest (one process) or to this process's progress file (several: no
    process writes another's file)."""
    manifest["shards"][str(shard)] = entry
    if processes == 1:
        write_json(output_dir / PROGRESS_FILE, manifest)
    else:
        mine = {k: v for k, v in manifest["shards"].items() if int(k) % processes == rank}
        write_json(output_dir / PROCESS_PROGRESS.format(rank=rank), {"num_shards": manifest["num_shards"],
                                                                      "shards": mine, "complete": False})


def merge_process_progress(output_dir: Path, manifest: dict) -> dict:
    """The manifest with the shards every per-process progress file lists (their checksums are checked when the
    shards are), written back, the progress files then removed (the main process only)."""
    names = process_progress_files(output_dir)
    if not names:
        return manifest
    for name in names:
        part = read_manifest(output_dir, name)
        if part["num_shards"] != manifest["num_shards"]:
            raise FileFormatError(f"{output_dir / name} lists {part['num_shards']} shards, the manifest "
                                  f"{manifest['num_shards']}: it belongs to another run")
        manifest["shards"].update(part["shards"])
    write_json(output_dir / PROGRESS_FILE, manifest)
    remove_entries(output_dir, names)
    return manifest


def comparable(metadata: dict) -> dict:
    """Metadata for comparison: JSON types, and local model/prompt paths resolved (one folder, any spelling)."""
    meta = json.loads(json.dumps(metadata, default=str))
    for role in ("draft", "target"):
        if isinstance(meta.get(role), dict) and isinstance(meta[role].get("id"), str):
            meta[role]["id"] = _resolved(meta[role]["id"])
    source = meta.get("source")
    if isinstance(source, dict) and isinstance(source.get("path"), str):
        source["path"] = _resolved(source["path"])
    return meta


def _resolved(path: str) -> str:
    return os.path.realpath(path) if os.path.exists(path) else path


def read_metadata(data_dir: str | os.PathLike) -> dict:
    """`metadata.json` of a make-data folder, its types checked; errors name the file.

    Args:
        data_dir (`str` or `os.PathLike`): a make-data output folder.

    Returns:
        `dict`: the metadata: `hidden_size`, `vocab_size`, `max_new_tokens`, `mix_ratio`, `responses`, `decoding`
        (with `do_sample`), `source`, `draft` and `target` (each with `id` and `weights_sha`), and any other keys.

    Raises:
        TrainingError: the folder holds no `metadata.json`.
        FileFormatError: the file is not UTF-8 JSON, not an object, or a key is missing or of the wrong type.
    """
    path = Path(data_dir) / METADATA_FILE
    if not path.is_file():
        raise TrainingError(f"{data_dir} is not a make-data output folder (no {METADATA_FILE})")
    meta = read_json_object(path, "make-data metadata")
    expected = {"hidden_size": int, "vocab_size": int, "max_new_tokens": int, "mix_ratio": (int, float),
                "responses": str, "decoding": dict, "source": dict, "draft": dict, "target": dict}
    _check_types(meta, expected, path)
    for role in ("draft", "target"):
        _check_types(meta[role], {"id": str, "weights_sha": str}, path, prefix=f"{role}.")
    _check_types(meta["decoding"], {"do_sample": bool}, path, prefix="decoding.")
    if meta["hidden_size"] < 1:
        raise FileFormatError(f"make-data metadata {path}: hidden_size must be >= 1, got {meta['hidden_size']}")
    return meta


def read_manifest(data_dir: str | os.PathLike, name: str = PROGRESS_FILE) -> dict:
    """`progress.json` (the manifest of finished shards, or a per-process part of it), its types checked; errors
    name the file."""
    path = Path(data_dir) / name
    manifest = read_json_object(path, "make-data manifest")
    _check_types(manifest, {"shards": dict, "complete": bool, "num_shards": int}, path)
    for shard, entry in manifest["shards"].items():
        if not shard.isdigit() or not isinstance(entry, dict):
            raise FileFormatError(f"make-data manifest {path}: shard {shard!r} must be a number with an object")
        counts = {key: int for key in SHARD_COUNTS if key in entry}
        _check_types(entry, {"prompts": int, "train": int, "dev": int, **counts}, path, prefix=f"shards.{shard}.")
        files = entry.get("files", {})
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise FileFormatError(f"make-data manifest {path}: shards.{shard}.files must map names to checksums")
    return manifest


_TYPE_NAMES = {int: "an integer", str: "a string", dict: "an object", bool: "true or false"}


def _check_types(obj: dict, expected: dict, path: Path, prefix: str = "") -> None:
    for key, kind in expected.items():
        value = obj.get(key)
        if isinstance(value, bool) and kind is not bool:
            value = None  # JSON true/false is not a number here
        if not isinstance(value, kind):
            raise FileFormatError(f"{path}: {prefix}{key} must be {_TYPE_NAMES.get(kind, 'a number')}, "
                                  f"got {obj.get(key)!r}")
