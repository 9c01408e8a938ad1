"""A stop rule that needs no threshold: draft one more token while its expected gain pays for its cost.

Why: a fixed threshold is chosen offline for one machine's costs and one kind of prompt, while the best stopping
point moves with both (code accepts long runs, chat does not; a GPU verifies 20 tokens for the price of one, a CPU
does not). This rule reads the costs of the machine it runs on and the acceptance the call itself sees.

Per row, after drafting token t of a round: `P` is the predicted probability that every scored token of the round
is accepted (the product of calibrated per-token predictions q). Drafting token t + 1 adds about `P * q_t`
expected accepted tokens (the newest prediction stands for the next token's; a lagged estimator, whose newest
token is not scored yet, counts `q_t` once more) and costs `c + v(t + 1) - v(t)` target steps. Drafting goes on
while the gain is at least `rate` times that cost, where `rate` is the row's tokens per target step so far in
the call (Dinkelbach's iteration for the best ratio of tokens to cost). Because P only falls and the marginal
cost does not fall (v convex), stopping at the first step where one more token does not pay is the optimal
rule for a given rate (a monotone stopping problem).

Calibration: `q = sigmoid(scale * logit(p) + bias)` for the estimator's prediction p (an acceptance head, or the
draft's top-1 probability); after each round `(scale, bias)` take a Newton step of the logistic fit to every
verified prediction of the call so far (every token up to and including a round's first rejection; later ones
were never judged), with a Gaussian prior that holds them at (1, 0) until the call has shown otherwise.

Everything stays on the device: the only host reads are the loop's own stop decision per drafted token; the
round's outcome comes in as host integers, sent with `to_device` (no synchronisation on a GPU).

The rule only decides how many tokens are drafted: the output stays the target's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from .device import to_device

StopRuleName = Literal["threshold", "cost-aware"]
"""How a chain method with a per-token acceptance estimate stops: at a fixed threshold, or by this module's rule."""

LOGIT_BOUND = 8.0
"""Predictions are clamped to logits in [-8, 8] (probabilities 3e-4 .. 0.9997) before calibration."""
SCALE_BOUNDS = (0.25, 4.0)
BIAS_BOUNDS = (-4.0, 4.0)
ASSUMED_COST_RATIO = 0.3
ASSUMED_VERIFY_SLOPE = 0.02
"""The costs the rule assumes when nothing measured them (c = 0.3, v(K) = 1 + 0.02 K): an ASSUMPTION between a CPU
(c about 0.4, v rising) and a GPU (c about 0.1-0.25, v nearly flat)."""


@dataclass(frozen=True)
class OnlineSettings:
    """How the rule adapts: the calibration's prior (centred on `prior_scale`, `prior_bias`, with precision
    `calibration_prior`, worth about that many verified predictions) and Newton steps per round, and the prior on
    the rate (`prior_rate` tokens per target step, weighted as `prior_weight` target steps of the call).

    Args:
        calibration_prior (`float`, *optional*, defaults to 4.0):
            Precision of the Gaussian prior holding the calibration `(scale, bias)` at `(1, 0)`, worth about that
            many verified predictions.
        newton_steps (`int`, *optional*, defaults to 2):
            Newton steps of the logistic calibration fit after each round.
        prior_rate (`float`, *optional*, defaults to 1.0):
            The rate (tokens per target step) every row starts from.
        prior_weight (`float`, *optional*, defaults to 8.0):
            How many target steps of the call the prior rate counts as.
        prior_scale (`float`, *optional*, defaults to 1.0):
            The calibration's scale before the call has verified anything (and its prior's centre).
        prior_bias (`float`, *optional*, defaults to 0.0):
            The calibration's bias likewise (e.g. a fit to the estimator's dev traces, `calibration_fit`).
    """

    calibration_prior: float = 4.0
    newton_steps: int = 2
    prior_rate: float = 1.0
    prior_weight: float = 8.0
    prior_scale: float = 1.0
    prior_bias: float = 0.0


