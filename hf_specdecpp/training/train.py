"""train: fit the acceptance head on cached draft hidden states (the draft is never run here).

Loss: soft-label weighted BCE `-(w_acc*P*log P̂ + w_rej*(1-P)*log(1-P̂))` normalised by the total weight
`sum(w_acc*P + w_rej*(1-P))`, computed from logits with logsigmoid. AdamW + cosine schedule with warmup.
`accelerate` runs the same code on CPU, one GPU or several (`accelerate launch -m hf_specdecpp.cli train ...`):
each process takes every n-th batch of responses. After every epoch the dev split is scored (weighted BCE,
plain BCE, binary KL to the soft labels, AUROC of predicting rejection, ECE); the best head by dev weighted BCE
is saved with `save_pretrained` in `output_dir`, and the full training state in `output_dir/checkpoint` so an
interrupted run resumes at the next epoch (`resume=True`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..head import DRAFTED_TOKEN, INPUT_STATES, PRODUCING_STATE, AcceptanceHead
from ..utils.io import diff_settings, read_json, write_json
from .common import TrainingError, progress
from .data import PROGRESS_FILE, head_input_columns, load_head_inputs, read_metadata

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"


# ---------------------------------------------------------------------------------------------- loss and metrics
def weighted_bce_from_logits(logits: torch.Tensor, labels: torch.Tensor, w_accept: float = 1.0,
                             w_reject: float = 6.0) -> torch.Tensor:
    """Soft-label weighted BCE normalised by the total weight (numerically stable: logsigmoid of logits)."""
    labels = labels.to(logits.dtype)
    log_acc = F.logsigmoid(logits)
    log_rej = F.logsigmoid(-logits)
    weights = w_accept * labels + w_reject * (1.0 - labels)
    loss = -(w_accept * labels * log_acc + w_reject * (1.0 - labels) * log_rej).sum()
    return loss / weights.sum().clamp_min(1e-12)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def rejection_auroc(pred_accept: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of the score `1 - P̂` for REJECTION, with soft labels as weights.

    Every row counts as a rejected example with weight `1 - P` and as an accepted one with weight `P`; for hard
    0/1 labels this is the ordinary AUROC. NaN when one class has no weight.
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=np.float64)
    score = 1.0 - np.asarray(pred_accept, dtype=np.float64)
    y = np.concatenate([np.ones_like(labels), np.zeros_like(labels)])
    w = np.concatenate([1.0 - labels, labels])
    if w[y == 1].sum() <= 0 or w[y == 0].sum() <= 0:
        return float("nan")
    keep = w > 0
    return float(roc_auc_score(y[keep], np.concatenate([score, score])[keep], sample_weight=w[keep]))


def expected_calibration_error(pred: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE with `bins` equal-width bins of the predicted acceptance probability."""
    pred = np.asarray(pred, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    idx = np.minimum((pred * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(pred[sel].mean() - labels[sel].mean())
    return float(ece)


def evaluate_predictions(logits: np.ndarray, labels: np.ndarray, w_accept: float, w_reject: float,
                         base_rate: float | None = None) -> dict[str, float]:
    """Dev metrics of acceptance logits against soft labels, plus the constant predictors' scores."""
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    labels_t = torch.as_tensor(labels, dtype=torch.float64)
    pred = torch.sigmoid(logits_t).numpy()
    bce = float(weighted_bce_from_logits(logits_t, labels_t, 1.0, 1.0))
    out = {
        "weighted_bce": float(weighted_bce_from_logits(logits_t, labels_t, w_accept, w_reject)),
        "bce": bce,
        "kl": float(bce - _binary_entropy(labels).mean()),
        "auroc_reject": rejection_auroc(pred, labels),
        "ece": expected_calibration_error(pred, labels),
        "mean_pred": float(pred.mean()),
        "mean_label": float(labels.mean()),
        "rows": int(len(labels)),
    }
    if base_rate is not None:
        p = float(np.clip(base_rate, 1e-6, 1 - 1e-6))
        const = torch.full_like(labels_t, math.log(p / (1 - p)))
        out["baseline_bce"] = float(weighted_bce_from_logits(const, labels_t, 1.0, 1.0))
        # The constant minimising the weighted BCE on the training labels.
        pw = w_accept * p / (w_accept * p + w_reject * (1 - p))
        const_w = torch.full_like(labels_t, math.log(pw / (1 - pw)))
        out["baseline_weighted_bce"] = float(weighted_bce_from_logits(const_w, labels_t, w_accept, w_reject))
    return out


# ---------------------------------------------------------------------------------------------- data access
def _stack_rows(values) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1, np.shape(v)[-1])
                                            for v in values]))


