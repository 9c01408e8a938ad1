"""SpecDec++ as a decoding method: the acceptance head (its predictions, or its dev traces' choice of the draft's own
confidence) and the machine's costs decide when to stop drafting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...head import DEFAULT_MAX_CANDIDATES, AcceptanceHead, DeviceKind, HeadPolicy, head_on
from ...utils.warnings import warn_once
from ...core.chain import ChainSpec
from ...core.cost_aware import ASSUMED_COST_RATIO, CostAwareStop, OnlineSettings, assumed_verify_costs, fixed_k_rate
from ...core.device import input_device
from ..base import ChainMethod
from .config import SpecDecPPConfig
from .estimator import EstimatorChoice, choose_estimator
from .stopping import RejectionThresholdRule, head_estimate, top1_estimate

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ...core.chain import CallContext

DEFAULT_THRESHOLD = 0.7
"""h when neither the call nor a policy for this device gives one (the reference's sample script uses 0.7)."""
ASSUMED_COSTS = (ASSUMED_COST_RATIO, assumed_verify_costs(DEFAULT_MAX_CANDIDATES))
"""(c, v(0..20)) the cost-aware rule assumes when the head's policy records no costs (`core.cost_aware`)."""


@dataclass(frozen=True)
class ResolvedPolicy:
    """The threshold and cap one call uses; `calibrated_here` when they come from a policy for this device."""

    threshold: float
    max_candidates: int
    calibrated_here: bool
    cost_ratio: float = ASSUMED_COSTS[0]
    verify_costs: tuple[float, ...] = ASSUMED_COSTS[1]
    expected_rate: float = 1.0
    """Tokens per target step the policy was simulated to give with these costs (`core.cost_aware.fixed_k_rate`
    of the assumed costs when the policy records none): the cost-aware rule's prior on the call's rate."""

    estimate: EstimatorChoice = EstimatorChoice("head")
    """What the cost-aware rule reads ("head" or "top1") and where its calibration starts (`choose_estimator`)."""

    def cost_aware_settings(self) -> OnlineSettings:
        """The cost-aware rule's settings for this policy: its prior rate is `expected_rate`, its calibration starts
        from `estimate.calibration`."""
        scale, bias = self.estimate.calibration
        return OnlineSettings(prior_rate=self.expected_rate, prior_scale=scale, prior_bias=bias)


def expected_rate(policy: HeadPolicy) -> float:
    """Tokens per target step `policy` was simulated to give with its own costs (its speed-up over the target alone),
    at least 1.0 (also when unknown): the cost-aware rule's prior on a call's rate.

    Args:
        policy (`HeadPolicy`): a calibrated policy.

    Returns:
        `float`: the prior rate.
    """
    return max(float(policy.simulation.get("speedup") or 1.0), 1.0)


class SpecDecPPMethod(ChainMethod):
    """SpecDec++: stop drafting when one more token no longer pays for its cost (`core.cost_aware`, the default), by the
    head's prediction or the draft's top-1 probability, whichever predicts the head's dev traces better
    (`choose_estimator`); with `threshold=h` (or `stop_rule="threshold"`) when the head's predicted P(any rejection)
    exceeds h (the paper's rule).

    Args:
        head (`AcceptanceHead`):
            The trained acceptance head for this draft/target pair (the first positional argument).

    Example:

    ```python
    method = SpecDecPPMethod(head=load_shipped_head())
    target.generate(**inputs, assistant_model=draft, candidate_generator=method)
    ```
    """

    config_class = SpecDecPPConfig

    def __init__(self, head: AcceptanceHead, *settings: Any, **kwargs: Any):
        check_head_type(head)
        self.head = head
        super().__init__(*settings, **kwargs)
        # only the cost-aware rule reads an estimate chosen from the dev traces: the threshold rule pays nothing
        self._estimator = choose_estimator(head, self.config.estimator) if self.config.stop_rule == "cost-aware" \
            else EstimatorChoice("head")
        if self.config.recalibrate == "auto" and not head.traces:
            raise ValueError("recalibrate='auto' re-simulates the head's dev traces, but this head ships no dev "
                             "traces (head.traces): calibrate it with `hf-specdecpp calibrate` and its make-data "
                             "folder, or use recalibrate='never'.")

    @property
    def estimator_choice(self) -> EstimatorChoice:
        """What the cost-aware rule reads for this head ("head" or "top1") and where its calibration starts
        (`choose_estimator`; the head, unused, under the threshold rule)."""
        return self._estimator

    def check_draft(self, draft: PreTrainedModel) -> None:
        check_head_fits(self.head, draft)

    # ------------------------------------------------------------------ the policy for one call
    def resolve_policy(self, draft: PreTrainedModel, target: PreTrainedModel,
                       do_sample: bool | None = None) -> ResolvedPolicy:
        """The threshold and cap for a call with these models (see the class docstring for where they come from).

        A policy calibrated with given costs (no device recorded) applies anywhere; a measured one only on the
        kind of device it was measured on.

        Args:
            draft (`PreTrainedModel`): the draft of the call (its device and dtype select the policy).
            target (`PreTrainedModel`): the target (timed when `recalibrate="auto"` re-calibrates).
            do_sample (`bool`, *optional*): the call's decoding, to warn when the head was trained for the other.

        Returns:
            `ResolvedPolicy`: the threshold, the cap and whether they were calibrated for this device.
        """
        config, policy = self.config, self._plausible_policy()
        device = DeviceKind.of(draft)
        if config.recalibrate == "auto" and (policy is None or policy.measured_on != device):
            from .calibration import policy_for_device  # measured elsewhere: re-time here (once per device kind)

            measured = policy_for_device(self.head, draft, target)
            trusted, use_cap = measured is not None, True
            # refused (noisy timings, a losing policy; it warned): the shipped policy as it is, cap included
            policy = measured if trusted else policy
        else:
            trusted = use_cap = policy is not None and policy.measured_on in (None, device)
            if policy is not None and not trusted and (config.threshold is None or config.max_candidates is None):
                measured = policy.measured_on.describe() if policy.measured_on else "an unrecorded device"
                using = (f"its costs (c={policy.cost_ratio:g})" if config.stop_rule == "cost-aware"
                         and policy.cost_ratio else f"h={policy.threshold:g}")
                warn_once(f"policy-device:{id(self.head)}:{device.key()}",
                          f"The acceptance head's policy (h={policy.threshold:g}, cap {policy.max_candidates}) was "
                          f"calibrated on {measured}; the draft runs on {device.describe()}. Using "
                          f"{using} with the default cap {DEFAULT_MAX_CANDIDATES}. Re-calibrate in "
                          "seconds: SpecDecPPMethod(head=head, recalibrate='auto'), or "
                          "`hf-specdecpp recalibrate`.")
        if do_sample is not None:
            self._warn_decoding(do_sample)
        threshold = config.threshold if config.threshold is not None else (
            policy.threshold if policy is not None else DEFAULT_THRESHOLD)
        cap = config.max_candidates if config.max_candidates is not None else (
            policy.max_candidates if use_cap and policy is not None and policy.max_candidates
            else DEFAULT_MAX_CANDIDATES)
        has_costs = policy is not None and policy.cost_ratio and policy.verify_costs
        costs = (policy.cost_ratio, policy.verify_costs) if has_costs else ASSUMED_COSTS
        cap = max(int(cap), config.min_candidates)
        prior = expected_rate(policy) if has_costs else fixed_k_rate(*costs, cap)
        return ResolvedPolicy(float(threshold), cap, trusted, *costs, expected_rate=prior, estimate=self._estimator)

    def _plausible_policy(self) -> HeadPolicy | None:
        """The head's policy, or None (with a warning) when it holds values no calibration chooses."""
        policy = self.head.policy
        problems = policy.implausible() if policy is not None else []
        if problems:
            fallback = f"h={DEFAULT_THRESHOLD:g} and cap {DEFAULT_MAX_CANDIDATES} where not given"
            warn_once(f"policy-implausible:{id(self.head)}",
                      f"Ignoring the acceptance head's policy: {'; '.join(problems)} cannot come from a calibration. "
                      f"Using {'a re-calibration for this machine' if self.config.recalibrate == 'auto' else fallback} "
                      "instead; re-calibrate with `hf-specdecpp recalibrate`.")
            return None
        return policy

    def _warn_decoding(self, do_sample: bool) -> None:
        trained = self.head.trained_for_sampling
        if trained is None or trained == do_sample:
            return
        names = {True: "sampling", False: "greedy decoding"}
        warn_once(f"policy-decoding:{id(self.head)}:{do_sample}",
                  f"This acceptance head was trained for {names[trained]} but the call uses {names[do_sample]}: its "
                  "predictions describe the other decoding, so drafting stops at the wrong places (the output is "
                  "still exact). Use a head trained for this decoding.")

    def chain_spec(self, ctx: CallContext) -> ChainSpec:
        policy = self.resolve_policy(ctx.draft, ctx.target, ctx.do_sample)
        reads_head = policy.estimate.name == "head"  # always under the threshold rule
        head = head_on(self.head, input_device(ctx.draft)) if reads_head else None  # top-1: the head stays put
        if self.config.stop_rule == "cost-aware":
            estimate = head_estimate(head) if reads_head else top1_estimate

            def new_rule():
                return CostAwareStop(estimate, reads_head and not self.head.scores_without_lag, policy.cost_ratio,
                                     policy.verify_costs, policy.max_candidates, needs_hidden_states=reads_head,
                                     settings=policy.cost_aware_settings())
        else:
            def new_rule():
                return RejectionThresholdRule(head, policy.threshold)
        return ChainSpec(new_rule, self.config.min_candidates, policy.max_candidates)


def check_head_type(head: AcceptanceHead | None, optional: bool = False) -> None:
    """`head` must be an AcceptanceHead (or None when `optional`).

    Args:
        head (`AcceptanceHead` or `None`): the object given as `head=`.
        optional (`bool`, *optional*, defaults to `False`): accept None.

    Raises:
        `TypeError`: for anything else.
    """
    if optional and head is None:
        return
    if not isinstance(head, AcceptanceHead):
        expected = "an AcceptanceHead or None" if optional else "an AcceptanceHead"
        raise TypeError(f"head must be {expected} (e.g. AcceptanceHead.from_pretrained(...)), got {type(head).__name__}")


def check_head_fits(head: AcceptanceHead, draft: PreTrainedModel) -> None:
    """The head reads the draft's last hidden state: their sizes must agree.

    Args:
        head (`AcceptanceHead`): the head.
        draft (`PreTrainedModel`): the draft model.

    Raises:
        `ValueError`: when the hidden sizes differ.
    """
    draft_hidden = draft.config.get_text_config().hidden_size
    if head.hidden_size != draft_hidden:
        raise ValueError(
            f"The acceptance head expects hidden size {head.hidden_size}, but the draft model "
            f"({type(draft).__name__}) has hidden size {draft_hidden}. Use a head trained for this draft model.")


SpecDecPPCandidateGenerator = SpecDecPPMethod
"""The former name of `SpecDecPPMethod` (kept working; the object is a method description, not a
`transformers.CandidateGenerator`)."""