def extended_verify_costs(verify_costs: Sequence[float], max_candidates: int) -> list[float]:
    """v(0) .. v(max_candidates) at least, extended linearly with the last slope (never falling) when short.

    Args:
        verify_costs: v(0), v(1), ... in target steps (fewer than two: a flat v = 1 is assumed).
        max_candidates: the largest K needed.

    Returns:
        The table, at least `max_candidates + 1` long.
    """
    table = list(verify_costs) if len(verify_costs) >= 2 else [1.0, 1.0]
    slope = max(table[-1] - table[-2], 0.0)
    while len(table) < max_candidates + 1:
        table.append(table[-1] + slope)
    return table


def newton_update(scale: torch.Tensor, bias: torch.Tensor, z: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                  precision: float = 0.0, centre: tuple[float, float] = (1.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """One Newton step, per row, of the logistic fit `sigmoid(scale * z + bias)` to `y` with weights `w` and a
    Gaussian prior of `precision` about `centre`, in closed form (2 x 2), held within the rule's bounds; a row whose
    system is singular keeps its values.

    Args:
        scale, bias: `(B,)` current values.
        z, y, w: `(B, N)` logits, labels (0/1 or probabilities) and weights.
        precision: the prior's precision (0: no prior).
        centre: the prior's (scale, bias).

    Returns:
        The new `(scale, bias)`.
    """
    q = torch.sigmoid(scale[:, None] * z + bias[:, None])
    error, curvature = (q - y) * w, q * (1 - q) * w
    g_scale = (error * z).sum(1) + precision * (scale - centre[0])
    g_bias = error.sum(1) + precision * (bias - centre[1])
    h_ss = (curvature * z * z).sum(1) + precision
    h_sb = (curvature * z).sum(1)
    h_bb = curvature.sum(1) + precision
    det = h_ss * h_bb - h_sb * h_sb
    ok = det > 0
    safe = torch.where(ok, det, torch.ones_like(det))
    new_scale = (scale - (h_bb * g_scale - h_sb * g_bias) / safe).clamp(*SCALE_BOUNDS)
    new_bias = (bias - (h_ss * g_bias - h_sb * g_scale) / safe).clamp(*BIAS_BOUNDS)
    return torch.where(ok, new_scale, scale), torch.where(ok, new_bias, bias)


def calibration_fit(predictions: torch.Tensor, labels: torch.Tensor, steps: int = 25) -> tuple[float, float]:
    """(scale, bias) of the logistic fit `sigmoid(scale * logit(p) + bias)` to `labels` (0/1, or acceptance
    probabilities), the starting point of the rule's online calibration for an estimator with dev traces.

    Args:
        predictions: the estimator's predictions p, any shape.
        labels: the outcomes, the same shape.
        steps: Newton steps (`newton_update` from (1, 0), without a prior).

    Returns:
        `(scale, bias)` as floats.
    """
    z = torch.logit(predictions.double().flatten(), eps=1e-6).clamp(-LOGIT_BOUND, LOGIT_BOUND)[None]
    y = labels.double().flatten()[None]
    scale, bias = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    for _ in range(steps):
        scale, bias = newton_update(scale, bias, z, y, torch.ones_like(z))
    return float(scale[0]), float(bias[0])


def assumed_verify_costs(max_candidates: int) -> tuple[float, ...]:
    """v(0) .. v(max_candidates) under the assumed slope `ASSUMED_VERIFY_SLOPE`.

    Args:
        max_candidates: the largest K tabled.

    Returns:
        The table, `max_candidates + 1` long.
    """
    return tuple(1.0 + ASSUMED_VERIFY_SLOPE * k for k in range(max_candidates + 1))


PRIOR_ACCEPTANCE = 0.85
"""The per-token acceptance `fixed_k_rate` assumes for a rule that has no simulated policy to start from."""


def fixed_k_rate(cost_ratio: float, verify_costs: Sequence[float], max_candidates: int,
                 acceptance: float = PRIOR_ACCEPTANCE) -> float:
    """Tokens per target step of the best fixed K when each drafted token is accepted independently with
    probability `acceptance`: a prior rate for the cost-aware rule that needs only the costs (under the four
    cost curves of `benchmarks/policy_curves.py` it lies within 7% of what a re-simulated head policy predicts).

    Args:
        cost_ratio: c, a draft step in target steps.
        verify_costs: v(0), v(1), ... in target steps (extended as `extended_verify_costs` does).
        max_candidates: the largest K considered.
        acceptance: the assumed per-token acceptance.

    Returns:
        The best K's expected tokens per round over its cost, `(1 - a^(K+1)) / (1 - a) / (K c + v(K))`.
    """
    table = extended_verify_costs(verify_costs, max_candidates)
    return max((1.0 - acceptance ** (k + 1)) / (1.0 - acceptance) / (k * cost_ratio + table[k])
               for k in range(1, max(int(max_candidates), 1) + 1))


def marginal_costs(cost_ratio: float, verify_costs: Sequence[float], max_candidates: int) -> list[float]:
    """`c + v(k + 1) - v(k)` for k = 0 .. max_candidates - 1: the cost of drafting and verifying token k + 1.

    Args:
        cost_ratio: c, a draft step in target steps.
        verify_costs: v(0), v(1), ... in target steps; extended as `extended_verify_costs` does when short.
        max_candidates: the round's cap.

    Returns:
        `max_candidates` marginal costs (never below c: verifying one more token never costs less than nothing).
    """
    table = extended_verify_costs(verify_costs, max_candidates)
    return [cost_ratio + max(table[k + 1] - table[k], 0.0) for k in range(max_candidates)]


class CostAwareStop:
    """The rule of the module docstring for a batch of rows, fresh for every generate() call.

    Args:
        estimate: `(input_ids, scores, hidden_states, step) -> (B,) acceptance predictions`, or None at a step
            that has nothing scored (a lagged estimator's first step).
        lagged: whether the estimator's newest drafted token is scored one step later (drafted-token heads).
        cost_ratio: c, a draft step in target steps, on the machine the call runs on.
        verify_costs: v(0), v(1), ... in target steps on that machine.
        max_candidates: the round's cap (the marginal costs are tabled up to it).
        needs_hidden_states: whether `estimate` reads the draft's last hidden state.
        settings: the online adaptation's rates and prior.
    """

    def __init__(self, estimate: Callable, lagged: bool, cost_ratio: float, verify_costs: Sequence[float],
                 max_candidates: int, needs_hidden_states: bool, settings: OnlineSettings = OnlineSettings()):
        self.estimate, self.lagged, self.settings = estimate, lagged, settings
        self.cost_ratio, self.needs_hidden_states = float(cost_ratio), needs_hidden_states
        self.verify_costs = extended_verify_costs(verify_costs, max(int(max_candidates), 1))
        self.marginal_host = marginal_costs(cost_ratio, self.verify_costs, max(int(max_candidates), 1))
        self.marginal: torch.Tensor | None = None  # on the device, at the first step
        self.scale = self.bias = self.rate = None  # (B,) on the device, at the first step
        self.tokens: list[float] = []
        self.costs: list[float] = []
        self.product: torch.Tensor | None = None
        self.seen_logits = self.seen_labels = self.seen_mask = None  # (B, N): the call's verified predictions
        self.round_logits: list[torch.Tensor] = []
        self.round_positions: list[int] = []

    # ------------------------------------------------------------------ one round
    def start_round(self, batch_size: int) -> None:
        """Every round starts with P = 1 and no verified predictions."""
        self.product, self.round_logits, self.round_positions = None, [], []
        if not self.tokens:
            prior = self.settings.prior_weight
            self.tokens = [self.settings.prior_rate * prior] * batch_size
            self.costs = [prior] * batch_size

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor, *, hidden_states: torch.Tensor | None = None,
                 step: int = 0, **kwargs) -> torch.BoolTensor:
        return self.observe(self.estimate(input_ids, scores, hidden_states, step), step, input_ids.device)

    def observe(self, acceptance: torch.Tensor | None, step: int, device: torch.device) -> torch.BoolTensor:
        """Stop after drafted token `step` (0-based)? `acceptance` `(B,)`: the estimator's prediction for the
        newest scored token (token `step`, or `step - 1` when lagged), None when nothing is scored yet."""
        if acceptance is None:
            return torch.zeros(len(self.tokens), dtype=torch.bool, device=device)
        self._ensure_state(acceptance.device)
        z = torch.logit(acceptance.float(), eps=1e-6).clamp(-LOGIT_BOUND, LOGIT_BOUND)
        q = torch.sigmoid(self.scale * z + self.bias)
        self.round_logits.append(z)
        self.round_positions.append(step - 1 if self.lagged else step)
        self.product = q if self.product is None else self.product * q
        gain = self.product * (q * q if self.lagged else q)
        marginal = self.marginal[min(step + 1, self.marginal.shape[0] - 1)]
        return gain < self.rate * marginal

    def _ensure_state(self, device: torch.device) -> None:
        if self.scale is None:
            rows = len(self.tokens)
            self.scale = torch.full((rows,), float(self.settings.prior_scale), device=device)
            self.bias = torch.full((rows,), float(self.settings.prior_bias), device=device)
            self.marginal = to_device(self.marginal_host, device, torch.float32)
            self.rate = to_device(self._rates(), device, torch.float32)

    def _rates(self) -> list[float]:
        return [t / c for t, c in zip(self.tokens, self.costs)]

    # ------------------------------------------------------------------ between rounds
    def end_round(self, drafted: list[int], accepted: list[int]) -> None:
        """Per row of the round: the rate gains the round's tokens and cost, and the calibration takes its Newton
        steps on the call's verified predictions."""
        if not self.tokens:
            return
        for i, (d, a) in enumerate(zip(drafted, accepted)):
            self.tokens[i] += a + 1
            table = self.verify_costs if d < len(self.verify_costs) else extended_verify_costs(self.verify_costs, d)
            self.costs[i] += d * self.cost_ratio + table[d]
        if self.scale is None:
            return
        self.rate = to_device(self._rates(), self.scale.device, torch.float32)
        if self.round_logits:
            self._calibrate(drafted, accepted)
        self.round_logits, self.round_positions = [], []  # a round without drafting (no room) has none

    def _calibrate(self, drafted: list[int], accepted: list[int]) -> None:
        device = self.scale.device
        z = torch.stack(self.round_logits, dim=1)  # (B, n)
        positions = to_device(self.round_positions, device)[None, :]
        counts = to_device([[a, min(a + 1, d)] for a, d in zip(accepted, drafted)], device)
        label, seen = (positions < counts[:, :1]).float(), (positions < counts[:, 1:]).float()
        if self.seen_logits is None:
            self.seen_logits, self.seen_labels, self.seen_mask = z, label, seen
        else:
            self.seen_logits = torch.cat([self.seen_logits, z], dim=1)
            self.seen_labels = torch.cat([self.seen_labels, label], dim=1)
            self.seen_mask = torch.cat([self.seen_mask, seen], dim=1)
        for _ in range(self.settings.newton_steps):
            self._newton_step()

    def _newton_step(self) -> None:
        """One Newton step of the penalised logistic fit of (scale, bias), per row (`newton_update`)."""
        settings = self.settings
        self.scale, self.bias = newton_update(self.scale, self.bias, self.seen_logits, self.seen_labels,
                                              self.seen_mask, settings.calibration_prior,
                                              (settings.prior_scale, settings.prior_bias))

    def select_rows(self, keep: list[int]) -> None:
        """Keep the per-row state of the rows that stay in the batch (by position)."""
        self.tokens = [self.tokens[i] for i in keep]
        self.costs = [self.costs[i] for i in keep]
        if self.scale is not None:
            index = to_device(keep, self.scale.device)
            self.scale, self.bias, self.rate = self.scale[index], self.bias[index], self.rate[index]
            if self.seen_logits is not None:
                self.seen_logits, self.seen_labels, self.seen_mask = (
                    self.seen_logits[index], self.seen_labels[index], self.seen_mask[index])