def _batch_arrays(ds, indices, columns: tuple[str, str | None, str]):
    """(hidden, features or None, labels) tensors of the label rows of the responses `indices`."""
    hidden_col, feature_col, label_col = columns
    rows = ds[list(indices)]
    hidden = _stack_rows(rows[hidden_col])
    features = _stack_rows(rows[feature_col]) if feature_col is not None else None
    labels = torch.from_numpy(np.concatenate([np.asarray(l, dtype=np.float32) for l in rows[label_col]]))
    return hidden, features, labels


def _epoch_batches(num_rows: int, batch_size: int, seed: int, epoch: int, num_processes: int) -> list[list[int]]:
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


# ---------------------------------------------------------------------------------------------- the command
def data_identity(meta: dict) -> dict:
    """What makes a data set 'the same' for training: models, decoding, mixing, source."""
    return {k: meta.get(k) for k in ("draft", "target", "vocab_size", "hidden_size", "decoding", "mix_ratio",
                                      "responses", "source", "max_new_tokens")}


def train_head(
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    num_layers: int = 3,
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.03,
    w_reject: float = 6.0,
    w_accept: float = 1.0,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    resume: bool = False,
    draft_model_id: str | None = None,
    target_model_id: str | None = None,
    input_state: str = DRAFTED_TOKEN,
    use_confidence_features: bool = False,
    feature_lr: float = 1e-2,
    cpu: bool = False,
    show_progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Train an acceptance head from a make-data folder; returns the trainer state (history, best metrics).

    `batch_size` counts responses per optimizer step (all their label rows). `draft_model_id`/`target_model_id`
    are the ids the head declares; they default to the data set's and must match it. `input_state` and
    `use_confidence_features` choose the head type (see `AcceptanceHead`); the confidence-feature weights learn
    at `feature_lr`, the hidden-state path at `lr`.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    data_dir, output_dir = Path(data_dir), Path(output_dir)
    meta = read_metadata(data_dir)
    manifest = read_json(data_dir / PROGRESS_FILE)
    for role, declared in (("draft", draft_model_id), ("target", target_model_id)):
        if declared is not None and declared != meta[role]["id"]:
            raise TrainingError(f"The head is declared for {role} {declared!r} but the data set {data_dir} was made with "
                                f"{role} {meta[role]['id']!r}.")
    if epochs < 1 or batch_size < 1 or lr <= 0 or feature_lr <= 0:
        raise TrainingError("epochs and batch size must be >= 1 and the learning rates > 0")
    if input_state not in INPUT_STATES:
        raise TrainingError(f"input state must be one of {INPUT_STATES}, got {input_state!r}")
    if use_confidence_features and input_state != PRODUCING_STATE:
        raise TrainingError(f"confidence features need the {PRODUCING_STATE!r} input state")
    columns = head_input_columns(input_state, use_confidence_features)
    train_ds, dev_ds = load_head_inputs(data_dir, "train", columns), load_head_inputs(data_dir, "dev", columns)
    if len(train_ds) == 0:
        raise TrainingError(f"No training records in {data_dir}")

    args = dict(num_layers=num_layers, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                warmup_ratio=warmup_ratio, w_reject=w_reject, w_accept=w_accept, max_grad_norm=max_grad_norm, seed=seed,
                input_state=input_state, use_confidence_features=use_confidence_features, feature_lr=feature_lr)
    identity = data_identity(meta)
    ckpt = output_dir / CHECKPOINT_DIR
    state: dict[str, Any]
    if resume and (ckpt / STATE_FILE).is_file():
        state = read_json(ckpt / STATE_FILE)
        diffs = diff_settings(state["data"], identity) + diff_settings(state["args"], args)
        if diffs:
            raise TrainingError(f"Cannot resume {output_dir}: the checkpoint was made for other data or settings: "
                                + "; ".join(diffs))
    else:
        if (ckpt / STATE_FILE).is_file() and not resume:
            raise TrainingError(f"{output_dir} already holds a training run; pass resume (--resume) to continue it "
                                "or choose a new folder")
        state = {"args": args, "data": identity, "epochs_done": 0, "history": [], "best": None}

    accelerator = Accelerator(cpu=cpu)
    set_seed(seed)
    base_rate = float(np.mean(np.concatenate([np.asarray(l) for l in train_ds[columns[2]]]))) if len(train_ds) else 0.5
    decoding = meta["decoding"]
    head = AcceptanceHead(
        hidden_size=meta["hidden_size"], num_layers=num_layers,
        input_state=input_state, use_confidence_features=use_confidence_features,
    )
    # Start from P = 0.5 everywhere: real draft hidden states (post final norm) have large norms, and a randomly
    # initialised classifier then starts at huge logits and losses.
    torch.nn.init.zeros_(head.classifier.weight)
    torch.nn.init.zeros_(head.classifier.bias)
    model = _Logits(head)
    feature_params = list(head.feature_classifier.parameters()) if head.feature_classifier is not None else []
    hidden_params = [p for n, p in head.named_parameters() if not n.startswith("feature_classifier.")]
    groups = [{"params": hidden_params, "lr": lr}]
    if feature_params:
        groups.append({"params": feature_params, "lr": feature_lr})
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(_epoch_batches(len(train_ds), batch_size, seed, 0, accelerator.num_processes)) \
        // accelerator.num_processes
    total_steps = max(1, steps_per_epoch * epochs)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(round(warmup_ratio * total_steps)), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if state["epochs_done"] > 0:
        accelerator.load_state(str(ckpt))

    if len(dev_ds):
        dev_hidden, dev_features, dev_labels = _batch_arrays(dev_ds, range(len(dev_ds)), columns)
        dev_labels = dev_labels.numpy()
    else:
        dev_hidden, dev_features, dev_labels = torch.zeros(0), None, np.zeros(0, np.float32)
    rank, world = accelerator.process_index, accelerator.num_processes
    for epoch in range(state["epochs_done"], epochs):
        model.train()
        batches = _epoch_batches(len(train_ds), batch_size, seed, epoch, world)[rank::world]
        total_loss, total_rows = 0.0, 0
        bar = progress(batches, desc=f"train epoch {epoch + 1}/{epochs}",
                       disable=not show_progress or not accelerator.is_local_main_process, unit="batch")
        for batch in bar:
            hidden, features, labels = _batch_arrays(train_ds, batch, columns)
            hidden, labels = hidden.to(accelerator.device), labels.to(accelerator.device)
            logits = model(hidden, None if features is None else features.to(accelerator.device))
            loss = weighted_bce_from_logits(logits, labels, w_accept, w_reject)
            optimizer.zero_grad()
            accelerator.backward(loss)
            if max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(labels)
            total_rows += len(labels)
        bar.close()
        unwrapped = accelerator.unwrap_model(model).head
        unwrapped.eval()
        metrics = {"epoch": epoch + 1, "train_weighted_bce": total_loss / max(total_rows, 1),
                   "lr": scheduler.get_last_lr()[0]}
        if len(dev_labels):
            metrics.update(evaluate_predictions(predict_logits(unwrapped, dev_hidden, dev_features).numpy(), dev_labels,
                                                w_accept, w_reject, base_rate))
        state["history"].append(metrics)
        key = metrics.get("weighted_bce", metrics["train_weighted_bce"])
        improved = state["best"] is None or key < state["best"]["score"]
        if improved:
            state["best"] = {"epoch": epoch + 1, "score": key, "metrics": metrics}
        state["epochs_done"] = epoch + 1
        if accelerator.is_main_process:
            if improved:
                _save_head(unwrapped, output_dir, meta, manifest, args, state, data_dir)
            accelerator.save_state(str(ckpt))
            write_json(ckpt / STATE_FILE, state)
        accelerator.wait_for_everyone()
        if show_progress and accelerator.is_main_process:
            _print_epoch(metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, metrics)
    if accelerator.is_main_process and state["best"] is not None:
        # Record the final history in the saved (best) head without touching its weights.
        best = AcceptanceHead.from_pretrained(str(output_dir))
        _save_head(best, output_dir, meta, manifest, args, state, data_dir)
    return state


class _Logits(torch.nn.Module):
    """Wraps the head so that its forward returns logits: what `accelerate`/DDP wraps and trains."""

    def __init__(self, head: AcceptanceHead):
        super().__init__()
        self.head = head

    def forward(self, hidden: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head.logits(hidden, features)


def _print_epoch(m: dict) -> None:
    from rich.console import Console

    parts = [f"epoch {m['epoch']}", f"train wBCE {m['train_weighted_bce']:.4f}"]
    for key, name in (("weighted_bce", "dev wBCE"), ("bce", "dev BCE"), ("kl", "KL"), ("auroc_reject", "AUROC(rej)"),
                      ("ece", "ECE"), ("baseline_bce", "base-rate BCE")):
        if key in m:
            parts.append(f"{name} {m[key]:.4f}")
    Console(stderr=True).print(" | ".join(parts))


def _save_head(head: AcceptanceHead, output_dir: Path, meta: dict, manifest: dict, args: dict, state: dict,
               data_dir: Path) -> None:
    totals = manifest.get("totals", {})
    info = dict(head.training_info or {})
    info.update({
        "data": {
            "path": str(data_dir),
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
    info.update(draft_model_id=meta["draft"]["id"], target_model_id=meta["target"]["id"])
    head.training_info = info
    output_dir.mkdir(parents=True, exist_ok=True)
    head.save_pretrained(str(output_dir))  # refuses a folder whose files are not ours; regenerates our own card
