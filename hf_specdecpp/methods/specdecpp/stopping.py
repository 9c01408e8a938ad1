"""SpecDec++'s stopping rule (stop drafting once the predicted chance of a rejection exceeds a threshold) and the
per-step estimates the cost-aware rule reads instead (the head's, or the draft's top-1 probability)."""

from __future__ import annotations

import torch

from ...core.validation import check_probability
from ...head import AcceptanceHead, top1_probability


class RejectionThresholdRule:
    """SpecDec++'s stop rule for the draft loop: stop when `1 - prod_i p_accept_i > threshold` (per row).

    A `core.drafting.StopRule` (called with the draft's hidden states and the step), not a transformers
    `StoppingCriteria`: it decides when a round stops drafting, never when generation ends.
    `RejectionThresholdCriteria` is the same class under its former name.

    `p_accept_i` is the acceptance head's prediction for drafted token i. A producing-state head scores each
    token from the state that drafted it, so the product covers tokens 1..t after drafting token t. A
    drafted-token (reference) head reads the state AT a token, which exists one draft step later: after drafting
    token t the product covers tokens 1..t-1 (the one-step lag), and the first token of a round is never scored
    (the last input token is verified and counts as accepted). The running product stays on the device; only
    the boolean result is read on the host (by the loop). Bounds on candidates and EOS are the loop's job.
    Fresh per generate() call (it keeps per-round state).

    Args:
        head (`AcceptanceHead`): the acceptance head, on the draft's device.
        threshold (`float`): h in (0, 1).
    """

    def __init__(self, head: AcceptanceHead, threshold: float):
        self.head = head
        self.estimate = head_estimate(head)
        self.threshold = check_probability("threshold", threshold)
        self.needs_hidden_states = True
        self.cumulative_acceptance: torch.Tensor | None = None

    def start_round(self, batch_size: int) -> None:
        """Reset the running product: every round starts with P(all accepted) = 1."""
        self.cumulative_acceptance = None

    def rejection_probability(self) -> torch.Tensor | None:
        """Predicted probability that at least one scored candidate of this round is rejected.

        Returns:
            `torch.Tensor` of shape `(batch_size,)`, or None before the round's first scored token.
        """
        return None if self.cumulative_acceptance is None else 1.0 - self.cumulative_acceptance

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor, *, hidden_states: torch.Tensor | None = None,
                 step: int = 0, **kwargs) -> torch.BoolTensor:
        """Score the newest drafted token and say, per row, whether to stop drafting after it.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, seq_len)`): the sequence, newest token last.
            scores (`torch.Tensor` of shape `(batch_size, vocab_size)`): the processed draft scores it came from.
            hidden_states (`torch.Tensor` of shape `(batch_size, hidden_size)`): the draft's last hidden state.
            step (`int`): 0-based index of the token within the round.

        Returns:
            `torch.BoolTensor` of shape `(batch_size,)`: True where the predicted P(any rejection) > threshold.
        """
        acceptance = self.estimate(input_ids, scores, hidden_states, step)
        if acceptance is not None:
            self.cumulative_acceptance = acceptance if self.cumulative_acceptance is None \
                else self.cumulative_acceptance * acceptance
        rejection = self.rejection_probability()
        if rejection is None:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return rejection > self.threshold


def head_estimate(head: AcceptanceHead):
    """The head's per-step acceptance prediction as `core.cost_aware.CostAwareStop` reads it: `(B,)`, None at the
    first step of a drafted-token head (its newest token is scored one step later)."""
    def estimate(input_ids: torch.LongTensor, scores: torch.Tensor, hidden_states: torch.Tensor | None,
                 step: int) -> torch.Tensor | None:
        if step == 0 and not head.scores_without_lag:
            return None
        return head.score_step(hidden_states, scores, input_ids[:, -1])
    return estimate


def top1_estimate(input_ids: torch.LongTensor, scores: torch.Tensor, hidden_states: torch.Tensor | None,
                  step: int) -> torch.Tensor:
    """The draft's top-1 probability as `core.cost_aware.CostAwareStop` reads it (`estimator="top1"`): `(B,)`,
    every step (it needs no hidden state)."""
    return top1_probability(scores)


RejectionThresholdCriteria = RejectionThresholdRule
"""The former name of `RejectionThresholdRule` (kept working; it is a stop rule, not a `StoppingCriteria`)."""
