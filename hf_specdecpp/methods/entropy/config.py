"""The entropy method's settings: the threshold, the estimator, its entropy scale and the bounds on candidates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...core.validation import check_candidate_bounds, check_number
from ..config_base import MethodConfig, document_fields
from .estimators import DEFAULT_GAMMA, Estimator, estimate_acceptance, svip_stop


@document_fields
@dataclass(frozen=True)
class EntropyConfig(MethodConfig):
    """Stop drafting after a token whose training-free acceptance estimate falls below `lam` (SVIP: whose
    sqrt(gamma * H) exceeds `lam`)."""

    method: ClassVar[str] = "entropy"

    lam: float = field(default=0.5, metadata={"help": (
        "The threshold: stop once the estimate falls below it; with estimator='svip' it is SVIP's h (stop once "
        "sqrt(gamma * H) > h).")})
    gamma: float | None = field(default=None, metadata={"help": (
        "The entropy scale (> 0); None: the estimator's default (1 for AdaEDL, 0.15 for SVIP).")})
    estimator: Estimator = field(default="entropy", metadata={"help": (
        "'entropy' (AdaEDL's bound 1 - sqrt(gamma * H)), 'top1' (the draft's top-1 probability) or 'svip'.")})
    min_candidates: int = field(default=1, metadata={"help": "Fewest candidates drafted per round (>= 1)."})
    max_candidates: int = field(default=20, metadata={"help": "Most candidates drafted per round."})

    def __post_init__(self):
        super().__post_init__()
        check_number("lam", self.lam)
        if self.gamma is None:
            object.__setattr__(self, "gamma", DEFAULT_GAMMA[self.estimator])
        check_number("gamma", self.gamma, 0.0, None, low_open=True)
        check_candidate_bounds(self.min_candidates, self.max_candidates)

    def stop(self, scores: torch.Tensor) -> torch.Tensor:
        """Per row: stop drafting after the token drawn from `scores` (the loop applies the bounds).

        Args:
            scores (`torch.Tensor` of shape `(batch_size, vocab_size)`): the processed draft scores.

        Returns:
            `torch.Tensor` (bool) of shape `(batch_size,)`.
        """
        if self.estimator == "svip":
            return svip_stop(scores, self.lam, self.gamma)
        return estimate_acceptance(scores, self.estimator, self.gamma) < self.lam
