"""The entropy method's settings: the threshold or the cost-aware rule, the estimator, its entropy scale, the bounds
on candidates and the costs the cost-aware rule reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...core.cost_aware import ASSUMED_COST_RATIO, OnlineSettings, StopRuleName, assumed_verify_costs, fixed_k_rate
from ...core.validation import check_candidate_bounds, check_number
from ..config_base import MethodConfig, document_fields
from .estimators import DEFAULT_GAMMA, Estimator, estimate_acceptance, svip_stop


@document_fields
@dataclass(frozen=True)
class EntropyConfig(MethodConfig):
    """Stop drafting after a token whose training-free acceptance estimate falls below `lam` (SVIP: whose
    sqrt(gamma * H) exceeds `lam`), or, with `stop_rule="cost-aware"`, when one more token no longer pays for its
    cost (`core.cost_aware`, the estimate calibrated online; `lam` is then unused)."""

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
    stop_rule: StopRuleName = field(default="threshold", metadata={"help": (
        "'threshold': stop at `lam`. 'cost-aware': draft on while the estimate, calibrated online during the call, "
        "says one more token pays for its cost at the call's own tokens-per-cost rate (core.cost_aware).")})
    cost_ratio: float | None = field(default=None, metadata={"help": (
        "The cost-aware rule's c: a draft step in target steps on this machine (`curve = "
        "hf_specdecpp.core.costs.measure_costs(draft, target)` times it: `curve.c_draft`). None: 0.3, an "
        "assumption.")})
    verify_costs: tuple[float, ...] | None = field(default=None, metadata={"help": (
        "The cost-aware rule's v(0), v(1), ...: verifying K candidates in target steps (v(0) = 1; measured: "
        "`tuple(curve.table(max_candidates))`). None: 1 + 0.02 K, an assumption.")})

    def __post_init__(self):
        super().__post_init__()
        check_number("lam", self.lam)
        if self.gamma is None:
            object.__setattr__(self, "gamma", DEFAULT_GAMMA[self.estimator])
        check_number("gamma", self.gamma, 0.0, None, low_open=True)
        check_candidate_bounds(self.min_candidates, self.max_candidates)
        check_number("cost_ratio", self.cost_ratio, 0.0, None, low_open=True, allow_none=True)
        if self.verify_costs is not None:
            object.__setattr__(self, "verify_costs", check_verify_costs(self.verify_costs))

    def costs(self) -> tuple[float, tuple[float, ...]]:
        """(c, v(0), v(1), ...) the cost-aware rule reads: `cost_ratio` and `verify_costs`, assumed where None."""
        c = self.cost_ratio if self.cost_ratio is not None else ASSUMED_COST_RATIO
        return c, self.verify_costs if self.verify_costs is not None else assumed_verify_costs(self.max_candidates)

    def cost_aware_settings(self) -> OnlineSettings:
        """The cost-aware rule's settings: its prior rate is `fixed_k_rate` of `costs()` (there is no simulated
        policy to take it from)."""
        return OnlineSettings(prior_rate=fixed_k_rate(*self.costs(), self.max_candidates))

    def acceptance(self, scores: torch.Tensor) -> torch.Tensor:
        """Per row: the estimated acceptance probability of the token drawn from `scores`, in [0, 1] (SVIP's
        estimate is AdaEDL's bound with SVIP's entropy scale).

        Args:
            scores (`torch.Tensor` of shape `(batch_size, vocab_size)`): the processed draft scores.

        Returns:
            `torch.Tensor` of shape `(batch_size,)`, float32.
        """
        estimator = "entropy" if self.estimator == "svip" else self.estimator
        return estimate_acceptance(scores, estimator, self.gamma).clamp(0.0, 1.0)

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


def check_verify_costs(values) -> tuple[float, ...]:
    """`verify_costs` as a tuple of positive floats, at least v(0) and v(1).

    Args:
        values: v(0), v(1), ... (any sequence of numbers, e.g. a JSON list).

    Returns:
        `tuple[float, ...]`.

    Raises:
        `ValueError`: naming `verify_costs`, for fewer than two values or one that is not a positive number.
    """
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) < 2:
        raise ValueError(f"verify_costs must list v(0), v(1), ... (at least two numbers), got {values!r}")
    return tuple(check_number(f"verify_costs[{k}]", v, 0.0, None, low_open=True) for k, v in enumerate(values))
