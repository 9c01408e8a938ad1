"""Drafting policies as the replay sees them: per round a cap, and after every drafted step whether to stop.

Each mirrors one real stop rule step for step (the exactness tests compare them with real generate() calls):
- `FixedK`: `methods.fixed_k` (never stops early; min = max = K);
- `Confidence`: `methods.entropy` (AdaEDL entropy bound or top-1 probability below lambda), same float32 ops;
- `SpecDecPP`: `methods.specdecpp.RejectionThresholdCriteria`: the running product of the head's predictions,
  with the one-step lag of drafted-token heads (the first token of a round unscored) or without it
  (producing-state heads), stop when `1 - product > h`;
- `TransformersAssisted`: transformers' `AssistedCandidateGenerator` (5.23): at most `num_assistant_tokens`
  per round, stop after a token whose draft probability is below the confidence threshold, the threshold
  re-tuned after every round from an ROC curve over the call's drafted tokens when scikit-learn is installed
  (cost fpr + 3 fnr), and the `heuristic` schedule (+2 after a fully accepted round, else -1, at least 1);
- `Oracle`: drafts exactly the tokens the target will accept (a bound, not a method).
Every policy keeps its per-call state in the object `start_call` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

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
    lam: float
    gamma: float = 1.0
    estimator: str = "entropy"
    min_candidates: int = 1
    max_candidates: int = 20

    def cap(self, state) -> int:
        return self.max_candidates

    def stop(self, state, steps: Steps, index: int, step: int) -> bool:
        if self.estimator == "top1":
            estimate = steps.top1[index]
        else:
            estimate = 1.0 - torch.sqrt(self.gamma * steps.entropy[index].clamp_min(0.0))
        return bool(estimate < self.lam)


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
