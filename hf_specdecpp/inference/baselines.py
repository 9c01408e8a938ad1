"""Baseline stopping rules on the same lean drafting loop as SpecDec++ (for benchmarks).

Both classes subclass `DraftLoopCandidateGenerator`, so they draft exactly like `SpecDecPPCandidateGenerator`
(a direct forward pass per drafted token over the draft's KV cache, one host sync per drafted token) and
differ from it only in `_should_stop`. Any difference in a benchmark is then due to the stopping rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .candidate_generator import DraftLoopCandidateGenerator

if TYPE_CHECKING:
    from transformers import PreTrainedModel
    from transformers.generation.streamers import BaseStreamer

ESTIMATORS = ("entropy", "top1")


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


class FixedLengthCandidateGenerator(DraftLoopCandidateGenerator):
    """Draft exactly `num_candidates` (K) tokens per round; stop earlier only at EOS or at the length limit.

    Usage: `target.generate(**inputs, assistant_model=draft,
    candidate_generator=FixedLengthCandidateGenerator(num_candidates=4))`.
    """

    def __init__(
        self,
        num_candidates: int = 4,
        draft_model: PreTrainedModel | None = None,
        streamer: BaseStreamer | None = None,
    ):
        _check_count("num_candidates", num_candidates)
        super().__init__(draft_model, min_candidates=num_candidates, max_candidates=num_candidates,
                         streamer=streamer)
        self.num_candidates = num_candidates

    def _should_stop(self, step, hidden, scores, sequence):
        # The loop itself stops after `max_candidates` (= K) tokens.
        return torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)


def estimate_acceptance(scores: torch.Tensor, estimator: str = "entropy", gamma: float = 1.0) -> torch.Tensor:
    """Training-free estimate of the acceptance probability of a token drafted from `scores` (batch, vocab).

    `scores` are the draft's PROCESSED scores (after the call's logits processors: temperature, top-k/p, ...),
    i.e. the distribution the token was drawn from; p = softmax(scores).

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


class EntropyStoppingCandidateGenerator(DraftLoopCandidateGenerator):
    """A training-free, AdaEDL-style stopping rule based on the draft's own distribution.

    The rule, exactly: after drafting token t (1-based within the round) from the draft's processed
    distribution p_t = softmax(scores_t), compute

        a_t = 1 - sqrt(gamma * H(p_t))        (estimator="entropy", the AdaEDL lower bound; H in nats)
        a_t = max_v p_t[v]                    (estimator="top1")

    and stop drafting when `a_t < lam` and `t >= min_candidates`, or when `t == max_candidates`, or at EOS.

    AdaEDL (Agrawal et al., "AdaEDL: Early Draft Stopping for Speculative Decoding of Large Language Models
    via an Entropy-based Lower Bound on Token Acceptance Probability", arXiv:2410.18351) bounds the acceptance
    probability of a drafted token from below by `1 - sqrt(gamma * entropy)` of the draft distribution and stops
    drafting when the bound falls below a threshold lambda. Differences from the paper: `lam` is static here
    (AdaEDL can adapt it online from the observed acceptance rate), and the token whose estimate falls below
    `lam` is still proposed: it is already drafted, and verifying one more token costs little; AdaEDL decides
    before sampling it. transformers' own `ConfidenceCriteria` (top-1 probability) also keeps that token.

    Args:
        lam: the threshold lambda; a higher value stops earlier.
        gamma: the AdaEDL scale of the entropy (ignored by "top1").
        estimator: "entropy" or "top1".
        min_candidates / max_candidates: bounds on the candidates per round.
        draft_model / streamer: as for `SpecDecPPCandidateGenerator`.
    """

    def __init__(
        self,
        lam: float = 0.5,
        gamma: float = 1.0,
        estimator: str = "entropy",
        min_candidates: int = 1,
        max_candidates: int = 20,
        draft_model: PreTrainedModel | None = None,
        streamer: BaseStreamer | None = None,
    ):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)):
            raise ValueError(f"lam must be a number, got {lam!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma <= 0:
            raise ValueError(f"gamma must be a positive number, got {gamma!r}")
        _check_count("min_candidates", min_candidates)
        _check_count("max_candidates", max_candidates)
        if min_candidates > max_candidates:
            raise ValueError(f"min_candidates ({min_candidates}) must not exceed max_candidates ({max_candidates})")
        super().__init__(draft_model, min_candidates, max_candidates, streamer)
        self.lam = float(lam)
        self.gamma = float(gamma)
        self.estimator = estimator

    def _should_stop(self, step, hidden, scores, sequence):
        estimate = estimate_acceptance(scores, self.estimator, self.gamma)
        stop = estimate < self.lam
        if step + 1 < self.min_candidates:
            stop = torch.zeros_like(stop)
        return stop
