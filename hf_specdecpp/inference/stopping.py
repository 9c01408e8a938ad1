"""SpecDec++'s stopping rule: stop drafting once the predicted chance of a rejection exceeds a threshold."""

from __future__ import annotations

import torch
from transformers import StoppingCriteria


def validate_stopping_args(threshold: float, min_candidates: int, max_candidates: int) -> None:
    """Raise ValueError for a threshold outside (0, 1) or candidate bounds that cannot hold."""
    if not isinstance(threshold, (int, float)) or not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold!r}")
    if not isinstance(min_candidates, int) or min_candidates < 1:
        raise ValueError(f"min_candidates must be an integer >= 1, got {min_candidates!r}")
    if not isinstance(max_candidates, int) or max_candidates < 1:
        raise ValueError(f"max_candidates must be an integer >= 1, got {max_candidates!r}")
    if min_candidates > max_candidates:
        raise ValueError(
            f"min_candidates ({min_candidates}) must not exceed max_candidates ({max_candidates})"
        )


class RejectionThresholdCriteria(StoppingCriteria):
    """Stops a drafting round when `1 - prod_i p_accept_i > threshold`, within [min, max] candidates.

    Call `start_round()` before each drafting round, then call the criteria once after every drafted token
    with `acceptance_prob`, the head's newest prediction. For a reference (drafted-token) head that is the
    prediction for the *previous* drafted token: the one-step lag of SpecDec++, since the draft forward pass
    that samples token k+1 is the one that yields the hidden state at token k. On the first step of a round
    pass `None` (the last input token is verified: probability 1). A producing-state head scores the token
    just drafted, so its rounds may stop after one token.

    The running product stays on the tensor's device; only the boolean result needs reading on the host.
    """

    def __init__(self, threshold: float, min_candidates: int = 1, max_candidates: int = 20):
        validate_stopping_args(threshold, min_candidates, max_candidates)
        self.threshold = float(threshold)
        self.min_candidates = min_candidates
        self.max_candidates = max_candidates
        self.start_round()

    def start_round(self) -> None:
        """Reset the running product and the count of drafted tokens."""
        self.cumulative_acceptance: torch.Tensor | float = 1.0
        self.num_drafted = 0

    def rejection_probability(self) -> torch.Tensor | float:
        """Predicted probability that at least one scored candidate of this round is rejected."""
        return 1.0 - self.cumulative_acceptance

    def __call__(
        self,
        input_ids: torch.LongTensor,
        scores: torch.FloatTensor | None,
        acceptance_prob: torch.Tensor | float | None = None,
        **kwargs,
    ) -> torch.BoolTensor:
        self.num_drafted += 1
        if acceptance_prob is not None:
            self.cumulative_acceptance = self.cumulative_acceptance * acceptance_prob
        batch = input_ids.shape[0]
        device = input_ids.device
        if self.num_drafted >= self.max_candidates:
            return torch.ones(batch, dtype=torch.bool, device=device)
        if self.num_drafted < self.min_candidates:
            return torch.zeros(batch, dtype=torch.bool, device=device)
        stop = torch.as_tensor(self.rejection_probability(), device=device) > self.threshold
        return stop.reshape(-1).expand(batch).clone()
