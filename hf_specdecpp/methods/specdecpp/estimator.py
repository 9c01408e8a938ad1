"""Which acceptance estimate SpecDec++'s cost-aware rule reads: the head's prediction, or the draft's own top-1
probability, whichever predicts the head's dev-set outcomes better once each is calibrated.

Why: a head is worth reading only where it ranks and calibrates acceptance better than the confidence the draft
already reports for free. On the shipped pair it does not (issue 17; issue 26 measured it again): on the heads'
own dev traces the calibrated top-1 probability has the lower log-loss (greedy head 0.3375 against 0.3167, T = 0.7
head 0.4234 against 0.3980), and the cost-aware rule on top-1 was ahead of the same rule on the head on six of the
eight cells of the 80 + 80 prompt exact study (behind on chat under the two GPU-like cost curves). A head trained for another pair may well win; the choice is made per head
from its traces, and `estimator="head"` or `"top1"` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from ...core.cost_aware import LOGIT_BOUND, calibration_fit
from ...head import CONFIDENCE_FEATURES, AcceptanceHead

EstimatorName = Literal["auto", "head", "top1"]
ESTIMATORS = get_args(EstimatorName)


@dataclass(frozen=True)
class EstimatorChoice:
    """The estimate a call's cost-aware rule reads and the (scale, bias) its online calibration starts from.

    `dev_log_loss` holds each candidate's calibrated log-loss on the head's dev traces (empty without traces)."""

    name: Literal["head", "top1"]
    calibration: tuple[float, float] = (1.0, 0.0)
    dev_log_loss: tuple[tuple[str, float], ...] = ()


def head_calibration(head: AcceptanceHead) -> tuple[float, float]:
    """(scale, bias) of the logistic fit of the head's dev-trace predictions to their labels (`calibration_fit`),
    or (1, 0) for a head without traces: a head trained with weighted losses predicts too low or too high (the
    shipped T = 0.7 head: mean 0.47 against a mean label of 0.78), and the rule should not spend the first rounds
    of every call learning that.

    Args:
        head (`AcceptanceHead`): the head.

    Returns:
        `tuple[float, float]`.
    """
    traces = head.traces or {}
    if "pred" not in traces or "label" not in traces or traces["pred"].numel() == 0:
        return 1.0, 0.0
    return calibration_fit(traces["pred"], traces["label"])


def calibrated_log_loss(predictions: torch.Tensor, labels: torch.Tensor, fit: tuple[float, float]) -> float:
    """Mean log-loss of `predictions` on `labels` (0/1 or probabilities) after the logistic calibration `fit`.

    Args:
        predictions: probabilities, any shape.
        labels: the outcomes, the same shape.
        fit: `(scale, bias)`, their own `calibration_fit`.

    Returns:
        `float`: nats per prediction.
    """
    scale, bias = fit
    z = torch.logit(predictions.double().flatten(), eps=1e-6).clamp(-LOGIT_BOUND, LOGIT_BOUND)
    log_q = torch.nn.functional.logsigmoid(scale * z + bias)
    log_not_q = torch.nn.functional.logsigmoid(-(scale * z + bias))
    y = labels.double().flatten()
    return float(-(y * log_q + (1 - y) * log_not_q).mean())


def choose_estimator(head: AcceptanceHead, requested: EstimatorName = "auto") -> EstimatorChoice:
    """The estimate the cost-aware rule reads for `head` (see the module docstring).

    "auto" compares the head's predictions with the draft's top-1 probability (`exp(log_q_max)`, one of the
    confidence features the traces keep) by calibrated log-loss on the head's dev traces; without traces (or
    without their confidence features) it keeps the head. The head starts from its dev fit (`head_calibration`);
    top-1 starts uncalibrated, as the training-free rule does.

    Args:
        head (`AcceptanceHead`): the head.
        requested (`str`, *optional*, defaults to `"auto"`): "auto", "head" or "top1".

    Returns:
        `EstimatorChoice`.
    """
    traces = head.traces or {}
    losses: tuple[tuple[str, float], ...] = ()
    head_fit = head_calibration(head) if requested != "top1" else (1.0, 0.0)
    features, labels = traces.get("features"), traces.get("label")
    if requested == "auto" and features is not None and labels is not None and features.numel() and \
            "pred" in traces and features.shape[-1] == len(CONFIDENCE_FEATURES):
        top1 = features[..., CONFIDENCE_FEATURES.index("log_q_max")].double().exp()
        losses = (("head", calibrated_log_loss(traces["pred"], labels, head_fit)),
                  ("top1", calibrated_log_loss(top1, labels, calibration_fit(top1, labels))))
        requested = "top1" if losses[1][1] < losses[0][1] else "head"
    name = "head" if requested == "auto" else requested
    return EstimatorChoice(name, head_fit if name == "head" else (1.0, 0.0), losses)
