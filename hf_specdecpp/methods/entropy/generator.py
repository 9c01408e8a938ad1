"""Training-free stopping on the draft's own distribution as a decoding method (the estimators: `estimators.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...core.cost_aware import CostAwareStop
from ..base import ChainMethod
from .config import EntropyConfig

if TYPE_CHECKING:
    from ...core.chain import CallContext
    from ...core.drafting import StopRule


class ConfidenceStop:
    """Stop after a token whose training-free acceptance estimate falls below `lam`."""

    needs_hidden_states = False

    def __init__(self, config: EntropyConfig):
        self.config = config

    def start_round(self, batch_size: int) -> None:
        pass

    def __call__(self, input_ids, scores, *, hidden_states=None, step: int = 0) -> torch.BoolTensor:
        return self.config.stop(scores)


def cost_aware_stop(config: EntropyConfig) -> CostAwareStop:
    """The cost-aware rule (`core.cost_aware`) fed with the config's training-free estimate, for one call.

    Args:
        config (`EntropyConfig`): the estimator, its scale, the cap and the costs (assumed where None).

    Returns:
        `CostAwareStop`.
    """
    def estimate(input_ids, scores, hidden_states, step):
        return config.acceptance(scores)

    return CostAwareStop(estimate, False, *config.costs(), config.max_candidates, needs_hidden_states=False,
                         settings=config.cost_aware_settings())


class EntropyMethod(ChainMethod):
    """A training-free, AdaEDL-style stopping rule based on the draft's own distribution.

    After drafting token t (1-based within the round) from the draft's processed distribution p_t, compute

        a_t = 1 - sqrt(gamma * H(p_t))        (estimator="entropy", the AdaEDL lower bound; H in nats)
        a_t = max_v p_t[v]                    (estimator="top1")

    and stop drafting when `a_t < lam` and `t >= min_candidates`, or when `t == max_candidates`, or at EOS.
    With `stop_rule="cost-aware"`, a_t (clamped to [0, 1]) feeds `core.cost_aware` instead of a threshold: drafting
    goes on while one more token's expected gain pays for its cost at the call's own rate, the estimate
    calibrated online; no parameter to tune, only the machine's costs (`cost_ratio`, `verify_costs`).
    AdaEDL (arXiv:2410.18351) decides before sampling the token and may adapt lambda online; here lambda is
    static and the token whose estimate fell below it is still proposed (as transformers' `ConfidenceCriteria`).

    estimator="svip" is SVIP (Zhang et al., "Draft Model Knows When to Stop", arXiv:2411.18462): stop after
    token t when sqrt(gamma * H(p_t)) > h, with `lam` = h and gamma = 0.15 by default (the authors' code; the
    token that crossed the threshold is still proposed, as there). It is per token and monotone in H, so it
    orders tokens exactly like the AdaEDL entropy stopper: SVIP at (h, gamma) stops where AdaEDL at
    (lam = 1 - h, gamma) does (up to float rounding). Only the parametrisation differs.

    Args:

    Example:

    ```python
    method = EntropyMethod(lam=0.15, estimator="svip")  # SVIP at h = 0.15
    target.generate(**inputs, assistant_model=draft, candidate_generator=method)
    ```
    """

    config_class = EntropyConfig

    def new_rule(self, ctx: CallContext) -> StopRule:
        """The call's stop rule: `ConfidenceStop` at `lam`, or `cost_aware_stop` with `stop_rule="cost-aware"`."""
        return cost_aware_stop(self.config) if self.config.stop_rule == "cost-aware" else ConfidenceStop(self.config)


EntropyStoppingCandidateGenerator = EntropyMethod
"""The former name of `EntropyMethod` (kept working)."""
