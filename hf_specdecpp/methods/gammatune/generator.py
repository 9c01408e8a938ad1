"""GammaTune-style adaptive speculation length (after Gautam et al., "Token-Driven GammaTune", arXiv:2504.00030).
Our reconstruction from the paper's description: its exact update rule and constants were not available to us.

No per-token signal: each round drafts K candidates, and K follows the target's verdicts on earlier rounds. A
smoothed speculation length gamma (a float) is kept per sequence; after every round that drafted d >= 1
candidates of which the target accepted a,

    o     = a + 1  if a == d (every candidate accepted: the run could have gone on)   -- the switch
            a      otherwise (the first rejection shows where the run ended)
    gamma = (1 - smoothing) * gamma + smoothing * o                                   -- the moving average
    K     = min(max_candidates, max(min_candidates, floor(gamma + 0.5)))              -- the bounds

starting from gamma = `initial`. A round that drafted nothing (no room left) changes nothing.
"""

from __future__ import annotations

import math

import torch

from ..base import ChainMethod
from .config import GammaTuneConfig


def next_gamma(gamma: float, drafted: int, accepted: int, smoothing: float) -> float:
    """The smoothed length after a round that drafted `drafted` (>= 1) candidates and kept `accepted`.

    Args:
        gamma (`float`): the smoothed length before the round.
        drafted (`int`): candidates drafted in the round (>= 1).
        accepted (`int`): candidates the target accepted.
        smoothing (`float`): the weight of the round, in (0, 1].

    Returns:
        `float`: the new smoothed length.
    """
    observed = accepted + 1 if accepted >= drafted else accepted
    return (1.0 - smoothing) * gamma + smoothing * observed


def round_length(gamma: float, config: GammaTuneConfig) -> int:
    """Candidates to draft next round: gamma rounded half up, within the config's bounds.

    Args:
        gamma (`float`): the smoothed length.
        config (`GammaTuneConfig`): the bounds.

    Returns:
        `int`: K for the next round.
    """
    return min(config.max_candidates, max(config.min_candidates, math.floor(gamma + 0.5)))


class GammaTuneRule:
    """The stop rule of one call: row b stops at its K; the rows' gammas move after every round."""

    needs_hidden_states = False

    def __init__(self, config: GammaTuneConfig):
        self.config = config
        self.gammas: list[float] | None = None
        self._caps: torch.Tensor | None = None

    def start_round(self, batch_size: int) -> None:
        if self.gammas is None:
            self.gammas = [float(self.config.initial)] * batch_size
        self._caps = None

    def __call__(self, input_ids, scores, *, hidden_states=None, step: int = 0) -> torch.BoolTensor:
        if self._caps is None:
            caps = [round_length(g, self.config) for g in self.gammas]
            self._caps = torch.tensor(caps, device=input_ids.device)
        return self._caps <= step + 1

    def end_round(self, drafted: list[int], accepted: list[int]) -> None:
        if self.gammas is None:  # no round drafted yet
            self.gammas = [float(self.config.initial)] * len(drafted)
        self.gammas = [g if d < 1 else next_gamma(g, d, a, self.config.smoothing)
                       for g, d, a in zip(self.gammas, drafted, accepted)]

    def select_rows(self, keep: list[int]) -> None:
        if self.gammas is not None:
            self.gammas = [self.gammas[i] for i in keep]


class GammaTuneMethod(ChainMethod):
    """Draft K candidates per round, K adapted between rounds from the accepted counts (see the module docstring).

    Each generate() call (and each row of a batch) starts again from `initial`. The update rule is a
    reconstruction from GammaTune's published description (an exponential moving average of accepted token counts
    with a heuristic switch): the switch here is the censored-run bonus (+1 over the drafted length after a fully
    accepted round); `initial` and `smoothing` are parameters, not the paper's constants.

    Args:

    Example:

    ```python
    target.generate(**inputs, assistant_model=draft, candidate_generator=GammaTuneMethod(max_candidates=8))
    ```
    """

    config_class = GammaTuneConfig
    rule_class = GammaTuneRule


GammaTuneCandidateGenerator = GammaTuneMethod
"""The former name of `GammaTuneMethod` (kept working)."""
