"""make-data's shards: one `datasets` Arrow folder per split per shard, written atomically with per-file
checksums, and read back checked (checksums, then labels in [0, 1], finite features and consistent shapes).

Every error names the data folder and the shard (`train-00003`), so a damaged file is found, not trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..head import CONFIDENCE_FEATURES, PRODUCING_STATE
from ..utils.folders import file_checksums, publish_folder, remove_entries
from .common import TrainingError, quiet_datasets, train_extra
from .data_folder import SHARDS_DIR, SPLITS, read_manifest, read_metadata, shard_name, verify_shard_files


def features_for(split: str, hidden_size: int, drafted_token: bool = True):
    """The Arrow schema of a shard of `split` (the dev split of a data set with drafted-token inputs adds the
    r = 0 calibration pass)."""
    datasets = train_extra("datasets", "make-data")
    Array2D, Sequence, Value = datasets.Array2D, datasets.Sequence, datasets.Value
    cols = {
        "prompt_index": Value("int64"),
        "prompt_length": Value("int32"),
        "response_tokens": Sequence(Value("int32")),
        "draft_tokens": Sequence(Value("int32")),
        "positions": Sequence(Value("int32")),
        "labels": Sequence(Value("float32")),
        "hidden": Array2D(shape=(None, hidden_size), dtype="float16"),
        "context_hidden": Array2D(shape=(None, hidden_size), dtype="float16"),
        "context_features": Array2D(shape=(None, len(CONFIDENCE_FEATURES)), dtype="float32"),
        "context_labels": Sequence(Value("float32")),
    }
    if split == "dev" and drafted_token:
        cols["calib_labels"] = Sequence(Value("float32"))
        cols["calib_hidden"] = Array2D(shape=(None, hidden_size), dtype="float16")
    return datasets.Features(cols)


def write_shard(output_dir: Path, shard: int, rows: dict, hidden_size: int,
                drafted_token: bool = True) -> dict[str, str]:
    """Write each split's rows of `shard` (a temporary folder, then one rename); return the files' checksums
    for the manifest."""
    datasets = train_extra("datasets", "make-data")
    checksums = {}
    for split in SPLITS:
        if not rows[split]:
            continue
        features = features_for(split, hidden_size, drafted_token)
        columns = {name: [r[name] for r in rows[split]] for name in features}
        ds = datasets.Dataset.from_dict(columns, features=features)
        name = shard_name(split, shard)
        shards = output_dir / SHARDS_DIR
        remove_entries(shards, [f".tmp-{name}", name])
        with quiet_datasets():
            ds.save_to_disk(str(shards / f".tmp-{name}"))
        checksums.update(file_checksums(shards / f".tmp-{name}", prefix=f"{name}/"))
        publish_folder(shards / f".tmp-{name}", shards / name)
    return checksums


def load_shard(data_dir: Path, split: str, shard: int, entry: dict, hidden_size: int):
    """One shard, its files and contents checked."""
    datasets = train_extra("datasets", "reading a make-data folder")
    verify_shard_files(data_dir, split, shard, entry)
    name = shard_name(split, shard)
    try:
        ds = datasets.load_from_disk(str(data_dir / SHARDS_DIR / name))
    except Exception as err:  # arrow/datasets raise many types for unreadable files
        raise TrainingError(f"{data_dir}: shard {name} cannot be read ({type(err).__name__}: {err})") from None
    check_shard_content(ds, f"{data_dir}: shard {name}", hidden_size)
    return ds


def load_features(data_dir: str | os.PathLike, split: str = "train", require_complete: bool = True):
    """The `split` records of a make-data folder as one memory-mapped `datasets.Dataset` (shards concatenated,
    each checked against its checksums and for valid labels, features and shapes).

    Args:
        data_dir (`str` or `os.PathLike`): a make-data output folder.
        split (`str`, *optional*, defaults to `"train"`): `"train"` or `"dev"`.
        require_complete (`bool`, *optional*, defaults to `True`): refuse a folder whose make-data has not finished
            (`False`: read the shards finished so far).

    Returns:
        `datasets.Dataset`: one record per response; empty (with the split's features) when no shard holds any.

    Raises:
        TrainingError: make-data has not finished (with `require_complete`), or a shard is damaged or unreadable.
        FileFormatError: the metadata or the manifest (`progress.json`) is malformed.
        FileNotFoundError: the folder has no manifest.
        MissingExtraError: `datasets` (the `[train]` extra) is not installed.
    """
    datasets = train_extra("datasets", "reading a make-data folder")
    data_dir = Path(data_dir)
    meta = read_metadata(data_dir)
    manifest = read_manifest(data_dir)
    if require_complete and not manifest.get("complete"):
        raise TrainingError(f"make-data has not finished in {data_dir}: run the same make-data command again to resume")
    parts = [load_shard(data_dir, split, int(shard), entry, meta["hidden_size"])
             for shard, entry in sorted(manifest["shards"].items(), key=lambda kv: int(kv[0]))
             if entry.get(split, 0) > 0]
    if not parts:
        return datasets.Dataset.from_dict({}, features=features_for(split, meta["hidden_size"],
                                                                     has_drafted_token_inputs(meta)))
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def head_input_columns(input_state: str, use_confidence_features: bool,
                       calibration: bool = False) -> tuple[str, str | None, str]:
    """(hidden, confidence features or None, labels): the columns a head of this type trains on.

    Drafted-token heads train on the mixed positions (`hidden`, `labels`) and calibrate on the dev split's r = 0
    pass (`calib_*`); producing-state heads use the `context_*` columns for both.
    """
    if input_state == PRODUCING_STATE:
        return "context_hidden", "context_features" if use_confidence_features else None, "context_labels"
    return ("calib_hidden", None, "calib_labels") if calibration else ("hidden", None, "labels")


def has_drafted_token_inputs(meta: dict) -> bool:
    """Whether a data set holds drafted-token head inputs (make-data `--head-inputs all`, the default)."""
    return meta.get("head_inputs", "all") == "all"


def load_head_inputs(data_dir: str | os.PathLike, split: str, columns: tuple[str, str | None, str]):
    """The `split` records reduced to `columns` (see `head_input_columns`), numpy-formatted; a clear error when
    the data set predates them or was made without them."""
    if columns[0] in ("hidden", "calib_hidden") and not has_drafted_token_inputs(read_metadata(Path(data_dir))):
        raise TrainingError(f"{data_dir} was made with `--head-inputs producing_state`: it holds no inputs for a "
                            "drafted-token head. Train a producing-state head (`--input-state producing_state`) "
                            "or run make-data again with `--head-inputs all`.")
    ds = load_features(data_dir, split)
    wanted = [c for c in columns if c is not None]
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise TrainingError(f"{data_dir} has no {missing} columns: it was made by an older make-data (format < "
                            "2, before the producing-state columns). Run make-data again into a new folder.")
    return ds.select_columns(wanted).with_format("numpy")


# ---------------------------------------------------------------------------------------------- content checks
_SHAPES = (  # column, the column whose lengths it must match per record, row width ("H": hidden size), values
    ("draft_tokens", "response_tokens", None, None),
    ("labels", "positions", None, "probability"),
    ("hidden", "positions", "H", "finite"),
    ("context_hidden", "response_tokens", "H", "finite"),
    ("context_features", "response_tokens", len(CONFIDENCE_FEATURES), "finite"),
    ("context_labels", "response_tokens", None, "probability"),
    ("calib_labels", "response_tokens", None, "probability"),
    ("calib_hidden", "response_tokens", "H", "finite"),
)


def check_shard_content(ds, where: str, hidden_size: int) -> None:
    """Refuse labels outside [0, 1], NaN/inf features, missing values and per-record shapes that disagree."""
    table = ds.data.table
    for column, reference, width, values in _SHAPES:
        if column not in table.column_names or reference not in table.column_names:
            continue
        array, ref = _storage(table, column, where), _storage(table, reference, where)
        lengths, ref_lengths = _lengths(array), _lengths(ref)
        bad = np.flatnonzero(lengths != ref_lengths)
        if len(bad):
            raise TrainingError(f"{where}: record {bad[0]} has {lengths[bad[0]]} {column} rows but "
                                f"{ref_lengths[bad[0]]} {reference}: the shard is inconsistent")
        _check_values(array, column, hidden_size if width == "H" else width, values, where)
    if "positions" in table.column_names and "response_tokens" in table.column_names:
        lengths = _lengths(_storage(table, "response_tokens", where))
        _check_positions(_storage(table, "positions", where), lengths, where)


def _storage(table, column: str, where: str):
    import pyarrow as pa

    array = table.column(column).combine_chunks()
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if array.null_count:
        raise TrainingError(f"{where}: column {column} has missing values")
    return array


def _lengths(array) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_value_length(array).to_numpy(zero_copy_only=False)


def _check_values(array, column: str, width: int | None, values: str | None, where: str) -> None:
    import pyarrow.compute as pc

    flat = pc.list_flatten(array)
    if width is not None:
        widths = pc.list_value_length(flat).to_numpy(zero_copy_only=False)
        if len(widths) and (widths != width).any():
            raise TrainingError(f"{where}: {column} rows have width {widths[widths != width][0]}, expected {width}")
        flat = pc.list_flatten(flat)
    if values is None:
        return
    data = flat.to_numpy(zero_copy_only=False)
    if not np.isfinite(data).all():
        raise TrainingError(f"{where}: {column} holds NaN or infinite values")
    if values == "probability" and len(data) and (data.min() < 0 or data.max() > 1):
        raise TrainingError(f"{where}: {column} holds values outside [0, 1] (from {data.min():g} to "
                            f"{data.max():g}); acceptance labels are probabilities")


def _check_positions(positions, response_lengths: np.ndarray, where: str) -> None:
    import pyarrow.compute as pc

    values = pc.list_flatten(positions).to_numpy(zero_copy_only=False)
    rows = pc.list_parent_indices(positions).to_numpy(zero_copy_only=False)
    if len(values) and ((values < 0) | (values >= response_lengths[rows])).any():
        raise TrainingError(f"{where}: positions outside their response")
