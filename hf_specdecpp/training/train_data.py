"""What `train` reads: the checked make-data folder, its train/dev columns for one head type, and batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..head import AcceptanceHead
from .common import TrainingError, check_declared_ids
from .data_folder import read_manifest, read_metadata
from .shards import head_input_columns, load_head_inputs


@dataclass
class TrainingData:
    """A make-data folder's training rows (memory-mapped) and its dev rows (in memory) for one head type."""

    data_dir: Path
    meta: dict
    manifest: dict
    columns: tuple[str, str | None, str]
    train: Any
    dev_hidden: torch.Tensor
    dev_features: torch.Tensor | None
    dev_labels: np.ndarray
    base_rate: float


def load_training_data(data_dir: Path, input_state: str, use_confidence_features: bool,
                       declared: dict[str, str | None]) -> TrainingData:
    """Read and check the data set; `declared` ids (draft/target) must name the models it was made with."""
    meta = read_metadata(data_dir)
    manifest = read_manifest(data_dir)
    check_declared_ids(meta, declared, str(data_dir))
    columns = head_input_columns(input_state, use_confidence_features)
    train, dev = load_head_inputs(data_dir, "train", columns), load_head_inputs(data_dir, "dev", columns)
    if len(train) == 0:
        raise TrainingError(f"No training records in {data_dir}")
    if len(dev):
        dev_hidden, dev_features, dev_labels = batch_arrays(dev, range(len(dev)), columns)
        dev_labels = dev_labels.numpy()
    else:
        dev_hidden, dev_features, dev_labels = torch.zeros(0), None, np.zeros(0, np.float32)
    base_rate = float(np.mean(np.concatenate([np.asarray(l) for l in train[columns[2]]])))
    return TrainingData(data_dir, meta, manifest, columns, train, dev_hidden, dev_features, dev_labels, base_rate)


def data_identity(meta: dict) -> dict:
    """What makes a data set 'the same' for training: models, decoding, mixing, source."""
    return {k: meta.get(k) for k in ("draft", "target", "vocab_size", "hidden_size", "decoding", "mix_ratio",
                                      "responses", "source", "max_new_tokens")}


def _stack_rows(values) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1, np.shape(v)[-1])
                                            for v in values]))


def batch_arrays(ds, indices, columns: tuple[str, str | None, str]):
    """(hidden, features or None, labels) tensors of the label rows of the responses `indices`."""
    hidden_col, feature_col, label_col = columns
    rows = ds[list(indices)]
    hidden = _stack_rows(rows[hidden_col])
    features = _stack_rows(rows[feature_col]) if feature_col is not None else None
    labels = torch.from_numpy(np.concatenate([np.asarray(l, dtype=np.float32) for l in rows[label_col]]))
    return hidden, features, labels


def epoch_batches(num_rows: int, batch_size: int, seed: int, epoch: int, num_processes: int) -> list[list[int]]:
    """The epoch's batches of response indices (a seeded shuffle), trimmed to a multiple of the processes."""
    perm = np.random.default_rng(seed * 7919 + epoch).permutation(num_rows).tolist()
    batches = [perm[i:i + batch_size] for i in range(0, num_rows, batch_size)]
    usable = (len(batches) // num_processes) * num_processes or len(batches)
    return batches[:usable]


@torch.no_grad()
def predict_logits(head: AcceptanceHead, hidden: torch.Tensor, features: torch.Tensor | None = None,
                   chunk: int = 8192) -> torch.Tensor:
    """The head's logits for rows of hidden states (and confidence features), in chunks."""
    device = next(head.parameters()).device
    out = []
    for i in range(0, len(hidden), chunk):
        f = None if features is None else features[i:i + chunk].to(device, torch.float32)
        out.append(head.logits(hidden[i:i + chunk].to(device, torch.float32), f).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
