"""Training-free stopping rules on the draft's own distribution: AdaEDL's entropy bound, top-1 probability, and
SVIP's entropy threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...core.validation import check_candidate_bounds, check_choice, check_number
from ..base import ChainMethod

if TYPE_CHECKING:
    from transformers import PreTrainedModel
    from transformers.generation.streamers import BaseStreamer

ESTIMATORS = ("entropy", "top1", "svip")
DEFAULT_GAMMA = {"entropy": 1.0, "top1": 1.0, "svip": 0.15}
"""The entropy scale each estimator starts with: AdaEDL's 1 (top-1 ignores it); SVIP's 0.15, the constant of
its released implementation (cross entropy approximated as a constant times the draft entropy)."""


def draft_entropy(scores: torch.Tensor) -> torch.Tensor:
    """H(softmax(scores)) in nats per row, `0 * log 0 = 0` (masked -inf entries do not count)."""
    return torch.special.entr(torch.softmax(scores.float(), dim=-1)).sum(dim=-1)


def svip_stop(scores: torch.Tensor, h: float, gamma: float = DEFAULT_GAMMA["svip"]) -> torch.Tensor:
    """SVIP (Zhang et al., arXiv:2411.18462): stop after a token drafted from `scores` when sqrt(gamma * H) > h.

    H is the draft's entropy in nats; sqrt(gamma * H) estimates the total variation between draft and target
    (via Pinsker, with the cross entropy approximated by a constant times H), i.e. 1 - acceptance.
    """
    return torch.sqrt(gamma * draft_entropy(scores).clamp_min(0.0)) > h


def estimate_acceptance(scores: torch.Tensor, estimator: str = "entropy", gamma: float = 1.0) -> torch.Tensor:
    """Training-free estimate of the acceptance probability of a token drafted from `scores` (batch, vocab).

    `scores` are the draft's PROCESSED scores (after the call's logits processors), i.e. the distribution the
    token was drawn from; p = softmax(scores).

    - "entropy" (AdaEDL, Agrawal et al., 2024, arXiv:2410.18351): `1 - sqrt(gamma * H(p))`, H in nats
      (`0 * log 0 = 0`, so masked entries of -inf do not count). This can be negative for flat distributions.
    - "top1": `max_v p_v`, the draft's own confidence in its most likely token.
    """
    if estimator == "entropy":
        return 1.0 - torch.sqrt(gamma * draft_entropy(scores).clamp_min(0.0))
    if estimator == "top1":
        return torch.softmax(scores.float(), dim=-1).max(dim=-1).values
    raise ValueError(f"estimator must be one of {ESTIMATORS[:2]} (SVIP: svip_stop), got {estimator!r}")


@dataclass(frozen=True)
class EntropyConfig:
    """`lam`: the threshold; with estimator="svip" it is SVIP's h (stop when sqrt(gamma * H) > h). `gamma`: the
    entropy scale, None = the estimator's default (`DEFAULT_GAMMA`)."""

    lam: float = 0.5
    gamma: float | None = None
    estimator: str = "entropy"
    min_candidates: int = 1
    max_candidates: int = 20

    def __post_init__(self):
        check_number("lam", self.lam)
        check_choice("estimator", self.estimator, ESTIMATORS)
        if self.gamma is None:
            object.__setattr__(self, "gamma", DEFAULT_GAMMA[self.estimator])
        check_number("gamma", self.gamma, 0.0, None, low_open=True)
        check_candidate_bounds(self.min_candidates, self.max_candidates)

    def stop(self, scores: torch.Tensor) -> torch.Tensor:
        """Per row: stop drafting after the token drawn from `scores` (the loop applies the bounds)."""
        if self.estimator == "svip":
            return svip_stop(scores, self.lam, self.gamma)
        return estimate_acceptance(scores, self.estimator, self.gamma) < self.lam


class ConfidenceStop:
    """Stop after a token whose training-free acceptance estimate falls below `lam`."""

    needs_hidden_states = False

    def __init__(self, config: EntropyConfig):
        self.config = config

    def start_round(self, batch_size: int) -> None:
        pass

    def __call__(self, input_ids, scores, *, hidden_states=None, step: int = 0) -> torch.BoolTensor:
        return self.config.stop(scores)


class EntropyStoppingCandidateGenerator(ChainMethod):
    """A training-free, AdaEDL-style stopping rule based on the draft's own distribution.

    After drafting token t (1-based within the round) from the draft's processed distribution p_t, compute

        a_t = 1 - sqrt(gamma * H(p_t))        (estimator="entropy", the AdaEDL lower bound; H in nats)
        a_t = max_v p_t[v]                    (estimator="top1")

    and stop drafting when `a_t < lam` and `t >= min_candidates`, or when `t == max_candidates`, or at EOS.
    AdaEDL (arXiv:2410.18351) decides before sampling the token and may adapt lambda online; here lambda is
    static and the token whose estimate fell below it is still proposed (as transformers' `ConfidenceCriteria`).

    estimator="svip" is SVIP (Zhang et al., "Draft Model Knows When to Stop", arXiv:2411.18462): stop after
    token t when sqrt(gamma * H(p_t)) > h, with `lam` = h and gamma = 0.15 by default (the authors' code; the
    token that crossed the threshold is still proposed, as there). It is per token and monotone in H, so it
    orders tokens exactly like the AdaEDL entropy stopper: SVIP at (h, gamma) stops where AdaEDL at
    (lam = 1 - h, gamma) does (up to float rounding). Only the parametrisation differs.
    """

    def __init__(self, lam: float = 0.5, gamma: float | None = None, estimator: str = "entropy",
                 min_candidates: int = 1, max_candidates: int = 20, draft_model: PreTrainedModel | None = None,
                 streamer: BaseStreamer | None = None):
        super().__init__(EntropyConfig(lam, gamma, estimator, min_candidates, max_candidates), draft_model, streamer)

    @property
    def lam(self) -> float:
        return self.config.lam

    def new_rule(self, ctx) -> ConfidenceStop:
        return ConfidenceStop(self.config)
