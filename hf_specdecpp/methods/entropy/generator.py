"""Training-free stopping on the draft's own distribution as a decoding method (the estimators: `estimators.py`)."""

from __future__ import annotations

import torch

from ..base import ChainMethod
from .config import EntropyConfig

class ConfidenceStop:
    """Stop after a token whose training-free acceptance estimate falls below `lam`."""

    needs_hidden_states = False

    def __init__(self, config: EntropyConfig):
        self.config = config

    def start_round(self, batch_size: int) -> None:
        pass

    def __call__(self, input_ids, scores, *, hidden_states=None, step: int = 0) -> torch.BoolTensor:
        return self.config.stop(scores)


class EntropyMethod(ChainMethod):
    """A training-free, AdaEDL-style stopping rule based on the draft's own distribution.

    After drafting token t (1-based within the round) from the draft's processed distribution p_t, compute

        a_t = 1 - sqrt(gamma * H(p_t))        (estimator="entropy", the AdaEDL lower bound; H in nats)
        a_t = max_v p_t[v]                    (estimator="top1")

    and stop drafting when `a_t < lam` and `t >= min_candidates`, or when `t == max_candidates`, or at EOS.
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
    rule_class = ConfidenceStop


EntropyStoppingCandidateGenerator = EntropyMethod
"""The former name of `EntropyMethod` (kept working)."""
