"""The training loss and the dev metrics of an acceptance head (pure functions of logits and soft labels)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .common import train_extra


def weighted_bce_from_logits(logits: torch.Tensor, labels: torch.Tensor, w_accept: float = 1.0,
                             w_reject: float = 6.0) -> torch.Tensor:
    """Soft-label weighted BCE normalised by the total weight (numerically stable: logsigmoid of logits).

    Args:
        logits (`torch.Tensor` of shape `(N,)`): acceptance logits (any shape works, element-wise).
        labels (`torch.Tensor` of shape `(N,)`): soft acceptance labels P in [0, 1], cast to the logits' dtype.
        w_accept (`float`, *optional*, defaults to 1.0): the weight of the accepted part, `w_acc`.
        w_reject (`float`, *optional*, defaults to 6.0): the weight of the rejected part, `w_rej`.

    Returns:
        `torch.Tensor` of shape `()`: `-sum(w_acc*P*log P̂ + w_rej*(1-P)*log(1-P̂)) / sum(w_acc*P + w_rej*(1-P))`,
        with P̂ = sigmoid(logits) (the denominator clamped to at least 1e-12).
    """
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

    Args:
        pred_accept (`np.ndarray` of shape `(N,)`): predicted acceptance probabilities P̂.
        labels (`np.ndarray` of shape `(N,)`): soft acceptance labels P in [0, 1].

    Returns:
        `float`: the weighted AUROC of predicting rejection, in [0, 1], or NaN.

    Raises:
        MissingExtraError: scikit-learn (the `[train]` extra) is not installed.
    """
    roc_auc_score = train_extra("sklearn.metrics", "the dev AUROC").roc_auc_score
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
    """Dev metrics of acceptance logits against soft labels, plus the constant predictors' scores.

    Args:
        logits (`np.ndarray` of shape `(N,)`): the head's acceptance logits (computed in float64).
        labels (`np.ndarray` of shape `(N,)`): soft acceptance labels in [0, 1].
        w_accept (`float`): the loss weight of acceptance (for `weighted_bce`).
        w_reject (`float`): the loss weight of rejection (for `weighted_bce`).
        base_rate (`float`, *optional*, defaults to `None`): the training labels' mean; when given, the scores of
            constant predictors built from it are added.

    Returns:
        `dict[str, float]`: `weighted_bce`, `bce` (unweighted), `kl` (BCE minus the labels' mean binary entropy),
        `auroc_reject` (see `rejection_auroc`), `ece` (10 bins), `mean_pred`, `mean_label` and `rows` (an `int`);
        with `base_rate`, also `baseline_bce` (the constant `base_rate`) and `baseline_weighted_bce` (the constant
        minimising the weighted BCE on labels with that mean).

    Raises:
        MissingExtraError: scikit-learn (the `[train]` extra) is not installed.
    """
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
