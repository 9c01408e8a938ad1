"""Training-free estimates of the acceptance of a drafted token from the draft's own distribution: AdaEDL's entropy
bound, top-1 probability, and SVIP's entropy threshold."""

from __future__ import annotations

from typing import Literal, get_args

import torch

from ...head import top1_probability

Estimator = Literal["entropy", "top1", "svip"]
ESTIMATORS = get_args(Estimator)
DEFAULT_GAMMA = {"entropy": 1.0, "top1": 1.0, "svip": 0.15}
"""The entropy scale each estimator starts with: AdaEDL's 1 (top-1 ignores it); SVIP's 0.15, the constant of
its released implementation (cross entropy approximated as a constant times the draft entropy)."""


def draft_entropy(scores: torch.Tensor) -> torch.Tensor:
    """H(softmax(scores)) in nats per row, `0 * log 0 = 0` (masked -inf entries do not count).

    Args:
        scores (`torch.Tensor` of shape `(..., vocab_size)`): processed draft scores.

    Returns:
        `torch.Tensor` of shape `(...)`: float32 entropies.
    """
    return torch.special.entr(torch.softmax(scores.float(), dim=-1)).sum(dim=-1)


def svip_stop(scores: torch.Tensor, h: float, gamma: float = DEFAULT_GAMMA["svip"]) -> torch.Tensor:
    """SVIP (Zhang et al., arXiv:2411.18462): stop after a token drafted from `scores` when sqrt(gamma * H) > h.

    H is the draft's entropy in nats; sqrt(gamma * H) estimates the total variation between draft and target
    (via Pinsker, with the cross entropy approximated by a constant times H), i.e. 1 - acceptance.

    Args:
        scores (`torch.Tensor` of shape `(batch_size, vocab_size)`): processed draft scores.
        h (`float`): SVIP's threshold.
        gamma (`float`, *optional*, defaults to 0.15): the entropy scale.

    Returns:
        `torch.BoolTensor` of shape `(batch_size,)`: True where drafting stops.
    """
    return torch.sqrt(gamma * draft_entropy(scores).clamp_min(0.0)) > h


def estimate_acceptance(scores: torch.Tensor, estimator: str = "entropy", gamma: float = 1.0) -> torch.Tensor:
    """Training-free estimate of the acceptance probability of a token drafted from `scores` (batch, vocab).

    `scores` are the draft's PROCESSED scores (after the call's logits processors), i.e. the distribution the
    token was drawn from; p = softmax(scores).

    - "entropy" (AdaEDL, Agrawal et al., 2024, arXiv:2410.18351): `1 - sqrt(gamma * H(p))`, H in nats
      (`0 * log 0 = 0`, so masked entries of -inf do not count). This can be negative for flat distributions.
    - "top1": `max_v p_v`, the draft's own confidence in its most likely token.

    Args:
        scores (`torch.Tensor` of shape `(batch_size, vocab_size)`): processed draft scores.
        estimator (`str`, *optional*, defaults to `"entropy"`): `"entropy"` or `"top1"`.
        gamma (`float`, *optional*, defaults to 1.0): the entropy scale ("entropy" only).

    Returns:
        `torch.Tensor` of shape `(batch_size,)`: the estimates (float32).
    """
    if estimator == "entropy":
        return 1.0 - torch.sqrt(gamma * draft_entropy(scores).clamp_min(0.0))
    if estimator == "top1":
        return top1_probability(scores)
    raise ValueError(f"estimator must be one of {ESTIMATORS[:2]} (SVIP: svip_stop), got {estimator!r}")
