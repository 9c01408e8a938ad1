"""A training-free, AdaEDL-style stopping rule based on the draft's own distribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...core.validation import check_candidate_bounds, check_choice, check_number
from ..base import ChainMethod

if TYPE_CHECKING:
    from transformers import PreTrainedModel
    from transformers.generation.streamers import BaseStreamer

ESTIMATORS = ("entropy", "top1")


def estimate_acceptance(scores: torch.Tensor, estimator: str = "entropy", gamma: float = 1.0) -> torch.Tensor:
    """Training-free estimate of the acceptance probability of a token drafted from `scores` (batch, vocab).

    `scores` are the draft's PROCESSED scores (after the call's logits processors), i.e. the distribution the
    token was drawn from; p = softmax(scores).

    - "entropy" (AdaEDL, Agrawal et al., 2024, arXiv:2410.18351): `1 - sqrt(gamma * H(p))`, H in nats
      (`0 * log 0 = 0`, so masked entries of -inf do not count). This can be negative for flat distributions.
    - "top1": `max_v p_v`, the draft's own confidence in its most likely token.
    """
    probs = torch.softmax(scores.float(), dim=-1)
    if estimator == "entropy":
        entropy = torch.special.entr(probs).sum(dim=-1)
        return 1.0 - torch.sqrt(gamma * entropy.clamp_min(0.0))
    if estimator == "top1":
        return probs.max(dim=-1).values
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


@dataclass(frozen=True)
class EntropyConfig:
    lam: float = 0.5
    gamma: float = 1.0
    estimator: str = "entropy"
    min_candidates: int = 1
    max_candidates: int = 20

    def __post_init__(self):
        check_number("lam", self.lam)
        check_number("gamma", self.gamma, 0.0, None, low_open=True)
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_candidate_bounds(self.min_candidates, self.max_candidates)


class ConfidenceStop:
    """Stop after a token whose training-free acceptance estimate falls below `lam`."""

    needs_hidden_states = False

    def __init__(self, config: EntropyConfig):
        self.config = config

    def start_round(self, batch_size: int) -> None:
        pass

    def __call__(self, input_ids, scores, *, hidden_states=None, step: int = 0) -> torch.BoolTensor:
        return estimate_acceptance(scores, self.config.estimator, self.config.gamma) < self.config.lam


class EntropyStoppingCandidateGenerator(ChainMethod):
    """A training-free, AdaEDL-style stopping rule based on the draft's own distribution.

    After drafting token t (1-based within the round) from the draft's processed distribution p_t, compute

        a_t = 1 - sqrt(gamma * H(p_t))        (estimator="entropy", the AdaEDL lower bound; H in nats)
        a_t = max_v p_t[v]                    (estimator="top1")

    and stop drafting when `a_t < lam` and `t >= min_candidates`, or when `t == max_candidates`, or at EOS.
    AdaEDL (arXiv:2410.18351) decides before sampling the token and may adapt lambda online; here lambda is
    static and the token whose estimate fell below it is still proposed (as transformers' `ConfidenceCriteria`).
    """

    def __init__(self, lam: float = 0.5, gamma: float = 1.0, estimator: str = "entropy", min_candidates: int = 1,
                 max_candidates: int = 20, draft_model: PreTrainedModel | None = None,
                 streamer: BaseStreamer | None = None):
        super().__init__(EntropyConfig(lam, gamma, estimator, min_candidates, max_candidates), draft_model, streamer)

    @property
    def lam(self) -> float:
        return self.config.lam

    def new_rule(self, ctx) -> ConfidenceStop:
        return ConfidenceStop(self.config)
