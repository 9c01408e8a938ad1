"""Drafting policies as the replay sees them: per round a cap, and after every drafted step whether to stop.

Each mirrors one real stop rule step for step (the exactness tests compare them with real generate() calls):
- `FixedK`: `methods.fixed_k` (never stops early; min = max = K);
- `Confidence`: `methods.entropy` (AdaEDL entropy bound or top-1 probability below lambda, or SVIP's
  sqrt(gamma * H) above h), same float32 ops;
- `GammaTune`: `methods.gammatune` (K per round from a moving average of the accepted counts);
- `SpecDecPP`: `methods.specdecpp.RejectionThresholdCriteria`: the running product of the head's predictions,
  with the one-step lag of drafted-token heads (the first token of a round unscored) or without it
  (producing-state heads), stop when `1 - product > h`;
- `TransformersAssisted`: transformers' `AssistedCandidateGenerator` (5.23): at most `num_assistant_tokens`
  per round, stop after a token whose draft probability is below the confidence threshold, the threshold
  re-tuned after every round from an ROC curve over the call's drafted tokens when scikit-learn is installed
  (cost fpr + 3 fnr), and the `heuristic` schedule (+2 after a fully accepted round, else -1, at least 1);
- `CostAware`: `core.cost_aware.CostAwareStop` (draft on while the expected gain pays for its marginal cost at the
  call's own rate, predictions calibrated online) with the acceptance head's predictions or the draft's top-1
  probability, the same object the real loops use;
- `Oracle`: drafts exactly the tokens the target will accept (a bound, not a method).
Every policy keeps its per-call state in the object `start_call` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ...core.cost_aware import CostAwareStop, OnlineSettings
from .traces import PromptTrace, Steps

DEFAULT_ASSISTANT_TOKENS = 20
DEFAULT_CONFIDENCE = 0.4


class Policy:
    """Base: no per-call state, at least one candidate, never stops early."""

    min_candidates = 1

    def start_call(self):
        return None

    def cap(self, state) -> int:
        raise NotImplementedError

    def start_round(self, state) -> None:
        pass

    def stop(self, state, steps: Steps, index: int, step: int) -> bool:
        """After drafting step `step` (0-based in the round), whose features are `steps[index]`."""
        return False

    def end_round(self, state, drafted: int, accepted: int) -> None:
        pass


@dataclass
class FixedK(Policy):
    k: int

    @property
    def min_candidates(self) -> int:
        return self.k

    def cap(self, state) -> int:
        return self.k


@dataclass
class Confidence(Policy):
    """`lam` is SVIP's h with estimator="svip" (stop when sqrt(gamma * H) > h; SVIP's gamma is 0.15), which
    orders tokens like the entropy stopper (AdaEDL at lam = 1 - h stops at the same tokens)."""

    lam: float
    gamma: float = 1.0
    estimator: str = "entropy"
    min_candidates: int = 1
    max_candidates: int = 20

    def cap(self, state) -> int:
        return self.max_candidates

    def stop(self, state, steps: Steps, index: int, step: int) -> bool:
        if self.estimator == "top1":
            return bool(steps.top1[index] < self.lam)
        root = torch.sqrt(self.gamma * steps.entropy[index].clamp_min(0.0))
        if self.estimator == "svip":
            return bool(root > self.lam)
        return bool(1.0 - root < self.lam)


@dataclass
class _Gamma:
    value: float


@dataclass
class GammaTune(Policy):
    """K = gamma rounded half up within the bounds; after a round that drafted d >= 1 and kept a, gamma moves
    towards a (a + 1 when all d were accepted) by `smoothing`."""

    initial: float = 4.0
    smoothing: float = 0.5
    min_candidates: int = 1
    max_candidates: int = 20

    def start_call(self) -> _Gamma:
        return _Gamma(float(self.initial))

    def cap(self, state: _Gamma) -> int:
        return min(self.max_candidates, max(self.min_candidates, math.floor(state.value + 0.5)))

    def end_round(self, state: _Gamma, drafted: int, accepted: int) -> None:
        if drafted >= 1:
            observed = accepted + 1 if accepted >= drafted else accepted
            state.value = (1.0 - self.smoothing) * state.value + self.smoothing * observed


@dataclass
class _Product:
    value: torch.Tensor | None = None


@dataclass
class SpecDecPP(Policy):
    head: object
    threshold: float
    min_candidates: int = 1
    max_candidates: int = 20

    def start_call(self) -> _Product:
        return _Product()

    def cap(self, state) -> int:
        return self.max_candidates

    def start_round(self, state: _Product) -> None:
        state.value = None

    def stop(self, state: _Product, steps: Steps, index: int, step: int) -> bool:
        if step > 0 or self.head.scores_without_lag:
            acceptance = steps.head_probabilities(self.head)[index]
            state.value = acceptance if state.value is None else state.value * acceptance
        return state.value is not None and bool((1.0 - state.value) > self.threshold)


@dataclass
class CostAware(Policy):
    """`head` None: the draft's top-1 probability is the acceptance estimate (greedy: the drafted token's)."""

    head: object | None
    cost_ratio: float
    verify_costs: tuple[float, ...]
    max_candidates: int = 20
    min_candidates: int = 1
    settings: OnlineSettings = OnlineSettings()

    def start_call(self) -> CostAwareStop:
        lagged = self.head is not None and not self.head.scores_without_lag
        return CostAwareStop(None, lagged, self.cost_ratio, self.verify_costs, self.max_candidates,
                             self.head is not None, self.settings)

    def cap(self, state) -> int:
        return self.max_candidates

    def start_round(self, state: CostAwareStop) -> None:
        state.start_round(1)

    def stop(self, state: CostAwareStop, steps: Steps, index: int, step: int) -> bool:
        if self.head is None:
            acceptance = steps.top1[index: index + 1]
        elif step > 0 or not state.lagged:
            acceptance = steps.head_probabilities(self.head)[index: index + 1]
        else:
            acceptance = None
        return bool(state.observe(acceptance, step, torch.device("cpu"))[0])

    def end_round(self, state: CostAwareStop, drafted: int, accepted: int) -> None:
        state.end_round([drafted], [accepted])


@dataclass
class _AssistantState:
    threshold: float
    tokens: int
    probs: list[float] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)
    round_probs: list[float] = field(default_factory=list)


@dataclass
class TransformersAssisted(Policy):
    threshold: float = DEFAULT_CONFIDENCE
    start_tokens: int = DEFAULT_ASSISTANT_TOKENS
    schedule: str = "constant"
    roc: bool = True

    def start_call(self) -> _AssistantState:
        return _AssistantState(self.threshold, self.start_tokens)

    def cap(self, state: _AssistantState) -> int:
        return int(state.tokens)

    def start_round(self, state: _AssistantState) -> None:
        state.round_probs = []

    def stop(self, state: _AssistantState, steps: Steps, index: int, step: int) -> bool:
        p = float(steps.top1[index])  # greedy: the drafted token is the most likely one
        state.round_probs.append(p)
        return bool(state.threshold) and state.threshold > 0 and p < state.threshold

    def end_round(self, state: _AssistantState, drafted: int, accepted: int) -> None:
        if self.schedule in ("heuristic", "heuristic_transient"):
            state.tokens = state.tokens + 2 if accepted == drafted else max(1, state.tokens - 1)
        if self.roc and state.threshold:
            self._tune(state, drafted, accepted)

    @staticmethod
    def _tune(state: _AssistantState, drafted: int, accepted: int) -> None:
        """transformers' online ROC tuning of the confidence threshold (cost fpr + 3 fnr)."""
        if drafted:
            state.probs.extend(state.round_probs)
        state.matches.extend([1] * accepted)
        if len(state.probs) > len(state.matches):
            state.matches.append(0)
        del state.probs[len(state.matches):]
        if len(state.probs) > 5 and {0, 1}.issubset(state.matches):
            import numpy as np
            from sklearn.metrics import roc_curve

            fpr, tpr, thresholds = roc_curve(state.matches, state.probs)
            state.threshold = thresholds[np.argmin(fpr + 3 * (1 - tpr))]


@dataclass
class Oracle(Policy):
    """Every round drafts exactly the run of tokens the target will accept (at most `max_candidates`)."""

    max_candidates: int | None = None

    def cap(self, state) -> int:
        return self.max_candidates if self.max_candidates is not None else 1 << 30

    def round_length(self, trace: PromptTrace, start: int, limit: int) -> int:
        return min(trace.agree_run(start), limit)
